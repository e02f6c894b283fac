//! Bad input to the models and the CLI: each gets its own error variant, a message
//! naming the column, row or parameter, and the session keeps working afterwards.

use std::path::PathBuf;
use std::process::Command;

use polars::prelude::*;
use sparkbook::knn::{Algorithm, KnnClassifier, KnnRegressor, Metric};
use sparkbook::prelude::*;

fn train() -> DataFrame {
    df!(
        "a" => [1.0, 2.0, 3.0, 4.0, 5.0],
        "b" => [0.5, 0.1, 0.2, 0.9, 0.3],
        "y" => [10.0, 20.0, 30.0, 40.0, 50.0]
    )
    .unwrap()
}

fn model() -> KnnRegressor {
    KnnRegressor::params(2).fit_frame(&train(), "y").unwrap()
}

fn with_value(column: &str, row: usize, value: Option<f64>) -> DataFrame {
    let mut df = train();
    let values: Vec<Option<f64>> = df
        .column(column)
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, v)| if i == row { value } else { v })
        .collect();
    df.with_column(Column::new(column.into(), values)).unwrap();
    df
}

fn assert_invalid_value(err: Error, column: &str, row: u64, value: &str) {
    match &err {
        Error::InvalidValue {
            column: c,
            row: r,
            value: v,
        } => {
            assert_eq!((c.as_str(), *r, v.as_str()), (column, row, value), "{err}");
            assert!(
                err.to_string().contains(column) && err.to_string().contains(&format!("row {row}"))
            );
        }
        other => panic!("expected InvalidValue, got {other:?}"),
    }
}

#[test]
fn non_finite_and_null_values_name_column_and_row() {
    let fit = |df: &DataFrame| KnnRegressor::params(2).fit_frame(df, "y").unwrap_err();
    assert_invalid_value(fit(&with_value("a", 3, Some(f64::NAN))), "a", 3, "NaN");
    assert_invalid_value(fit(&with_value("b", 1, Some(f64::INFINITY))), "b", 1, "inf");
    assert_invalid_value(fit(&with_value("a", 4, None)), "a", 4, "null");
    assert_invalid_value(
        fit(&with_value("y", 2, Some(f64::NEG_INFINITY))),
        "y",
        2,
        "-inf",
    );
    assert_invalid_value(fit(&with_value("y", 0, None)), "y", 0, "null");
    // At predict time too, before any search.
    let err = model()
        .predict_frame(&with_value("b", 2, Some(f64::NAN)))
        .unwrap_err();
    assert_invalid_value(err, "b", 2, "NaN");
}

#[test]
fn bad_rows_in_a_partition_report_the_global_row() {
    let sc = Session::builder()
        .threads(2)
        .progress(false)
        .build()
        .unwrap();
    let b = sc.broadcast(model());
    let test = with_value("a", 4, Some(f64::NAN));
    let err = sc
        .parallelize(&test, 3)
        .unwrap()
        .zip_with_index()
        .unwrap()
        .map_partitions(|part| b.value()?.predict_frame(&part))
        .unwrap_err();
    match err {
        Error::PartitionFailed {
            index: 2, source, ..
        } => assert_invalid_value(*source, "a", 4, "NaN"),
        other => panic!("unexpected {other:?}"),
    }
    // The session and the broadcast model still work.
    let ok = sc
        .parallelize(&train(), 3)
        .unwrap()
        .map_partitions(|part| b.value()?.predict_frame(&part))
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(ok.height(), 5);
}

#[test]
fn structural_problems_are_typed_errors() {
    let p = KnnRegressor::params(2);
    // Target column missing.
    match p.fit_frame(&train(), "price").unwrap_err() {
        Error::MissingColumn { name, .. } => assert_eq!(name, "price"),
        other => panic!("{other:?}"),
    }
    // Non-numeric feature in an explicit list.
    let mut df = train();
    df.with_column(Column::new("name".into(), ["a", "b", "c", "d", "e"]))
        .unwrap();
    match p.fit_frame_with(&df, "y", &["a", "name"]).unwrap_err() {
        Error::NotNumeric { column, .. } => assert_eq!(column, "name"),
        other => panic!("{other:?}"),
    }
    // Duplicate feature names.
    assert!(matches!(
        p.fit_frame_with(&df, "y", &["a", "a"]).unwrap_err(),
        Error::DuplicateColumn { name } if name == "a"
    ));
    // Empty training set.
    assert!(matches!(
        p.fit_frame(&train().head(Some(0)), "y").unwrap_err(),
        Error::EmptyData {
            what: "training set"
        }
    ));
    // Empty test set.
    assert!(matches!(
        model().predict_frame(&train().head(Some(0))).unwrap_err(),
        Error::EmptyData { what: "test set" }
    ));
    // A feature missing at predict time.
    match model()
        .predict_frame(&train().drop("b").unwrap())
        .unwrap_err()
    {
        Error::FeatureMismatch { reason } => assert!(reason.contains("\"b\""), "{reason}"),
        other => panic!("{other:?}"),
    }
    // An extra numeric column at predict time.
    let mut extra = train();
    extra
        .with_column(Column::new("c".into(), [1.0; 5]))
        .unwrap();
    match model().predict_frame(&extra).unwrap_err() {
        Error::FeatureMismatch { reason } => assert!(reason.contains("\"c\""), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Feature order does not matter: columns are matched by name.
    let swapped = train().select(["b", "y", "a"]).unwrap();
    assert_eq!(
        model().predict_frame(&swapped).unwrap(),
        model().predict_frame(&train()).unwrap()
    );
}

#[test]
fn bad_parameters_name_the_parameter() {
    let name_of = |err: Error| match err {
        Error::InvalidParameter { name, .. } => name,
        other => panic!("expected InvalidParameter, got {other:?}"),
    };
    assert_eq!(
        name_of(
            KnnRegressor::params(0)
                .fit_frame(&train(), "y")
                .unwrap_err()
        ),
        "k"
    );
    let err = KnnRegressor::params(6)
        .fit_frame(&train(), "y")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("k = 6 exceeds the 5 training rows"),
        "{err}"
    );
    assert_eq!(name_of(err), "k");
    for p in [0.0, -1.0, 0.5, f64::NAN] {
        let err = KnnRegressor::params(2)
            .metric(Metric::Minkowski(p))
            .fit_frame(&train(), "y");
        assert_eq!(name_of(err.unwrap_err()), "p");
    }
    let err = KnnRegressor::params(2)
        .metric(Metric::Cosine)
        .algorithm(Algorithm::KdTree)
        .fit_frame(&train(), "y");
    assert_eq!(name_of(err.unwrap_err()), "algorithm");
    assert_eq!(
        name_of(
            KnnRegressor::params(2)
                .leaf_size(0)
                .fit_frame(&train(), "y")
                .unwrap_err()
        ),
        "leaf_size"
    );
    let (dist_err, _) = (
        model()
            .kneighbors(&ndarray::array![[1.0, 2.0]], 9)
            .unwrap_err(),
        (),
    );
    assert_eq!(name_of(dist_err), "k");
}

#[test]
fn cosine_rejects_zero_vectors() {
    let zeros = with_value("a", 1, Some(0.0));
    let mut zeros = zeros;
    zeros
        .with_column(Column::new("b".into(), [0.5, 0.0, 0.2, 0.9, 0.3]))
        .unwrap();
    let err = KnnRegressor::params(2)
        .metric(Metric::Cosine)
        .fit_frame(&zeros, "y")
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ZeroVector {
                what: "training set",
                row: 1
            }
        ),
        "{err}"
    );
    let m = KnnRegressor::params(2)
        .metric(Metric::Cosine)
        .fit_frame(&train(), "y")
        .unwrap();
    let err = m.predict_frame(&zeros).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ZeroVector {
                what: "test set",
                row: 1
            }
        ),
        "{err}"
    );
}

#[test]
fn array_inputs_are_checked_too() {
    let m = model();
    assert!(matches!(
        m.try_predict(&ndarray::array![[1.0, 2.0, 3.0]])
            .unwrap_err(),
        Error::FeatureMismatch { .. }
    ));
    assert_invalid_value(
        m.try_predict(&ndarray::array![[1.0, f64::NAN]])
            .unwrap_err(),
        "b",
        0,
        "NaN",
    );
    // linfa's infallible predict fills NaN instead of panicking.
    use linfa::traits::Predict;
    let y: ndarray::Array1<f64> = m.predict(&ndarray::array![[1.0, 2.0, 3.0]]);
    assert!(y.iter().all(|v| v.is_nan()));
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sparkbook-bad-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn damaged_model_files_are_rejected_precisely() {
    let dir = scratch("models");
    let path = dir.join("m.json");
    model().save(&path).unwrap();
    let good = std::fs::read_to_string(&path).unwrap();

    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    assert!(matches!(
        KnnRegressor::load(&path).unwrap_err(),
        Error::ModelFile { .. }
    ));

    std::fs::write(&path, good.replacen("\"version\":1", "\"version\":99", 1)).unwrap();
    match KnnRegressor::load(&path).unwrap_err() {
        Error::ModelVersion {
            found, supported, ..
        } => assert_eq!((found, supported), (99, 1)),
        other => panic!("{other:?}"),
    }

    // Valid JSON whose matrix does not fit its shape: refused at load, not a panic later.
    std::fs::write(&path, good.replacen("\"rows\":5", "\"rows\":7", 1)).unwrap();
    match KnnRegressor::load(&path).unwrap_err() {
        Error::ModelFile { reason, .. } => assert!(reason.contains("7 x 2"), "{reason}"),
        other => panic!("{other:?}"),
    }

    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        KnnRegressor::load(&path).unwrap_err(),
        Error::ModelFile { .. }
    ));
    assert!(matches!(
        KnnRegressor::load(dir.join("absent.json")).unwrap_err(),
        Error::Io { .. }
    ));
    assert!(matches!(
        KnnClassifier::<String>::load(&dir).unwrap_err(),
        Error::Io { .. }
    ));

    // Saving into a missing directory fails and leaves nothing behind.
    let err = model().save(dir.join("no/such/dir/m.json")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sparkbook"))
        .args(args)
        .env("POLARS_MAX_THREADS", "1")
        .output()
        .expect("run the CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_predicts_in_test_file_order_and_fails_cleanly() {
    let dir = scratch("cli");
    let (train_csv, test_csv, out) = (
        dir.join("train.csv"),
        dir.join("test.csv"),
        dir.join("pred.csv"),
    );
    std::fs::write(
        &train_csv,
        "a,b,y\n1,0.5,10\n2,0.1,20\n3,0.2,30\n4,0.9,40\n5,0.3,50\n",
    )
    .unwrap();
    std::fs::write(&test_csv, "a,b,y\n4.9,0.3,50\n1.1,0.5,10\n3,0.2,30\n").unwrap();
    let s = |p: &PathBuf| p.to_str().unwrap().to_owned();
    let base = |out: &PathBuf| {
        vec![
            "knn".to_owned(),
            "--train".into(),
            s(&train_csv),
            "--test".into(),
            s(&test_csv),
            "--target".into(),
            "y".into(),
            "-k".into(),
            "1".into(),
            "--partitions".into(),
            "2".into(),
            "-o".into(),
            s(out),
        ]
    };
    let args = base(&out);
    let (ok, stdout, stderr) = cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stderr}");
    assert!(stdout.contains("R2 1.0000"), "{stdout}");
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        written,
        "row,true,pred\n0,50.0,50.0\n1,10.0,10.0\n2,30.0,30.0\n"
    );

    // Each failure: exit 1, one line naming the fault, no output file.
    let failures: Vec<(Vec<String>, &str)> = vec![
        (
            {
                let mut a = base(&dir.join("o1.csv"));
                a[2] = s(&dir.join("missing.csv"));
                a
            },
            "missing.csv",
        ),
        (
            {
                let mut a = base(&dir.join("o2.csv"));
                a[6] = "price".into();
                a
            },
            "`price` not found",
        ),
        (
            {
                let mut a = base(&dir.join("o3.csv"));
                a[8] = "0".into();
                a
            },
            "`k`",
        ),
        (
            {
                let mut a = base(&dir.join("o4.csv"));
                a[8] = "9".into();
                a
            },
            "exceeds the 5 training rows",
        ),
        (
            {
                let mut a = base(&dir.join("o5.csv"));
                a[10] = "0".into();
                a
            },
            "`partitions`",
        ),
        (
            {
                let mut a = base(&dir.join("o6.csv"));
                a[2] = s(&dir);
                a
            },
            "is a directory",
        ),
        (base(&dir.join("no/such/dir/out.csv")), "out.csv"),
    ];
    // Bad CSV files, as training or as test data.
    let bad_files: [(&str, &[u8], &str); 6] = [
        ("header_only.csv", b"a,b,y\n", "set is empty"),
        ("zero_bytes.csv", b"", "the file is empty (0 bytes)"),
        (
            "ragged_long.csv",
            b"a,b,y\n1,0.5,10\n2,0.1,20,99\n3,0.2,30\n",
            "cannot read as CSV",
        ),
        (
            "ragged_short.csv",
            b"a,b,y\n1,0.5,10\n2,0.1\n3,0.2,30\n",
            "row 1: null",
        ),
        (
            "not_utf8.csv",
            b"a,b,y\n1,0.5,10\n2,\xff\xfe,20\n",
            "not_utf8.csv",
        ),
        (
            "nan.csv",
            b"a,b,y\n1,0.5,10\n2,NaN,20\n3,0.2,30\n",
            "column `b`, row 1: NaN",
        ),
    ];
    let mut failures = failures;
    for (i, (name, bytes, needle)) in bad_files.into_iter().enumerate() {
        let bad = dir.join(name);
        std::fs::write(&bad, bytes).unwrap();
        for slot in [2, 4] {
            let mut a = base(&dir.join(format!("csv{i}-{slot}.csv")));
            a[slot] = s(&bad);
            failures.push((a, needle));
        }
    }
    for (args, needle) in failures {
        let (ok, _, stderr) = cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(!ok, "{args:?} should fail");
        assert_eq!(
            stderr.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{stderr}"
        );
        assert!(stderr.contains(needle), "expected {needle:?} in {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            !PathBuf::from(args.last().unwrap()).exists(),
            "partial output left: {args:?}"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let (ok, stdout, _) = cli(&["--help"]);
    assert!(ok && stdout.contains("knn"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

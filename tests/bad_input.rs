//! Bad input to the models and the CLI: each gets its own error variant, a message
//! naming the column, row or parameter, and the session keeps working afterwards.

use std::path::PathBuf;
use std::process::Command;

use polars::prelude::*;
use sparkbook::datasets::read_csv;
use sparkbook::knn::{Algorithm, KnnClassifier, KnnParams, KnnRegressor, Metric, Regression};
use sparkbook::prelude::*;
use sparkbook::preprocessing::StandardScaler;

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

/// Triggers a bad input on a session; `Err` is the expected outcome.
type Run = Box<dyn Fn(&Session) -> Result<(), Error>>;

/// One bad input: what it is, how to trigger it on a session, the exact variant
/// expected, and the text its message must contain (the column, row or parameter).
struct Case {
    what: &'static str,
    run: Run,
    is: fn(&Error) -> bool,
    names: &'static str,
}

fn case(
    what: &'static str,
    names: &'static str,
    is: fn(&Error) -> bool,
    run: impl Fn(&Session) -> Result<(), Error> + 'static,
) -> Case {
    Case {
        what,
        run: Box::new(run),
        is,
        names,
    }
}

fn fit(df: &DataFrame) -> Result<(), Error> {
    KnnRegressor::params(2).fit_frame(df, "y").map(drop)
}

fn predict(df: &DataFrame) -> Result<(), Error> {
    model().predict_frame(df).map(drop)
}

fn written(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch("catalogue").join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The seed workflow on the session: the job after each failure must still work.
fn good_job(sc: &Session) {
    let b = sc.broadcast(model());
    let preds = sc
        .parallelize(&train(), 3)
        .unwrap()
        .zip_with_index()
        .unwrap()
        .map_partitions(|part| b.value()?.predict_frame(&part))
        .unwrap()
        .collect()
        .unwrap();
    let rows: Vec<u64> = preds
        .column("row")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(rows, [0, 1, 2, 3, 4]);
    assert_eq!(
        preds.drop("row").unwrap(),
        model().predict_frame(&train()).unwrap()
    );
}

fn catalogue() -> Vec<Case> {
    use Error as E;
    vec![
        case(
            "NaN in a feature",
            "column `a`, row 3: NaN",
            |e| matches!(e, E::InvalidValue { column, row: 3, value } if column == "a" && value == "NaN"),
            |_| fit(&with_value("a", 3, Some(f64::NAN))),
        ),
        case(
            "inf in a feature",
            "column `b`, row 1: inf",
            |e| matches!(e, E::InvalidValue { column, row: 1, value } if column == "b" && value == "inf"),
            |_| fit(&with_value("b", 1, Some(f64::INFINITY))),
        ),
        case(
            "null in a feature",
            "column `a`, row 4: null",
            |e| matches!(e, E::InvalidValue { column, row: 4, value } if column == "a" && value == "null"),
            |_| fit(&with_value("a", 4, None)),
        ),
        case(
            "-inf in the target",
            "column `y`, row 2: -inf",
            |e| matches!(e, E::InvalidValue { column, row: 2, value } if column == "y" && value == "-inf"),
            |_| fit(&with_value("y", 2, Some(f64::NEG_INFINITY))),
        ),
        case(
            "null in the target",
            "column `y`, row 0: null",
            |e| matches!(e, E::InvalidValue { column, row: 0, .. } if column == "y"),
            |_| fit(&with_value("y", 0, None)),
        ),
        case(
            "NaN in a test row, found before any search",
            "column `b`, row 2: NaN",
            |e| matches!(e, E::InvalidValue { column, row: 2, .. } if column == "b"),
            |_| predict(&with_value("b", 2, Some(f64::NAN))),
        ),
        case(
            "NaN in partition 2 reports the global row",
            "column `a`, row 4",
            |e| {
                matches!(e, E::PartitionFailed { index: 2, source, .. }
                if matches!(source.as_ref(), E::InvalidValue { row: 4, .. }))
            },
            |sc| {
                let b = sc.broadcast(model());
                sc.parallelize(&with_value("a", 4, Some(f64::NAN)), 3)?
                    .zip_with_index()?
                    .map_partitions(|part| b.value()?.predict_frame(&part))
                    .map(drop)
            },
        ),
        case(
            "non-numeric feature",
            "`name`",
            |e| matches!(e, E::NotNumeric { column, .. } if column == "name"),
            |_| {
                let mut df = train();
                df.with_column(Column::new("name".into(), ["a", "b", "c", "d", "e"]))?;
                KnnRegressor::params(2)
                    .fit_frame_with(&df, "y", &["a", "name"])
                    .map(drop)
            },
        ),
        case(
            "missing target",
            "`price`",
            |e| matches!(e, E::MissingColumn { name, .. } if name == "price"),
            |_| {
                KnnRegressor::params(2)
                    .fit_frame(&train(), "price")
                    .map(drop)
            },
        ),
        case(
            "duplicate feature names",
            "`a`",
            |e| matches!(e, E::DuplicateColumn { name } if name == "a"),
            |_| {
                KnnRegressor::params(2)
                    .fit_frame_with(&train(), "y", &["a", "a"])
                    .map(drop)
            },
        ),
        case(
            "k = 0",
            "`k`",
            |e| matches!(e, E::InvalidParameter { name: "k", .. }),
            |_| KnnRegressor::params(0).fit_frame(&train(), "y").map(drop),
        ),
        case(
            "k > n_train",
            "k = 6 exceeds the 5 training rows",
            |e| matches!(e, E::InvalidParameter { name: "k", .. }),
            |_| KnnRegressor::params(6).fit_frame(&train(), "y").map(drop),
        ),
        case(
            "k > n_train in kneighbors",
            "`k`",
            |e| matches!(e, E::InvalidParameter { name: "k", .. }),
            |_| {
                model()
                    .kneighbors(&ndarray::array![[1.0, 2.0]], 9)
                    .map(drop)
            },
        ),
        case(
            "Minkowski p < 1",
            "`p`",
            |e| matches!(e, E::InvalidParameter { name: "p", .. }),
            |_| {
                KnnRegressor::params(2)
                    .metric(Metric::Minkowski(0.5))
                    .fit_frame(&train(), "y")
                    .map(drop)
            },
        ),
        case(
            "Minkowski p = NaN",
            "`p`",
            |e| matches!(e, E::InvalidParameter { name: "p", .. }),
            |_| {
                KnnRegressor::params(2)
                    .metric(Metric::Minkowski(f64::NAN))
                    .fit_frame(&train(), "y")
                    .map(drop)
            },
        ),
        case(
            "kd-tree with the cosine metric",
            "`algorithm`",
            |e| {
                matches!(
                    e,
                    E::InvalidParameter {
                        name: "algorithm",
                        ..
                    }
                )
            },
            |_| {
                KnnRegressor::params(2)
                    .metric(Metric::Cosine)
                    .algorithm(Algorithm::KdTree)
                    .fit_frame(&train(), "y")
                    .map(drop)
            },
        ),
        case(
            "leaf_size = 0",
            "`leaf_size`",
            |e| {
                matches!(
                    e,
                    E::InvalidParameter {
                        name: "leaf_size",
                        ..
                    }
                )
            },
            |_| {
                KnnRegressor::params(2)
                    .leaf_size(0)
                    .fit_frame(&train(), "y")
                    .map(drop)
            },
        ),
        case(
            "empty training set",
            "training set",
            |e| {
                matches!(
                    e,
                    E::EmptyData {
                        what: "training set"
                    }
                )
            },
            |_| fit(&train().head(Some(0))),
        ),
        case(
            "empty test set",
            "test set",
            |e| matches!(e, E::EmptyData { what: "test set" }),
            |_| predict(&train().head(Some(0))),
        ),
        case(
            "feature missing at predict",
            "\"b\"",
            |e| matches!(e, E::FeatureMismatch { reason } if reason.contains("\"b\"")),
            |_| predict(&train().drop("b").unwrap()),
        ),
        case(
            "extra numeric column at predict",
            "\"c\"",
            |e| matches!(e, E::FeatureMismatch { reason } if reason.contains("\"c\"")),
            |_| {
                let mut df = train();
                df.with_column(Column::new("c".into(), [1.0; 5]))?;
                predict(&df)
            },
        ),
        case(
            "wrong width of an array",
            "2",
            |e| matches!(e, E::FeatureMismatch { .. }),
            |_| {
                model()
                    .try_predict(&ndarray::array![[1.0, 2.0, 3.0]])
                    .map(drop)
            },
        ),
        case(
            "cosine with a zero training row",
            "row 1",
            |e| {
                matches!(
                    e,
                    E::ZeroVector {
                        what: "training set",
                        row: 1
                    }
                )
            },
            |_| {
                let mut df = with_value("a", 1, Some(0.0));
                df.with_column(Column::new("b".into(), [0.5, 0.0, 0.2, 0.9, 0.3]))?;
                KnnRegressor::params(2)
                    .metric(Metric::Cosine)
                    .fit_frame(&df, "y")
                    .map(drop)
            },
        ),
        case(
            "zero partitions",
            "`partitions`",
            |e| {
                matches!(
                    e,
                    E::InvalidParameter {
                        name: "partitions",
                        ..
                    }
                )
            },
            |sc| sc.parallelize(&train(), 0).map(drop),
        ),
        case(
            "a closure that panics",
            "partition 1",
            |e| matches!(e, E::Partition { index: 1, message, .. } if message.contains("boom")),
            |sc| {
                sc.parallelize(vec![1, 2, 3, 4], 2)?
                    .map(|x| if *x == 3 { panic!("boom") } else { *x })
                    .map(drop)
            },
        ),
        case(
            "a closure that returns Err",
            "partition 2",
            |e| matches!(e, E::PartitionFailed { index: 2, .. }),
            |sc| {
                sc.parallelize(&train(), 3)?
                    .map_partitions(|part| -> Result<DataFrame, Error> {
                        if TaskContext::get().unwrap().partition_id() == 2 {
                            return Err(Error::Message("refused".into()));
                        }
                        Ok(part)
                    })
                    .map(drop)
            },
        ),
        case(
            "partitions with different schemas",
            "partition 1",
            |e| matches!(e, E::SchemaMismatch { index: 1, .. }),
            |sc| {
                sc.parallelize(&train(), 2)?
                    .map_partitions(|part| -> Result<DataFrame, Error> {
                        let keep = if TaskContext::get().unwrap().partition_id() == 1 {
                            "a"
                        } else {
                            "y"
                        };
                        Ok(part.select([keep])?)
                    })?
                    .collect()
                    .map(drop)
            },
        ),
        case(
            "a destroyed broadcast",
            "destroyed",
            |e| matches!(e, E::PartitionFailed { source, .. } if matches!(source.as_ref(), E::BroadcastDestroyed { .. })),
            |sc| {
                let b = sc.broadcast(model());
                b.destroy();
                sc.parallelize(&train(), 2)?
                    .map_partitions(|part| b.value()?.predict_frame(&part))
                    .map(drop)
            },
        ),
        case(
            "corrupt model file",
            "corrupt.json",
            |e| matches!(e, E::ModelFile { .. }),
            |_| KnnRegressor::load(written("corrupt.json", b"{\"format\": \"sparkbook")).map(drop),
        ),
        case(
            "model file of a future format version",
            "version 99",
            |e| {
                matches!(
                    e,
                    E::ModelVersion {
                        found: 99,
                        supported: 1,
                        ..
                    }
                )
            },
            |_| {
                let path = scratch("catalogue").join("future.json");
                model().save(&path)?;
                let text = std::fs::read_to_string(&path).unwrap();
                std::fs::write(&path, text.replacen("\"version\":1", "\"version\":99", 1)).unwrap();
                KnnRegressor::load(&path).map(drop)
            },
        ),
        case(
            "model file whose matrix does not fit its shape",
            "7 x 2",
            |e| matches!(e, E::ModelFile { reason, .. } if reason.contains("7 x 2")),
            |_| {
                let path = scratch("catalogue").join("shape.json");
                model().save(&path)?;
                let text =
                    std::fs::read_to_string(&path)
                        .unwrap()
                        .replacen("\"rows\":5", "\"rows\":7", 1);
                std::fs::write(&path, text).unwrap();
                KnnRegressor::load(&path).map(drop)
            },
        ),
        case(
            "CSV with ragged rows",
            "ragged.csv",
            |e| matches!(e, E::Csv { path, .. } if path.ends_with("ragged.csv")),
            |_| read_csv(written("ragged.csv", b"a,b\n1,2\n3,4,5\n")).map(drop),
        ),
        case(
            "CSV with a header only, then fitted",
            "training set",
            |e| {
                matches!(
                    e,
                    E::EmptyData {
                        what: "training set"
                    }
                )
            },
            |_| fit(&read_csv(written("header.csv", b"a,b,y\n"))?),
        ),
        case(
            "non-UTF-8 CSV",
            "latin1.csv",
            |e| matches!(e, E::Csv { .. }),
            |_| read_csv(written("latin1.csv", b"a,b\n1,\xff\xfe\n")).map(drop),
        ),
        case(
            "0-byte CSV",
            "empty (0 bytes)",
            |e| matches!(e, E::Io { .. }),
            |_| read_csv(written("zero.csv", b"")).map(drop),
        ),
        case(
            "a path that does not exist",
            "no/such/file.csv",
            |e| matches!(e, E::Io { .. }),
            |_| read_csv("no/such/file.csv").map(drop),
        ),
        case(
            "a directory instead of a file",
            "is a directory",
            |e| matches!(e, E::Io { .. }),
            |_| read_csv(scratch("catalogue")).map(drop),
        ),
        case(
            "a model saved where it cannot be written",
            "m.json",
            |e| matches!(e, E::Io { .. }),
            |_| model().save(scratch("catalogue").join("no/such/dir/m.json")),
        ),
        case(
            "test fraction outside (0, 1)",
            "`test_fraction`",
            |e| {
                matches!(
                    e,
                    E::InvalidParameter {
                        name: "test_fraction",
                        ..
                    }
                )
            },
            |_| train_test_split(&train(), 1.5, 1).map(drop),
        ),
        case(
            "a scaler applied to a frame without its column",
            "`b`",
            |e| matches!(e, E::MissingColumn { name, .. } if name == "b"),
            |_| {
                StandardScaler::fit(&train(), "y")?
                    .transform(&train().drop("b").unwrap())
                    .map(drop)
            },
        ),
        case(
            "scores of a frame without `pred`",
            "`pred`",
            |e| matches!(e, E::MissingColumn { name, .. } if name == "pred"),
            |_| df!("true" => [1.0, 2.0])?.scores().map(drop),
        ),
    ]
}

#[test]
fn catalogue_of_bad_inputs_then_a_good_job() {
    let sc = Session::builder()
        .threads(2)
        .progress(false)
        .build()
        .unwrap();
    let cases = catalogue();
    assert!(cases.len() >= 25, "{} cases", cases.len());
    for c in cases {
        let err = (c.run)(&sc).expect_err(c.what);
        assert!((c.is)(&err), "{}: unexpected {err:?}", c.what);
        let message = err.to_string();
        assert!(
            message.contains(c.names),
            "{}: {message:?} lacks {:?}",
            c.what,
            c.names
        );
        good_job(&sc);
    }
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
    let inputs = [
        std::fs::read(&train_csv).unwrap(),
        std::fs::read(&test_csv).unwrap(),
    ];
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
    // Failed runs never touch their inputs.
    assert_eq!(
        [
            std::fs::read(&train_csv).unwrap(),
            std::fs::read(&test_csv).unwrap()
        ],
        inputs
    );
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

/// A drained fit that fails must fail as the shared fit does, before it takes a
/// column: the user's frame is still there, whole, to fix and fit again.
#[test]
fn a_failed_drained_fit_leaves_the_frame_whole() {
    let mut zero_row = with_value("a", 3, Some(0.0));
    zero_row
        .with_column(Column::new("b".into(), [0.5, 0.1, 0.2, 0.0, 0.3]))
        .unwrap();
    let mut text = train();
    text.with_column(Column::new("b".into(), ["p", "q", "r", "s", "t"]))
        .unwrap();
    let cases: Vec<(&str, KnnParams<Regression>, DataFrame, &str)> = vec![
        (
            "NaN feature",
            KnnRegressor::params(2),
            with_value("b", 2, Some(f64::NAN)),
            "y",
        ),
        (
            "null target",
            KnnRegressor::params(2),
            with_value("y", 4, None),
            "y",
        ),
        ("missing target", KnnRegressor::params(2), train(), "price"),
        ("k > rows", KnnRegressor::params(6), train(), "y"),
        (
            "zero row, cosine",
            KnnRegressor::params(2).metric(Metric::Cosine),
            zero_row,
            "y",
        ),
        (
            "no numeric feature",
            KnnRegressor::params(2),
            text.drop("a").unwrap(),
            "y",
        ),
    ];
    for (what, params, df, target) in cases {
        let shared = params.fit_frame(&df, target).map(drop).expect_err(what);
        let mut drained = df.clone();
        let err = params
            .fit_frame_drain(&mut drained, target)
            .map(drop)
            .expect_err(what);
        assert_eq!(err.to_string(), shared.to_string(), "{what}");
        assert!(drained.equals_missing(&df), "{what}: {drained}");
    }
    let listed: Vec<(&str, &[&str])> = vec![
        ("missing feature", &["a", "c"]),
        ("duplicate feature", &["a", "a"]),
        ("target as a feature", &["a", "y"]),
        ("text feature", &["b"]),
        ("no feature", &[]),
    ];
    for (what, features) in listed {
        let params = KnnRegressor::params(2);
        let shared = params
            .fit_frame_with(&text, "y", features)
            .map(drop)
            .expect_err(what);
        let mut drained = text.clone();
        let err = params
            .fit_frame_drain_with(&mut drained, "y", features)
            .map(drop)
            .expect_err(what);
        assert_eq!(err.to_string(), shared.to_string(), "{what}");
        assert!(drained.equals_missing(&text), "{what}: {drained}");
    }
    let mut labels = train();
    labels
        .with_column(Column::new(
            "y".into(),
            [Some("a"), None, Some("b"), Some("a"), Some("b")],
        ))
        .unwrap();
    let shared = KnnClassifier::params(1)
        .fit_frame::<String>(&labels, "y")
        .map(drop)
        .expect_err("null label");
    let mut drained = labels.clone();
    let err = KnnClassifier::params(1)
        .fit_frame_drain::<String>(&mut drained, "y")
        .map(drop)
        .expect_err("null label");
    assert_eq!(err.to_string(), shared.to_string());
    assert!(drained.equals_missing(&labels));
}

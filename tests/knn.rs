//! k-NN models against an independent brute-force oracle: every metric, weighting
//! and algorithm, on data full of duplicates and ties.

use linfa::traits::Fit;
use ndarray::{Array1, Array2};
use polars::prelude::*;
use proptest::prelude::*;
use sparkbook::knn::{Algorithm, KnnClassifier, KnnRegressor, Metric, Weights};
use sparkbook::prelude::*;

/// The oracle: direct differences, dimensions summed in order, all distances sorted
/// by (distance, index).
fn oracle_distance(metric: Metric, a: &[f64], b: &[f64]) -> f64 {
    match metric {
        Metric::Euclidean => a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            .sqrt(),
        Metric::Manhattan => a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum(),
        Metric::Chebyshev => a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max),
        Metric::Minkowski(p) => a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs().powf(p))
            .sum::<f64>()
            .powf(1.0 / p),
        Metric::Cosine => {
            let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
            1.0 - dot / (na * nb)
        }
    }
}

fn oracle_neighbors(train: &Array2<f64>, q: &[f64], k: usize, metric: Metric) -> Vec<(f64, usize)> {
    let mut all: Vec<(f64, usize)> = train
        .rows()
        .into_iter()
        .enumerate()
        .map(|(i, r)| (oracle_distance(metric, r.as_slice().unwrap(), q), i))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.truncate(k);
    all
}

fn oracle_predict(nb: &[(f64, usize)], y: &[f64], weights: Weights) -> f64 {
    let w: Vec<f64> = match weights {
        Weights::Uniform => vec![1.0; nb.len()],
        Weights::Distance if nb.iter().any(|n| n.0 <= 0.0) => nb
            .iter()
            .map(|n| if n.0 <= 0.0 { 1.0 } else { 0.0 })
            .collect(),
        Weights::Distance => nb.iter().map(|n| 1.0 / n.0).collect(),
    };
    let num: f64 = w.iter().zip(nb).map(|(w, n)| w * y[n.1]).sum();
    num / w.iter().sum::<f64>()
}

const METRICS: [Metric; 5] = [
    Metric::Euclidean,
    Metric::Manhattan,
    Metric::Chebyshev,
    Metric::Minkowski(3.0),
    Metric::Cosine,
];

fn algorithms(metric: Metric) -> Vec<Algorithm> {
    if metric == Metric::Cosine {
        vec![Algorithm::Auto, Algorithm::Brute]
    } else {
        vec![
            Algorithm::Auto,
            Algorithm::Brute,
            Algorithm::KdTree,
            Algorithm::BallTree,
        ]
    }
}

/// Small integer coordinates: many exact ties and duplicate rows. Row 0 is never all
/// zeros (cosine needs non-zero vectors).
fn data() -> impl Strategy<Value = (Array2<f64>, Vec<f64>, Array2<f64>, usize)> {
    (1usize..5, 1usize..60, 1usize..20).prop_flat_map(|(dim, n, m)| {
        (
            prop::collection::vec(1i8..4, n * dim),
            prop::collection::vec(-50i32..50, n),
            prop::collection::vec(0i8..5, m * dim),
            1..=n,
        )
            .prop_map(move |(x, y, q, k)| {
                let x = Array2::from_shape_vec((n, dim), x.into_iter().map(f64::from).collect())
                    .unwrap();
                let mut q: Vec<f64> = q.into_iter().map(f64::from).collect();
                for row in q.chunks_mut(dim) {
                    if row.iter().all(|v| *v == 0.0) {
                        row[0] = 1.0;
                    }
                }
                let q = Array2::from_shape_vec((m, dim), q).unwrap();
                (x, y.into_iter().map(f64::from).collect(), q, k)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn neighbours_and_predictions_equal_the_oracle((x, y, q, k) in data()) {
        let dataset = linfa::Dataset::new(x.clone(), Array1::from(y.clone()));
        for metric in METRICS {
            for algorithm in algorithms(metric) {
                for weights in [Weights::Uniform, Weights::Distance] {
                    let model = KnnRegressor::params(k)
                        .metric(metric)
                        .algorithm(algorithm)
                        .weights(weights)
                        .leaf_size(3)
                        .fit(&dataset)?;
                    let (dist, idx) = model.kneighbors(&q, k)?;
                    let pred = model.try_predict(&q)?;
                    for (r, query) in q.rows().into_iter().enumerate() {
                        let want = oracle_neighbors(&x, query.as_slice().unwrap(), k, metric);
                        let got: Vec<(f64, usize)> = dist.row(r).iter().copied().zip(idx.row(r).iter().copied()).collect();
                        prop_assert_eq!(
                            got.iter().map(|(d, i)| (d.to_bits(), *i)).collect::<Vec<_>>(),
                            want.iter().map(|(d, i)| (d.to_bits(), *i)).collect::<Vec<_>>(),
                            "{:?} {:?} row {}", metric, algorithm, r
                        );
                        prop_assert_eq!(pred[r].to_bits(), oracle_predict(&want, &y, weights).to_bits());
                    }
                }
            }
        }
    }

    #[test]
    fn classifier_votes_equal_the_oracle((x, y, q, k) in data()) {
        let labels: Vec<i64> = y.iter().map(|v| (*v as i64).rem_euclid(3)).collect();
        let dataset = linfa::Dataset::new(x.clone(), Array1::from(labels.clone()));
        for weights in [Weights::Uniform, Weights::Distance] {
            let model = KnnClassifier::params(k).weights(weights).fit(&dataset)?;
            let classes = model.classes().to_vec();
            let proba = model.predict_proba(&q)?;
            let pred = model.try_predict(&q)?;
            for (r, query) in q.rows().into_iter().enumerate() {
                let nb = oracle_neighbors(&x, query.as_slice().unwrap(), k, Metric::Euclidean);
                let mut votes = vec![0.0; classes.len()];
                let zero = nb.iter().any(|n| n.0 <= 0.0);
                for (d, i) in &nb {
                    let w = match weights {
                        Weights::Uniform => 1.0,
                        Weights::Distance if zero => f64::from(u8::from(*d <= 0.0)),
                        Weights::Distance => 1.0 / d,
                    };
                    votes[classes.iter().position(|c| *c == labels[*i]).unwrap()] += w;
                }
                let total: f64 = votes.iter().sum();
                for (j, v) in votes.iter().enumerate() {
                    prop_assert!((proba[[r, j]] - v / total).abs() < 1e-12);
                }
                let best = (0..votes.len()).fold(0, |b, j| if votes[j] > votes[b] { j } else { b });
                prop_assert_eq!(pred[r], classes[best]);
            }
        }
    }

    #[test]
    fn predictions_do_not_depend_on_partitions_or_threads(
        (x, y, q, k) in data(),
        partitions in 1usize..=64,
        threads in 1usize..=8,
    ) {
        let train = df!("a" => x.column(0).to_vec(), "y" => y.clone())?;
        let test = df!("a" => q.column(0).to_vec())?;
        let model = KnnRegressor::params(k).weights(Weights::Distance).fit_frame(&train, "y")?;
        let whole = model.predict_frame(&test)?;
        let sc = Session::builder().threads(threads).progress(false).build()?;
        let b = sc.broadcast(model);
        let parts = sc
            .parallelize(&test, partitions)?
            .map_partitions(|part| b.value()?.predict_frame(&part))?
            .collect()?;
        let bits = |df: &DataFrame| df.column("pred").unwrap().f64().unwrap().into_no_null_iter().map(f64::to_bits).collect::<Vec<_>>();
        prop_assert_eq!(bits(&parts), bits(&whole));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Draining the frame into the model (columns moved, transposed in place)
    /// gives the model `fit_frame` gives, on frames of several chunks with an
    /// integer and a boolean feature among the floats.
    #[test]
    fn a_drained_fit_is_the_shared_fit((x, y, q, k) in data(), split in 0usize..60) {
        let (n, dim) = x.dim();
        let split = split.min(n);
        let mut columns: Vec<Column> = (0..dim)
            .map(|j| {
                let values = x.column(j).to_vec();
                match j {
                    0 => Column::new("x0".into(), values.iter().map(|v| *v as i32).collect::<Vec<_>>()),
                    1 => Column::new("x1".into(), values.iter().map(|v| *v > 1.0).collect::<Vec<_>>()),
                    _ => Column::new(format!("x{j}").into(), values),
                }
            })
            .collect();
        columns.push(Column::new("y".into(), y.clone()));
        let whole = DataFrame::new_infer_height(columns)?;
        let mut chunked = whole.slice(0, split);
        chunked.vstack_mut(&whole.slice(split as i64, n - split))?;
        let test = DataFrame::new_infer_height(
            (0..dim).map(|j| Column::new(format!("x{j}").into(), q.column(j).to_vec())).collect(),
        )?;
        let labels = |df: &DataFrame| -> PolarsResult<DataFrame> {
            let mut df = df.clone();
            let classes: Vec<i64> = y.iter().map(|v| (*v as i64).rem_euclid(3)).collect();
            df.with_column(Column::new("y".into(), classes))?;
            Ok(df)
        };
        for algorithm in [Algorithm::Auto, Algorithm::Brute, Algorithm::KdTree] {
            let params = KnnRegressor::params(k).algorithm(algorithm).leaf_size(3);
            let shared = params.fit_frame(&chunked, "y")?;
            let mut drained = chunked.clone();
            let model = params.fit_frame_drain(&mut drained, "y")?;
            prop_assert_eq!(drained.width(), 0);
            prop_assert_eq!(model.features(), shared.features());
            prop_assert!(model.predict_frame(&test)?.equals(&shared.predict_frame(&test)?));
        }
        // A feature list leaves the other columns out of the model, and drains them too.
        let some: Vec<String> = (0..dim).step_by(2).map(|j| format!("x{j}")).collect();
        let some: Vec<&str> = some.iter().map(String::as_str).collect();
        let shared = KnnRegressor::params(k).fit_frame_with(&chunked, "y", &some)?;
        let mut drained = chunked.clone();
        let model = KnnRegressor::params(k).fit_frame_drain_with(&mut drained, "y", &some)?;
        prop_assert_eq!(drained.width(), 0);
        prop_assert_eq!(model.features(), shared.features());
        prop_assert!(model.predict_frame(&test)?.equals(&shared.predict_frame(&test)?));
        let mut drained = labels(&chunked)?;
        let model: KnnClassifier<i64> =
            KnnClassifier::params(k).fit_frame_drain_with(&mut drained, "y", &some)?;
        let shared: KnnClassifier<i64> =
            KnnClassifier::params(k).fit_frame_with(&labels(&chunked)?, "y", &some)?;
        prop_assert_eq!(drained.width(), 0);
        prop_assert!(model.predict_proba_frame(&test)?.equals(&shared.predict_proba_frame(&test)?));
        let mut drained = labels(&chunked)?;
        let model: KnnClassifier<i64> = KnnClassifier::params(k).fit_frame_drain(&mut drained, "y")?;
        let shared: KnnClassifier<i64> = KnnClassifier::params(k).fit_frame(&labels(&chunked)?, "y")?;
        prop_assert!(model.predict_proba_frame(&test)?.equals(&shared.predict_proba_frame(&test)?));
    }
}

/// King County's numeric columns, split 80/20 as the harness splits them.
fn king_county() -> (DataFrame, DataFrame) {
    let df = sparkbook::datasets::house_prices().unwrap();
    train_test_split(&df.drop_many(["id", "date"]), 0.2, 42).unwrap()
}

/// King County drained: its predictions equal those of the model fitted on the
/// shared frame, bit for bit.
#[test]
fn a_drained_fit_on_real_data_predicts_as_the_shared_fit() {
    let (train, test) = king_county();
    let shared = KnnRegressor::params(100)
        .fit_frame(&train, "price")
        .unwrap();
    let mut drained = train.clone();
    let model = KnnRegressor::params(100)
        .fit_frame_drain(&mut drained, "price")
        .unwrap();
    assert_eq!(drained.shape(), (0, 0));
    let want = shared.predict_frame(&test).unwrap();
    assert!(model.predict_frame(&test).unwrap().equals(&want));
}

#[test]
fn cancellation_prone_data_still_matches_the_oracle() {
    // Huge norms, tiny differences: |x|^2 + |y|^2 - 2xy loses every digit here.
    let n = 300;
    let x = Array2::from_shape_fn((n, 3), |(i, j)| 1e8 + ((i * 7 + j * 13) % 17) as f64 * 1e-3);
    let q = Array2::from_shape_fn((40, 3), |(i, j)| {
        1e8 + ((i * 5 + j * 3) % 11) as f64 * 1.1e-3
    });
    let y: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let data = linfa::Dataset::new(x.clone(), Array1::from(y));
    for algorithm in [Algorithm::Brute, Algorithm::KdTree, Algorithm::BallTree] {
        let model = KnnRegressor::params(10)
            .algorithm(algorithm)
            .fit(&data)
            .unwrap();
        let (_, idx) = model.kneighbors(&q, 10).unwrap();
        for (r, query) in q.rows().into_iter().enumerate() {
            let want: Vec<usize> =
                oracle_neighbors(&x, query.as_slice().unwrap(), 10, Metric::Euclidean)
                    .into_iter()
                    .map(|n| n.1)
                    .collect();
            assert_eq!(idx.row(r).to_vec(), want, "{algorithm:?} row {r}");
        }
    }
}

#[test]
fn auto_choice_at_higher_dimensions_stays_exact() {
    let (n, d) = (500, 24);
    let x = Array2::from_shape_fn((n, d), |(i, j)| ((i * 31 + j * 17) % 23) as f64 / 7.0);
    let q = Array2::from_shape_fn((30, d), |(i, j)| ((i * 11 + j * 5) % 19) as f64 / 6.0);
    let data = linfa::Dataset::new(x.clone(), Array1::from_iter((0..n).map(|i| i as f64)));
    // Euclidean: brute force, because the tree tried at fit would scan most of
    // the 500 rows; other metrics: brute force above 16 dimensions.
    for (metric, chosen) in [
        (Metric::Euclidean, Algorithm::Brute),
        (Metric::Manhattan, Algorithm::Brute),
    ] {
        let model = KnnRegressor::params(25).metric(metric).fit(&data).unwrap();
        assert_eq!(model.algorithm(), chosen);
        let (dist, idx) = model.kneighbors(&q, 25).unwrap();
        for (r, query) in q.rows().into_iter().enumerate() {
            let want = oracle_neighbors(&x, query.as_slice().unwrap(), 25, metric);
            let got: Vec<(f64, usize)> = dist
                .row(r)
                .iter()
                .copied()
                .zip(idx.row(r).iter().copied())
                .collect();
            assert_eq!(got, want, "{metric:?} row {r}");
        }
    }
}

/// Where the tree prunes (2 dimensions, 20,000 rows) `Auto` keeps it, and answers
/// as brute force does.
#[test]
fn auto_keeps_the_tree_where_it_prunes() {
    let n = 20_000;
    let x = Array2::from_shape_fn((n, 2), |(i, j)| ((i * 7919 + j * 104_729) % 10_007) as f64);
    let y = Array1::from_iter((0..n).map(|i| (i % 97) as f64));
    let data = linfa::Dataset::new(x, y);
    let q = Array2::from_shape_fn((50, 2), |(i, j)| ((i * 613 + j * 7) % 10_007) as f64);
    let auto = KnnRegressor::params(10).fit(&data).unwrap();
    assert_eq!(auto.algorithm(), Algorithm::KdTree);
    assert_answers_as_brute(&auto, &data, &q, "d = 2");
}

/// `auto`, fitted on `data` with k = 10, predicts `q` as a brute-force model does.
fn assert_answers_as_brute(
    auto: &KnnRegressor,
    data: &linfa::Dataset<f64, f64, ndarray::Ix1>,
    q: &Array2<f64>,
    what: &str,
) {
    let brute = KnnRegressor::params(10)
        .algorithm(Algorithm::Brute)
        .fit(data)
        .unwrap();
    assert_eq!(
        auto.try_predict(q).unwrap(),
        brute.try_predict(q).unwrap(),
        "{what}"
    );
}

/// Past 65,536 rows `Auto` first tries the tree on a strided sample: where the
/// tree cannot prune (uniform, 32 dimensions) it goes straight to brute force,
/// where it can (2 dimensions) the full tree is kept; both answer as brute
/// force does.
#[test]
fn auto_on_a_sample_decides_for_large_training_sets() {
    let n = 70_000;
    let mut state = 7u64;
    let mut unit = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for (dim, want) in [(32, Algorithm::Brute), (2, Algorithm::KdTree)] {
        let x = Array2::from_shape_simple_fn((n, dim), &mut unit);
        let y = Array1::from_iter((0..n).map(|i| (i % 97) as f64));
        let data = linfa::Dataset::new(x, y);
        let q = Array2::from_shape_simple_fn((20, dim), &mut unit);
        let auto = KnnRegressor::params(10).fit(&data).unwrap();
        assert_eq!(auto.algorithm(), want, "d = {dim}");
        assert_answers_as_brute(&auto, &data, &q, &format!("d = {dim}"));
    }
}

#[test]
fn seed_workflow_on_real_data_matches_a_direct_predict() {
    let (train, test) = king_county();
    let model = KnnRegressor::params(100)
        .fit_frame(&train, "price")
        .unwrap();
    let direct = model.predict_frame(&test).unwrap();

    let sc = Session::builder()
        .threads(2)
        .progress(false)
        .build()
        .unwrap();
    let b_model = sc.broadcast(model);
    let preds = sc
        .parallelize(&test, 10)
        .unwrap()
        .zip_with_index()
        .unwrap()
        .map_partitions(|part| b_model.value()?.predict_frame(&part))
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(preds.get_column_names(), ["row", "true", "pred"]);
    assert!(
        preds
            .column("pred")
            .unwrap()
            .equals(direct.column("pred").unwrap())
    );
    let rows: Vec<u64> = preds
        .column("row")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(rows, (0..test.height() as u64).collect::<Vec<_>>());
    let scores = preds.scores().unwrap();
    let r = scores.regression().unwrap();
    // Raw (unscaled) features, k = 100: a weak but clearly better-than-mean model.
    assert!(r.r2 > 0.3 && r.r2 < 1.0, "{scores}");
    assert!(b_model.size_bytes() > 17 * 8 * train.height());
}

#[test]
fn save_and_load_round_trip_exactly() {
    let dir = std::env::temp_dir().join(format!("sparkbook-knn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wine = sparkbook::datasets::wine().unwrap().drop("target").unwrap();
    let model: KnnClassifier<String> = KnnClassifier::params(5)
        .weights(Weights::Distance)
        .fit_frame(&wine, "cultivar")
        .unwrap();
    let path = dir.join("wine.json");
    model.save(&path).unwrap();
    let back: KnnClassifier<String> = KnnClassifier::load(&path).unwrap();
    assert_eq!(
        back.predict_frame(&wine).unwrap(),
        model.predict_frame(&wine).unwrap()
    );
    assert_eq!(
        back.predict_proba_frame(&wine).unwrap(),
        model.predict_proba_frame(&wine).unwrap()
    );
    // A classifier file is not a regressor.
    assert!(matches!(
        KnnRegressor::load(&path),
        Err(Error::ModelFile { .. })
    ));
    // Nothing but the saved file is left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("wine.json")]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn classifier_on_wine_is_accurate_and_proba_rows_sum_to_one() {
    let wine = sparkbook::datasets::wine().unwrap().drop("target").unwrap();
    let (train, test) = train_test_split(&wine, 0.3, 7).unwrap();
    let model: KnnClassifier<String> = KnnClassifier::params(5)
        .fit_frame(&train, "cultivar")
        .unwrap();
    assert_eq!(model.classes(), ["class_0", "class_1", "class_2"]);
    let preds = model.predict_frame(&test).unwrap();
    let s = preds.scores().unwrap();
    let c = s.classification().unwrap();
    assert_eq!(c.n, test.height());
    assert_eq!(c.confusion.iter().flatten().sum::<usize>(), test.height());
    // Unscaled wine features with k = 5: sklearn reaches about 0.7.
    assert!(c.accuracy > 0.6, "{s}");
    let proba = model.predict_proba_frame(&test).unwrap();
    for i in 0..proba.height() {
        let total: f64 = proba
            .columns()
            .iter()
            .map(|c| c.f64().unwrap().get(i).unwrap())
            .sum();
        assert!((total - 1.0).abs() < 1e-12);
    }
}

#[test]
fn models_are_send_sync_and_broadcastable() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<KnnRegressor>();
    assert_send_sync::<KnnClassifier<String>>();
    assert_send_sync::<KnnClassifier<i64>>();
}

/// The k-d tree stores the rows in its leaf order; a saved model must still hold
/// them in the order they were given, and indices must survive the round trip.
#[test]
fn saved_tree_model_keeps_row_order_and_indices() {
    let dir = std::env::temp_dir().join(format!("sparkbook-order-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let x = Array2::from_shape_fn((300, 3), |(i, j)| ((i * 37 + j * 11) % 17) as f64);
    let y = Array1::from_shape_fn(300, |i| i as f64);
    let model = KnnRegressor::params(5)
        .algorithm(Algorithm::KdTree)
        .fit(&linfa::Dataset::new(x.clone(), y))
        .unwrap();
    let path = dir.join("tree.json");
    model.save(&path).unwrap();
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let saved: Vec<f64> = file["model"]["core"]["index"]["train"]["data"]
        .as_array()
        .expect("the saved training matrix")
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(saved, x.iter().copied().collect::<Vec<_>>());
    let back = KnnRegressor::load(&path).unwrap();
    let queries = Array2::from_shape_fn((40, 3), |(i, j)| ((i * 5 + j * 3) % 17) as f64 + 0.5);
    assert_eq!(
        back.kneighbors(&queries, 9).unwrap(),
        model.kneighbors(&queries, 9).unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

//! The exact k-NN kernels through the public API: fit (index build) and predict,
//! per algorithm, on seeded uniform data. `cd benches/kernels && cargo bench`.
//!
//! Predictions run on one thread (a one-partition job on a one-thread session), so
//! the figures are the kernels' own, not the engine's scaling.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use sparkbook::knn::{Algorithm, KnnRegressor};
use sparkbook::polars::prelude::*;
use sparkbook::prelude::*;

fn frame(rows: usize, d: usize, seed: u64) -> DataFrame {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut columns: Vec<Column> = (0..d)
        .map(|j| {
            let values: Vec<f64> = (0..rows).map(|_| rng.r#gen::<f64>()).collect();
            Column::new(format!("f{j}").into(), values)
        })
        .collect();
    let y: Vec<f64> = (0..rows).map(|_| rng.r#gen::<f64>()).collect();
    columns.push(Column::new("y".into(), y));
    DataFrame::new(rows, columns).expect("equal lengths")
}

fn fit(algorithm: Algorithm, train: &DataFrame) -> KnnRegressor {
    KnnRegressor::params(100)
        .algorithm(algorithm)
        .fit_frame(train, "y")
        .expect("valid data")
}

/// Predict 2,000 queries, k = 100, against 100,000 training rows.
fn predict(c: &mut Criterion) {
    let sc = Session::builder()
        .threads(1)
        .progress(false)
        .build()
        .expect("session");
    let mut group = c.benchmark_group("predict 2k queries x 100k train, k=100");
    group.sample_size(10);
    for d in [8, 32] {
        let (train, test) = (frame(100_000, d, 1), frame(2_000, d, 2));
        group.throughput(Throughput::Elements(test.height() as u64));
        for (name, algorithm) in [("brute", Algorithm::Brute), ("kd_tree", Algorithm::KdTree)] {
            let model = sc.broadcast(fit(algorithm, &train));
            group.bench_with_input(
                BenchmarkId::new(name, format!("d={d}")),
                &test,
                |b, test| {
                    b.iter(|| {
                        sc.parallelize(test, 1)
                            .and_then(|p| p.map_partitions_fn(KnnPredict, &model))
                            .and_then(|p| p.collect())
                            .expect("predict")
                    })
                },
            );
        }
    }
    group.finish();
}

/// Building the index: the k-d tree over 1,000,000 rows at d = 8.
fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("fit 1M train, d=8");
    group.sample_size(10);
    let train = frame(1_000_000, 8, 3);
    for (name, algorithm) in [("brute", Algorithm::Brute), ("kd_tree", Algorithm::KdTree)] {
        group.bench_function(name, |b| b.iter(|| fit(algorithm, &train)));
    }
    group.finish();
}

criterion_group!(kernels, predict, build);
criterion_main!(kernels);

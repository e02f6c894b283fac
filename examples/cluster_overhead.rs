//! The seed workflow on a local session and on a cluster of worker processes on
//! this machine, side by side, with what the cluster ships per job.
//!
//! ```sh
//! cargo build --features cluster --bin sparkbook &&
//!     cargo run --features cluster --example cluster_overhead
//! ```
//!
//! Prints a markdown table (BENCHMARKS.md#cluster). Workers are `sparkbook worker`
//! processes found next to this example's binary (`target/debug/sparkbook`: the dev
//! profile is optimised, see Cargo.toml, and both sides of the table use it).

use std::path::PathBuf;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use sparkbook::cluster::ClusterConfig;
use sparkbook::polars::prelude::*;
use sparkbook::prelude::*;

const REPEATS: usize = 3;
const PARTITIONS: usize = 8;

fn main() -> sparkbook::Result<()> {
    let worker = worker_binary();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = 2;
    let threads_each = (cores / workers).max(1);
    println!(
        "{cores} cores; local session: {cores} threads; cluster: {workers} worker processes x {threads_each} threads, loopback\n"
    );

    let houses = sparkbook::datasets::house_prices()?.drop_many(["id", "date"]);
    let diamonds = numeric(sparkbook::datasets::diamonds()?)?;
    let cases = [
        ("King County, k = 100", split(&houses)?, "price"),
        ("diamonds, k = 100", split(&diamonds)?, "price"),
        (
            "synthetic 200k x 50k, d = 8, k = 100",
            synthetic(200_000, 50_000, 8),
            "y",
        ),
    ];

    println!(
        "| case | local | cluster, first job | cluster, next jobs | cluster / local | broadcast | sent per partition | received per partition |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, (train, test), target) in &cases {
        let model = KnnRegressor::params(100).fit_frame(train, target)?;

        let local = Session::builder().threads(cores).progress(false).build()?;
        let b = local.broadcast(model.clone());
        let mut local_times = Vec::new();
        let mut expected = None;
        for _ in 0..REPEATS {
            let started = Instant::now();
            let out = job(&local, &b, test)?;
            local_times.push(started.elapsed().as_secs_f64());
            expected = Some(out);
        }

        let sc = Session::builder()
            .progress(false)
            .cluster(ClusterConfig::local_processes(workers, &worker).worker_threads(threads_each))
            .build()?;
        let b = sc.broadcast(model);
        let started = Instant::now();
        let first = job(&sc, &b, test)?;
        let first_s = started.elapsed().as_secs_f64();
        let first_report = sc.last_job().expect("a job ran");
        assert!(first.equals_missing(expected.as_ref().expect("local ran")));
        let mut warm = Vec::new();
        let mut warm_report = first_report.clone();
        for _ in 0..REPEATS {
            let started = Instant::now();
            let out = job(&sc, &b, test)?;
            warm.push(started.elapsed().as_secs_f64());
            assert!(out.equals_missing(expected.as_ref().expect("local ran")));
            warm_report = sc.last_job().expect("a job ran");
        }
        let broadcast = first_report.bytes_out - warm_report.bytes_out;
        let (local_s, warm_s) = (median(&mut local_times), median(&mut warm));
        println!(
            "| {name} | {:.3} s | {:.3} s | {:.3} s | {:.2}x | {:.1} MB x {workers} | {:.0} kB | {:.0} kB |",
            local_s,
            first_s,
            warm_s,
            warm_s / local_s,
            broadcast as f64 / workers as f64 / 1e6,
            warm_report.bytes_out as f64 / PARTITIONS as f64 / 1e3,
            warm_report.bytes_in as f64 / PARTITIONS as f64 / 1e3,
        );
    }

    // The fixed cost of one job: tiny partitions, nothing to compute.
    let tiny = df!("x" => [0.0, 1.0, 2.0, 3.0], "y" => [0.0, 1.0, 2.0, 3.0])?;
    let model = KnnRegressor::params(1).fit_frame(&tiny, "y")?;
    let local = Session::builder().threads(cores).progress(false).build()?;
    let started = Instant::now();
    let sc = Session::builder()
        .progress(false)
        .cluster(ClusterConfig::local_processes(workers, &worker).worker_threads(threads_each))
        .build()?;
    let start_s = started.elapsed().as_secs_f64();
    let (bl, bc) = (local.broadcast(model.clone()), sc.broadcast(model));
    job(&sc, &bc, &tiny)?;
    let (mut l, mut c) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let started = Instant::now();
        job(&local, &bl, &tiny)?;
        l.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        job(&sc, &bc, &tiny)?;
        c.push(started.elapsed().as_secs_f64());
    }
    println!(
        "\nper-job overhead (8 partitions of <= 1 row, median of 20): local {:.2} ms, cluster {:.2} ms; starting the cluster (2 processes, connect, handshake): {:.0} ms",
        median(&mut l) * 1e3,
        median(&mut c) * 1e3,
        start_s * 1e3
    );
    Ok(())
}

/// The seed workflow with the named predict function.
fn job(
    sc: &Session,
    model: &Broadcast<KnnRegressor>,
    test: &DataFrame,
) -> sparkbook::Result<DataFrame> {
    sc.parallelize(test, PARTITIONS)?
        .zip_with_index()?
        .map_partitions_fn(KnnPredict, model)?
        .collect()
}

fn worker_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>");
    let worker = dir.join("sparkbook");
    assert!(
        worker.is_file(),
        "{} not found: cargo build --features cluster --bin sparkbook",
        worker.display()
    );
    worker
}

fn split(df: &DataFrame) -> sparkbook::Result<(DataFrame, DataFrame)> {
    train_test_split(df, 0.2, 42)
}

/// diamonds' numeric columns.
fn numeric(df: DataFrame) -> sparkbook::Result<DataFrame> {
    let keep: Vec<String> = df
        .columns()
        .iter()
        .filter(|c| c.dtype().is_primitive_numeric())
        .map(|c| c.name().to_string())
        .collect();
    Ok(df.select(keep)?)
}

fn synthetic(train: usize, test: usize, d: usize) -> (DataFrame, DataFrame) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut frame = |rows: usize| {
        let mut columns: Vec<Column> = (0..d)
            .map(|j| {
                let values: Vec<f64> = (0..rows).map(|_| rng.r#gen::<f64>()).collect();
                Column::new(format!("f{j}").into(), values)
            })
            .collect();
        let y: Vec<f64> = (0..rows).map(|_| rng.r#gen::<f64>()).collect();
        columns.push(Column::new("y".into(), y));
        DataFrame::new(rows, columns).expect("equal lengths")
    };
    (frame(train), frame(test))
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

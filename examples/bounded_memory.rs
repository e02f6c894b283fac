//! Peak memory of a large predict job: 10,000,000 test rows against 1,000,000
//! training rows, d = 8, k = 5, through the seed workflow.
//!
//! The claim: memory is train + test + output plus a bounded working set (query
//! blocks, one partition's feature matrix per thread), never test x train. Prints the
//! sizes, the peak resident set (VmHWM) and their ratio.
//!
//! Run with `cargo run --example bounded_memory` (about a minute on 2 cores; needs
//! ~1.5 GB). Sizes can be scaled down: `bounded_memory 100000 1000000`.

use std::time::Instant;

use polars::prelude::*;
use sparkbook::prelude::*;

const DIM: usize = 8;

/// A seeded xorshift generator: the same data on every machine, no dependency.
struct XorShift(u64);

impl XorShift {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn frame(rows: usize, seed: u64, with_target: bool) -> PolarsResult<DataFrame> {
    let mut rng = XorShift(seed);
    let mut columns: Vec<Column> = (0..DIM)
        .map(|j| {
            Column::new(
                format!("x{j}").into(),
                (0..rows).map(|_| rng.next_f64()).collect::<Vec<f64>>(),
            )
        })
        .collect();
    if with_target {
        columns.push(Column::new(
            "y".into(),
            (0..rows).map(|_| rng.next_f64()).collect::<Vec<f64>>(),
        ));
    }
    DataFrame::new(rows, columns)
}

/// Peak resident set size of this process so far, in bytes (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn main() -> sparkbook::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let n_test = args
        .next()
        .transpose()
        .map_err(|e| Error::Message(e.to_string()))?
        .unwrap_or(10_000_000);
    let n_train = args
        .next()
        .transpose()
        .map_err(|e| Error::Message(e.to_string()))?
        .unwrap_or(1_000_000);

    let sc = Session::builder().progress(false).build()?;
    let started = Instant::now();
    let model = {
        let train = frame(n_train, 1, true)?;
        KnnRegressor::params(5).fit_frame(&train, "y")?
        // The training frame is dropped here: the model owns its own copy.
    };
    let train_bytes = (n_train * (DIM + 1) * 8) as u64;
    let test = frame(n_test, 2, false)?;
    let test_bytes = test.estimated_size() as u64;
    println!(
        "train {n_train} x {DIM} ({:.0} MB with targets), test {n_test} x {DIM} ({:.0} MB), k = 5, {:?}, {} threads; fit {:.1} s",
        mb(train_bytes),
        mb(test_bytes),
        model.algorithm(),
        sc.threads(),
        started.elapsed().as_secs_f64()
    );

    let b_model = sc.broadcast(model);
    let predict_started = Instant::now();
    let preds = sc
        .parallelize(&test, 100)?
        .map_partitions(|part| b_model.value()?.predict_frame(&part))?
        .collect()?;
    let predict_s = predict_started.elapsed().as_secs_f64();
    let output_bytes = preds.estimated_size() as u64;
    let budget = train_bytes + test_bytes + output_bytes;
    let peak = peak_rss().unwrap_or(0);
    println!(
        "predicted {} rows in {predict_s:.1} s; output {:.0} MB",
        preds.height(),
        mb(output_bytes)
    );
    println!(
        "peak RSS {:.0} MB = {:.2} x (train + test + output = {:.0} MB)",
        mb(peak),
        peak as f64 / budget as f64,
        mb(budget)
    );
    Ok(())
}

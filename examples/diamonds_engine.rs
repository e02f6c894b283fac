//! The engine on real data: 53,940 diamonds, split into 10 partitions.
//!
//! Mirrors a PySpark notebook: an RDD aggregate computes the mean price per cut,
//! the small table is broadcast, `map_partitions` adds each diamond's price relative
//! to its cut's mean, an accumulator counts the bargains, `collect` rebuilds the frame
//! in the file's row order.
//!
//! Run with `cargo run --example diamonds_engine`.

use std::collections::HashMap;
use std::time::Instant;

use polars::prelude::*;
use sparkbook::prelude::*;

fn main() -> sparkbook::Result<()> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/diamonds.csv");
    let df = CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(path.into()))?
        .finish()?;
    println!("diamonds: {} rows x {} columns", df.height(), df.width());

    let sc = Session::builder().app_name("diamonds").build()?;
    println!("session: {} threads", sc.threads());
    let started = Instant::now();

    // 1. sc.parallelize(rows).aggregate(...): mean price per cut.
    let cut = df.column("cut")?.str()?;
    let price = df.column("price")?.cast(&DataType::Float64)?;
    let rows: Vec<(String, f64)> = cut
        .iter()
        .zip(price.f64()?.iter())
        .map(|(c, p)| (c.unwrap_or("?").to_owned(), p.unwrap_or(f64::NAN)))
        .collect();
    let totals = sc.parallelize(rows, 10)?.aggregate(
        HashMap::<String, (f64, u64)>::new(),
        |mut acc, (cut, price)| {
            let e = acc.entry(cut.clone()).or_default();
            e.0 += price;
            e.1 += 1;
            acc
        },
        |mut a, b| {
            for (cut, (sum, n)) in b {
                let e = a.entry(cut).or_default();
                e.0 += sum;
                e.1 += n;
            }
            a
        },
    )?;
    let means: HashMap<String, f64> = totals
        .into_iter()
        .map(|(cut, (sum, n))| (cut, sum / n as f64))
        .collect();

    // 2. sc.broadcast(means): one copy for all partitions.
    let b_means = sc.broadcast(means);
    let bargains = sc.accumulator(0u64);

    // 3. mapPartitions: price relative to the cut's mean, per partition.
    let out = sc
        .parallelize(&df, 10)?
        .zip_with_index()?
        .map_partitions(|part| -> sparkbook::Result<DataFrame> {
            let means = b_means.value()?;
            let cut = part.column("cut")?.str()?;
            let price = part.column("price")?.cast(&DataType::Float64)?;
            let relative: Vec<f64> = cut
                .iter()
                .zip(price.f64()?.iter())
                .map(|(c, p)| {
                    let r = p.unwrap_or(f64::NAN) / means[c.unwrap_or("?")];
                    if r < 0.5 {
                        bargains.add(1);
                    }
                    r
                })
                .collect();
            Ok(DataFrame::new(
                part.height(),
                vec![
                    part.column("row")?.clone(),
                    part.column("cut")?.clone(),
                    part.column("price")?.clone(),
                    Column::new("vs_cut_mean".into(), relative),
                ],
            )?)
        })?
        .collect()?;
    let elapsed = started.elapsed();

    println!("{}", out.head(Some(5)));
    let mut cuts: Vec<_> = b_means
        .value()?
        .iter()
        .map(|(c, m)| (c.clone(), *m))
        .collect();
    cuts.sort_by(|a, b| a.1.total_cmp(&b.1));
    for (cut, mean) in &cuts {
        println!("mean price {cut:<10} {mean:>9.2}");
    }
    println!(
        "diamonds under half their cut's mean price: {}",
        bargains.value()
    );
    println!("broadcast table: {} bytes, one copy", b_means.size_bytes());
    if let Some(job) = sc.last_job() {
        let slowest = job.partitions.iter().map(|p| p.seconds).fold(0.0, f64::max);
        println!(
            "last job: {} partitions, {:.1} ms wall, slowest partition {:.1} ms",
            job.partitions.len(),
            job.seconds * 1e3,
            slowest * 1e3
        );
    }
    println!("whole workflow: {:.1} ms", elapsed.as_secs_f64() * 1e3);

    // The collected frame is in the file's row order.
    assert_eq!(out.height(), df.height());
    assert!(out.column("price")?.equals(df.column("price")?));
    Ok(())
}

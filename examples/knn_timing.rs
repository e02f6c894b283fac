//! Timing of the seed's k-NN job on two real data sets, for comparison with sklearn.
//!
//! - diamonds: 53,940 rows, 9 features (the 6 numeric ones and cut, color, clarity as
//!   their ggplot2 level order), standardised with the training rows' mean and
//!   deviation;
//! - King County house sales: 21,613 rows, the seed workflow's 18 raw numeric features.
//!
//! Both split 80/20 (row i is a test row when i % 5 == 0), k = 100, uniform weights.
//! Prints one line per method and writes the data and predictions to
//! `target/bench-data/` so `benches/sklearn_anchor.py` can run sklearn on exactly the
//! same numbers and check that the predictions agree.
//!
//! Run with `bash benches/first_timing.sh` (both systems), or alone with
//! `cargo run --example knn_timing`.

use std::time::Instant;

use polars::prelude::*;
use sparkbook::knn::{Algorithm, KnnRegressor};
use sparkbook::prelude::*;

const LEVELS: [(&str, &[&str]); 3] = [
    ("cut", &["Fair", "Good", "Very Good", "Premium", "Ideal"]),
    ("color", &["J", "I", "H", "G", "F", "E", "D"]),
    (
        "clarity",
        &["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"],
    ),
];
const FEATURES: [&str; 9] = [
    "carat", "cut", "color", "clarity", "depth", "table", "x", "y", "z",
];

/// Rows with i % 5 == 0 are the test set.
fn split_every_fifth(df: &DataFrame) -> sparkbook::Result<(DataFrame, DataFrame)> {
    let n = df.height() as IdxSize;
    let pick = |test: bool| {
        let rows: Vec<IdxSize> = (0..n).filter(|i| (i % 5 == 0) == test).collect();
        df.take(&IdxCa::from_vec("i".into(), rows))
    };
    Ok((pick(false)?, pick(true)?))
}

fn king_county() -> sparkbook::Result<(DataFrame, DataFrame)> {
    let houses = sparkbook::datasets::house_prices()?.drop_many(["id", "date"]);
    let columns: Vec<Column> = houses
        .columns()
        .iter()
        .map(|c| c.cast(&DataType::Float64))
        .collect::<PolarsResult<_>>()?;
    split_every_fifth(&DataFrame::new(houses.height(), columns)?)
}

fn diamonds() -> sparkbook::Result<(DataFrame, DataFrame)> {
    let raw = sparkbook::datasets::diamonds()?;
    let mut columns = Vec::new();
    for name in FEATURES {
        let values: Vec<f64> = match LEVELS.iter().find(|(c, _)| *c == name) {
            Some((_, levels)) => raw
                .column(name)?
                .str()?
                .iter()
                .map(|v| {
                    levels
                        .iter()
                        .position(|l| Some(*l) == v)
                        .map_or(f64::NAN, |p| p as f64)
                })
                .collect(),
            None => raw
                .column(name)?
                .cast(&DataType::Float64)?
                .f64()?
                .into_no_null_iter()
                .collect(),
        };
        columns.push(values);
    }
    let n = raw.height();
    let is_test = |i: usize| i % 5 == 0;
    let price: Vec<f64> = raw
        .column("price")?
        .cast(&DataType::Float64)?
        .f64()?
        .into_no_null_iter()
        .collect();
    let mut train = Vec::new();
    let mut test = Vec::new();
    for (name, values) in FEATURES.iter().zip(&columns) {
        let fit: Vec<f64> = (0..n).filter(|&i| !is_test(i)).map(|i| values[i]).collect();
        let mean = fit.iter().sum::<f64>() / fit.len() as f64;
        let sd =
            (fit.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / fit.len() as f64).sqrt();
        let scaled = |i: usize| (values[i] - mean) / sd;
        train.push(Column::new(
            (*name).into(),
            (0..n)
                .filter(|&i| !is_test(i))
                .map(scaled)
                .collect::<Vec<_>>(),
        ));
        test.push(Column::new(
            (*name).into(),
            (0..n)
                .filter(|&i| is_test(i))
                .map(scaled)
                .collect::<Vec<_>>(),
        ));
    }
    train.push(Column::new(
        "price".into(),
        (0..n)
            .filter(|&i| !is_test(i))
            .map(|i| price[i])
            .collect::<Vec<_>>(),
    ));
    test.push(Column::new(
        "price".into(),
        (0..n)
            .filter(|&i| is_test(i))
            .map(|i| price[i])
            .collect::<Vec<_>>(),
    ));
    let train = DataFrame::new_infer_height(train)?;
    let test = DataFrame::new_infer_height(test)?;
    Ok((train, test))
}

fn write_csv(df: &mut DataFrame, path: &std::path::Path) -> sparkbook::Result<()> {
    let mut file = std::fs::File::create(path)
        .map_err(|e| Error::Message(format!("{}: {e}", path.display())))?;
    CsvWriter::new(&mut file).finish(df)?;
    Ok(())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() -> sparkbook::Result<()> {
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&out).map_err(|e| Error::Message(e.to_string()))?;
    let sc = Session::builder().progress(false).build()?;
    for (case, data) in [("diamonds", diamonds()?), ("king_county", king_county()?)] {
        run_case(&sc, case, data, &out)?;
    }
    Ok(())
}

fn run_case(
    sc: &Session,
    case: &str,
    (mut train, mut test): (DataFrame, DataFrame),
    out: &std::path::Path,
) -> sparkbook::Result<()> {
    write_csv(&mut train, &out.join(format!("{case}_train.csv")))?;
    write_csv(&mut test, &out.join(format!("{case}_test.csv")))?;
    println!(
        "\n{case}: {} train x {} test x {} features, k = 100, {} threads",
        train.height(),
        test.height(),
        train.width() - 1,
        sc.threads()
    );
    println!("{:<28} {:>9} {:>11}", "system", "fit (s)", "predict (s)");
    let mut kept = None;
    for algorithm in [
        Algorithm::Auto,
        Algorithm::KdTree,
        Algorithm::Brute,
        Algorithm::BallTree,
    ] {
        let started = Instant::now();
        let model = KnnRegressor::params(100)
            .algorithm(algorithm)
            .fit_frame(&train, "price")?;
        let fit_s = started.elapsed().as_secs_f64();
        let label = format!("sparkbook {:?} ({:?})", algorithm, model.algorithm());
        let b = sc.broadcast(model);
        let mut times = Vec::new();
        let mut preds = None;
        for _ in 0..3 {
            let started = Instant::now();
            let p = sc
                .parallelize(&test, sc.threads() * 4)?
                .map_partitions(|part| b.value()?.predict_frame(&part))?
                .collect()?;
            times.push(started.elapsed().as_secs_f64());
            preds = Some(p);
        }
        println!("{label:<28} {fit_s:>9.3} {:>11.3}", median(times));
        if algorithm == Algorithm::Auto {
            kept = preds;
        }
    }
    if let Some(mut preds) = kept {
        println!("{}", preds.scores()?);
        write_csv(&mut preds, &out.join(format!("{case}_sparkbook_pred.csv")))?;
    }
    Ok(())
}

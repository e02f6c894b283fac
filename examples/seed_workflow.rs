//! The seed workflow, end to end, on King County house sales (21,613 rows).
//!
//! In PySpark this is:
//! ```python
//! model = KNeighborsRegressor(n_neighbors=100).fit(X_train, y_train)
//! b_model = sc.broadcast(model)
//! rdd = sc.parallelize(test_rows, 10).zipWithIndex()
//! preds = rdd.mapPartitions(lambda part: predict_batch(b_model.value, part)).collect()
//! ```
//! Run with `cargo run --example seed_workflow`.

use std::time::Instant;

use sparkbook::prelude::*;

fn main() -> sparkbook::Result<()> {
    let started = Instant::now();
    let sc = Session::builder()
        .app_name("seed workflow")
        .default_partitions(10)
        .build()?;

    // Real data; `id` and `date` are not features.
    let houses = sparkbook::datasets::house_prices()?.drop_many(["id", "date"]);
    let (train, test) = train_test_split(&houses, 0.2, 42)?;
    println!(
        "King County houses: {} train rows, {} test rows, {} features",
        train.height(),
        test.height(),
        train.width() - 1
    );

    let fit_started = Instant::now();
    let model = KnnRegressor::params(100)
        .weights(Weights::Uniform)
        .algorithm(Algorithm::Auto)
        .fit_frame(&train, "price")?;
    let fit_s = fit_started.elapsed().as_secs_f64();

    let b_model = sc.broadcast(model);
    let predict_started = Instant::now();
    let preds = sc
        .parallelize(&test, sc.default_parallelism())?
        .zip_with_index()?
        .map_partitions(|part| b_model.value()?.predict_frame(&part))?
        .collect()?;
    let predict_s = predict_started.elapsed().as_secs_f64();

    println!("{}", preds.head(Some(5)));
    println!("{}", preds.scores()?);
    println!(
        "model: {:?}, broadcast once: {:.1} MB",
        b_model.value()?,
        b_model.size_bytes() as f64 / 1e6
    );
    if let Some(job) = sc.last_job() {
        let slowest = job.partitions.iter().map(|p| p.seconds).fold(0.0, f64::max);
        println!(
            "predict: {} partitions on {} threads, slowest partition {:.1} ms",
            job.partitions.len(),
            job.threads,
            slowest * 1e3
        );
    }
    println!(
        "fit {:.1} ms, parallelize + predict + collect {:.1} ms, whole program {:.1} ms",
        fit_s * 1e3,
        predict_s * 1e3,
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

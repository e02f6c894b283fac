//! What the fuzz targets run on each input; `tests/fuzz_corpus.rs` replays the
//! committed corpus through the same functions, so every crash found by fuzzing
//! and saved to the corpus stays a regression test of `cargo test`.
//!
//! The rule checked: whatever the bytes, sparkbook returns `Ok` or `Err` and never
//! panics (a panic aborts the fuzzer and would kill a notebook kernel).

use std::path::PathBuf;

use sparkbook::datasets::read_csv;
use sparkbook::knn::{KnnClassifier, KnnRegressor};
use sparkbook::polars::prelude::*;
use sparkbook::preprocessing::StandardScaler;
use sparkbook::{NotebookDisplay, Session};

/// The loaders take paths, as users call them; each process writes its inputs to a
/// file of its own.
fn scratch(bytes: &[u8], ext: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "sparkbook-fuzz-{}-{:?}.{ext}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, bytes).expect("write the scratch file");
    path
}

/// Loads the bytes as a CSV file and, when they parse, sends the frame through
/// the workflow: display, scaling, partitions, fitting and predicting.
pub fn csv_frame(bytes: &[u8]) {
    let path = scratch(bytes, "csv");
    let loaded = read_csv(&path);
    let _ = std::fs::remove_file(&path);
    let Ok(df) = loaded else { return };
    let _ = df.to_html();
    let Some(target) = df.get_column_names().first().map(|n| n.to_string()) else {
        return;
    };
    if let Ok(scaler) = StandardScaler::fit(&df, &target) {
        let _ = scaler.transform(&df);
    }
    let sc = Session::builder()
        .threads(2)
        .progress(false)
        .build()
        .expect("session");
    if let Ok(parts) = sc.parallelize(&df, 3).and_then(|p| p.zip_with_index()) {
        let _ = parts.collect();
    }
    if let Ok(model) = KnnRegressor::params(2).fit_frame(&df, &target) {
        let _ = model.predict_frame(&df);
    }
    if let Ok(model) = KnnClassifier::params(2).fit_frame::<String>(&df, &target) {
        let _ = model.predict_frame(&df);
        let _ = model.predict_proba_frame(&df);
    }
}

/// Loads the bytes as a saved model of each kind and, when one loads, predicts a
/// small frame with its features.
pub fn model_file(bytes: &[u8]) {
    let path = scratch(bytes, "json");
    let regressor = KnnRegressor::load(&path);
    let classifier = KnnClassifier::<String>::load(&path);
    let integer = KnnClassifier::<i64>::load(&path);
    let _ = std::fs::remove_file(&path);
    let frame = |features: &[String]| {
        let columns: Vec<Column> = features
            .iter()
            .enumerate()
            .map(|(j, name)| Column::new(name.as_str().into(), [j as f64, 0.5, -1.0]))
            .collect();
        DataFrame::new(3, columns)
    };
    if let Ok(m) = regressor
        && let Ok(df) = frame(m.features())
    {
        let _ = m.predict_frame(&df);
    }
    if let Ok(m) = classifier
        && let Ok(df) = frame(m.features())
    {
        let _ = m.predict_proba_frame(&df);
    }
    if let Ok(m) = integer
        && let Ok(df) = frame(m.features())
    {
        let _ = m.predict_frame(&df);
    }
}

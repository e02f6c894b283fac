//! The fuzz targets' checks (`fuzz/fuzz_targets/checks.rs`) on the committed corpus
//! and on systematic damage to real model files, as part of `cargo test`: what
//! cargo-fuzz found once stays fixed without a fuzzer installed.

#[path = "../fuzz/fuzz_targets/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

use sparkbook::knn::{KnnClassifier, KnnRegressor};
use sparkbook::polars::prelude::*;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

#[test]
fn csv_corpus_never_panics() {
    let files = corpus("csv_frame");
    assert!(files.len() >= 10, "corpus too small: {}", files.len());
    for (path, bytes) in files {
        eprintln!("{}", path.display());
        checks::csv_frame(&bytes);
    }
}

#[test]
fn model_corpus_never_panics() {
    let files = corpus("model_file");
    assert!(files.len() >= 3, "corpus too small: {}", files.len());
    for (path, bytes) in files {
        eprintln!("{}", path.display());
        checks::model_file(&bytes);
    }
}

fn train() -> DataFrame {
    df!(
        "a" => [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        "b" => [1.0, 0.5, 0.2, 0.9, 0.3, 0.7],
        "y" => [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "c" => ["x", "x", "y", "y", "z", "z"]
    )
    .unwrap()
}

fn saved() -> Vec<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("sparkbook-fuzz-seeds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let df = train();
    let reg = KnnRegressor::params(2)
        .fit_frame(&df.drop("c").unwrap(), "y")
        .unwrap();
    let clf: KnnClassifier<String> = KnnClassifier::params(3)
        .fit_frame(&df.drop("y").unwrap(), "c")
        .unwrap();
    reg.save(dir.join("r.json")).unwrap();
    clf.save(dir.join("c.json")).unwrap();
    let out = vec![
        std::fs::read(dir.join("r.json")).unwrap(),
        std::fs::read(dir.join("c.json")).unwrap(),
    ];
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

#[test]
fn damaged_model_files_never_panic() {
    for good in saved() {
        checks::model_file(&good);
        // Every truncation point, and every digit turned into a minus sign, a 9 or
        // an exponent: shapes that disagree with the data, negative sizes, huge k.
        for cut in 0..good.len() {
            checks::model_file(&good[..cut]);
        }
        for i in (0..good.len()).filter(|&i| good[i].is_ascii_digit()) {
            for b in [b'-', b'9', b'e'] {
                let mut bad = good.clone();
                bad[i] = b;
                checks::model_file(&bad);
            }
        }
    }
}

/// Writes the model seeds into the corpus; run it after the file format changes.
#[test]
#[ignore = "writes fuzz/corpus/model_file: cargo test --test fuzz_corpus -- --ignored"]
fn write_model_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/model_file");
    for (name, bytes) in ["regressor.json", "classifier.json"].iter().zip(saved()) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

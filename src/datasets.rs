//! Real data sets, bundled with the crate, and the usual train/test split.
//!
//! The CSV files live in the repository's `datasets/` folder (sources and licences in
//! its README). Loaders find them through the crate's own path, so they work from any
//! working directory, including an evcxr kernel's temporary build folder.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::error::{Error, Result};

fn bundled(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("datasets")
        .join(file)
}

/// Reads a CSV file with a header row into a frame, with errors that name the file:
/// [`Error::Io`] for a missing path, a directory or an empty (0-byte) file,
/// [`Error::Csv`] for content polars cannot parse (ragged rows, invalid UTF-8).
///
/// ```
/// let err = sparkbook::datasets::read_csv("no/such/file.csv").unwrap_err();
/// assert!(err.to_string().contains("no/such/file.csv"));
/// ```
pub fn read_csv(path: impl AsRef<Path>) -> Result<DataFrame> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::io(
            path,
            std::io::Error::other("is a directory, not a CSV file"),
        ));
    }
    if meta.len() == 0 {
        return Err(Error::io(
            path,
            std::io::Error::other("the file is empty (0 bytes)"),
        ));
    }
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(10_000))
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|reader| reader.finish())
        .map_err(|e| Error::Csv {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// ggplot2's diamonds: 53,940 rows; `price` and 9 attributes (6 numeric).
///
/// ```
/// let df = sparkbook::datasets::diamonds()?;
/// assert_eq!(df.shape(), (53_940, 10));
/// # Ok::<(), sparkbook::Error>(())
/// ```
pub fn diamonds() -> Result<DataFrame> {
    read_csv(bundled("diamonds.csv"))
}

/// King County (Seattle) house sales 2014-15: 21,613 rows, `price` and 20 columns.
///
/// ```
/// let df = sparkbook::datasets::house_prices()?;
/// assert_eq!(df.shape(), (21_613, 21));
/// # Ok::<(), sparkbook::Error>(())
/// ```
pub fn house_prices() -> Result<DataFrame> {
    read_csv(bundled("house_prices.csv"))
}

/// UCI wine: 178 wines, 13 chemical measurements, the cultivar as `target` (0-2)
/// and as a string label `cultivar`.
///
/// ```
/// let df = sparkbook::datasets::wine()?;
/// assert_eq!(df.shape(), (178, 15));
/// # Ok::<(), sparkbook::Error>(())
/// ```
pub fn wine() -> Result<DataFrame> {
    read_csv(bundled("wine.csv"))
}

/// Splits rows at random into (train, test), as sklearn's `train_test_split`:
/// `ceil(test_fraction * rows)` test rows, chosen by `seed`. Each part keeps the
/// input's row order.
///
/// ```
/// use sparkbook::polars::prelude::*;
///
/// let df = df!("x" => (0..10).collect::<Vec<i32>>())?;
/// let (train, test) = sparkbook::datasets::train_test_split(&df, 0.2, 42)?;
/// assert_eq!((train.height(), test.height()), (8, 2));
/// let (_, again) = sparkbook::datasets::train_test_split(&df, 0.2, 42)?;
/// assert_eq!(test, again);
/// # Ok::<(), sparkbook::Error>(())
/// ```
pub fn train_test_split(
    df: &DataFrame,
    test_fraction: f64,
    seed: u64,
) -> Result<(DataFrame, DataFrame)> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(Error::param(
            "test_fraction",
            format!("must be strictly between 0 and 1, got {test_fraction}"),
        ));
    }
    let n = df.height();
    let n_test = (test_fraction * n as f64).ceil() as usize;
    if n_test == 0 || n_test >= n {
        return Err(Error::param(
            "test_fraction",
            format!("{test_fraction} of {n} rows leaves an empty train or test set"),
        ));
    }
    let mut order: Vec<IdxSize> = (0..n as IdxSize).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let (test, train) = order.split_at_mut(n_test);
    test.sort_unstable();
    train.sort_unstable();
    let take = |rows: &[IdxSize]| df.take(&IdxCa::from_vec("idx".into(), rows.to_vec()));
    Ok((take(train)?, take(test)?))
}

//! One error type for the whole crate.
//!
//! Every fallible call returns [`Result<T>`](crate::Result). The enum is
//! `#[non_exhaustive]` so later issues (models, the CLI, the cluster backend) can
//! add variants without breaking a user's `match`.

use std::fmt;

/// Everything that can go wrong in sparkbook.
///
/// Variants name what is at fault (the partition, the parameter, the column), so a
/// notebook user can fix the input without reading a backtrace.
///
/// ```
/// use sparkbook::prelude::*;
///
/// let sc = Session::builder().threads(1).progress(false).build()?;
/// let err = sc.parallelize(vec![1, 2, 3], 0).unwrap_err();
/// assert!(matches!(err, Error::InvalidParameter { name: "partitions", .. }));
/// assert!(err.to_string().contains("partitions"));
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter is out of its allowed range (zero partitions, zero threads, ...).
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter's name as the user wrote it.
        name: &'static str,
        /// Why the value is rejected.
        reason: String,
    },

    /// User code panicked inside a partition. The panic was caught: the session and
    /// its thread pool are still usable.
    #[error("partition {index} ({rows} rows) panicked: {message}")]
    Partition {
        /// Index of the partition whose closure panicked.
        index: usize,
        /// Number of rows (or elements) in that partition.
        rows: usize,
        /// The panic message.
        message: String,
    },

    /// User code returned an error inside a partition; the job stopped.
    #[error("partition {index} ({rows} rows) failed: {source}")]
    PartitionFailed {
        /// Index of the partition whose closure returned the error.
        index: usize,
        /// Number of rows (or elements) in that partition.
        rows: usize,
        /// The error the closure returned.
        source: Box<Error>,
    },

    /// Partitions of one frame came back with different columns or types, so they
    /// cannot be stacked into one frame.
    #[error("partition {index} returned schema {found}, but partition 0 returned {expected}")]
    SchemaMismatch {
        /// First partition whose schema differs from partition 0's.
        index: usize,
        /// Partition 0's schema, as `name: dtype` pairs.
        expected: String,
        /// The differing schema.
        found: String,
    },

    /// A column the operation needs is not in the frame.
    #[error("column `{name}` not found; the frame has {available}")]
    MissingColumn {
        /// The column looked for.
        name: String,
        /// The frame's columns, for the message.
        available: String,
    },

    /// The operation would create a column that already exists.
    #[error("column `{name}` already exists")]
    DuplicateColumn {
        /// The column at fault.
        name: String,
    },

    /// A feature or target column is not numeric.
    #[error("column `{column}` has type {dtype}; features and regression targets must be numeric")]
    NotNumeric {
        /// The column at fault.
        column: String,
        /// Its polars type.
        dtype: String,
    },

    /// A null, NaN or infinite value where a finite number is needed.
    #[error("column `{column}`, row {row}: {value}; features and targets must be finite numbers")]
    InvalidValue {
        /// The column at fault.
        column: String,
        /// The first bad row: the `row` column's value when the frame has one,
        /// else the row's position in the frame.
        row: u64,
        /// What was found: `null`, `NaN`, `inf` or `-inf`.
        value: String,
    },

    /// A data set has no rows (or no feature columns) where some are needed.
    #[error("the {what} is empty")]
    EmptyData {
        /// Which data: "training set", "test set", ...
        what: &'static str,
    },

    /// The features given at predict time do not match the model's.
    #[error("features do not match the model's: {reason}")]
    FeatureMismatch {
        /// What differs (missing or extra names, or counts).
        reason: String,
    },

    /// The cosine metric needs non-zero vectors.
    #[error("row {row} of the {what} is all zeros; the cosine metric is undefined for it")]
    ZeroVector {
        /// "training set" or "test set".
        what: &'static str,
        /// The row's position.
        row: usize,
    },

    /// A CSV file could not be parsed (ragged rows, bad encoding, no header).
    #[error("{path}: cannot read as CSV: {reason}")]
    Csv {
        /// The file.
        path: String,
        /// The parser's complaint.
        reason: String,
    },

    /// A model file is not a sparkbook model, or is damaged.
    #[error("{path}: not a readable sparkbook model: {reason}")]
    ModelFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },

    /// A model file was written by another format version.
    #[error("{path}: model format version {found}, this sparkbook reads version {supported}")]
    ModelVersion {
        /// The file.
        path: String,
        /// The version in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// An error from linfa's dataset or trait machinery.
    #[error(transparent)]
    Linfa(#[from] linfa::Error),

    /// The broadcast was destroyed with [`Broadcast::destroy`](crate::Broadcast::destroy).
    #[error("broadcast #{id} was destroyed; broadcast the value again to use it")]
    BroadcastDestroyed {
        /// The broadcast's id, as shown by its `Debug` output.
        id: u64,
    },

    /// The session's thread pool could not be created.
    #[error("cannot build the session's thread pool: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),

    /// An error from polars (reading CSV, stacking frames, ...).
    #[error(transparent)]
    Polars(#[from] polars::error::PolarsError),

    /// An I/O error, with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A cluster could not be formed, or lost a process; `process` is the one at
    /// fault when known (0 is the driver, 1.. the workers).
    #[error("cluster{}: {reason}", process.map(|p| format!(" process {p}")).unwrap_or_default())]
    Cluster {
        /// The process at fault, when one is.
        process: Option<usize>,
        /// What happened.
        reason: String,
    },

    /// A free-form error raised by user code (`Err("...".into())` in a closure).
    #[error("{0}")]
    Message(String),
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::Message(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::Message(message.to_owned())
    }
}

impl Error {
    /// Builds an [`Error::Io`] that names the path, for I/O done around sparkbook
    /// (the CLI uses it for its output file).
    ///
    /// ```
    /// let err = sparkbook::Error::io("out/pred.csv", std::io::ErrorKind::NotFound.into());
    /// assert!(err.to_string().starts_with("out/pred.csv: "));
    /// ```
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// Builds an [`Error::InvalidParameter`].
    pub(crate) fn param(name: &'static str, reason: impl fmt::Display) -> Self {
        Error::InvalidParameter {
            name,
            reason: reason.to_string(),
        }
    }
}

/// `Result` with sparkbook's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! # sparkbook
//!
//! Spark's "broadcast the model, predict per partition" workflow for Rust notebooks:
//! the verbs of PySpark's `SparkContext` and RDDs, over [polars] frames, on a
//! [rayon] pools that the [`Session`] builds for its jobs.
//!
//! ## Quickstart
//! ```
//! use sparkbook::prelude::*;
//! use polars::prelude::*;
//!
//! // SparkContext("local[2]"): a session runs its jobs on threads of its own.
//! let sc = Session::builder().threads(2).default_partitions(8).progress(false).build()?;
//!
//! // sc.broadcast(model): one shared copy, read by every partition.
//! let scale = sc.broadcast(2.5_f64);
//!
//! // sc.parallelize(df, 10).mapPartitions(f).collect()
//! let df = df!("x" => (0..100).map(f64::from).collect::<Vec<_>>())?;
//! let out = sc
//!     .parallelize(&df, 10)?
//!     .map_partitions(|part| -> sparkbook::Result<DataFrame> {
//!         let k = *scale.value()?;
//!         let y = part.column("x")?.as_materialized_series() * k;
//!         Ok(part.hstack(&[y.with_name("y".into()).into()])?)
//!     })?
//!     .collect()?;
//!
//! assert_eq!(out.height(), 100); // same rows, same order as the input
//! assert_eq!(out.column("y")?.f64()?.get(10), Some(25.0));
//! # Ok::<(), Error>(())
//! ```
//!
//! ## A guided tour
//! - [`Session`] is the `SparkContext`: [`Session::parallelize`], [`Session::broadcast`],
//!   [`Session::accumulator`]. Its jobs run on pools of its own, so re-running a
//!   notebook cell that builds a session just works (rayon's global pool can be set
//!   only once), and so does a job in a later cell (see [`Session`]).
//! - [`PartitionedFrame`]: a polars `DataFrame` split into zero-copy row slices, with
//!   `map_partitions`, `zip_with_index`, `collect` and friends.
//! - [`Partitioned<T>`]: the RDD over a `Vec<T>`: `map`, `filter`, `flat_map`,
//!   `map_partitions`, `map_partitions_with_index`, `zip_with_index`, `glom`, `count`,
//!   `take`, `first`, `reduce`, `fold`, `aggregate`, `foreach`, `repartition`, `union`.
//! - [`Broadcast<T>`]: a value shared by reference; [`ByteSize`] reports its memory.
//! - [`PartitionFn`]: partition work with a name ([`KnnPredict`], [`KnnClassify`], or
//!   yours), run by [`PartitionedFrame::map_partitions_fn`] locally or, with feature
//!   `cluster`, on worker processes (`sparkbook::cluster`, over timely dataflow): a
//!   notebook moves to a cluster by changing how its session is built.
//! - [`Accumulator<T>`]: a counter partitions add to; totals are deterministic.
//! - [`preprocessing::StandardScaler`]: sklearn's `StandardScaler` for frames, fitted
//!   on the training set and applied to both.
//! - [`NotebookDisplay`]: HTML tables for frames, scores, job reports and broadcasts in
//!   evcxr notebooks (`df` as a cell's last line renders as a table).
//! - `charts` (feature `charts`, on by default): plotly charts of a true/pred frame
//!   (predicted vs true, residuals, confusion) and of a job's partition timings,
//!   drawn inline in notebooks.
//! - [`Error`]: one error type. A panic in your closure becomes
//!   [`Error::Partition`] naming the partition; the session stays usable.
//!
//! ## When work happens
//! Every verb is eager: `map_partitions(...)` runs the closure on all partitions
//! before it returns, and its `Result` carries any failure. There is no lazy plan
//! and no separate action step to forget.
//!
//! ## Determinism
//! Partitions are contiguous row ranges and every result is assembled in partition
//! order, so outputs do not depend on the thread count; for closures that treat rows
//! independently they do not depend on the partition count either. When several
//! partitions fail, the error reported is the lowest partition's.
//!
//! ## In evcxr notebooks
//! evcxr compiles each cell into a library of its own, statically linked with its
//! own copy of every dependency and of their statics (rayon's worker registry,
//! polars' hash seeds). sparkbook is built for that: jobs build their thread pool
//! inside the cell that runs them, ids come from the [`Session`], and frames are
//! never looked up through polars' hashed name index, which a frame built in an
//! earlier cell carries hashed with that cell's seed. Your own name lookups on a
//! wide frame from an earlier cell can miss ("column not found" for a column that
//! is there): take the frame through [`fresh`] first.
//!
//! ## Threads and polars
//! Work runs on pools the session builds per job, never on rayon's global pool. Polars keeps a
//! pool of its own (`POLARS_MAX_THREADS`); see [`Session`] for how to keep the two
//! from oversubscribing the cores.
//!
//! ## Compile times
//! polars dominates the build. sparkbook enables only polars' `csv`, `fmt` and
//! `ipc_streaming` features (IPC is how partitions travel to cluster workers; it is on
//! without `cluster` too, since a polars feature that differs between builds recompiles
//! all of polars, while `cluster` adds only timely's small crates). A cold build of
//! the crate and its dependencies takes a few minutes on two cores, and a notebook
//! reuses it across cells.
#![deny(missing_docs)]

mod accumulator;
mod broadcast;
#[cfg(feature = "charts")]
pub mod charts;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod datasets;
mod display;
mod error;
mod function;
pub mod knn;
pub mod metrics;
mod partition;
pub mod preprocessing;
mod progress;
mod session;
mod task;

pub use accumulator::Accumulator;
pub use broadcast::{Broadcast, ByteSize};
pub use display::{MAX_ROWS, NotebookDisplay};
pub use error::{Error, Result};
pub use function::{KnnClassify, KnnPredict, PartitionFn};
pub use partition::{Parallelize, PartitionResult, Partitioned, PartitionedFrame, fresh};
pub use session::{JobReport, PartitionTiming, Session, SessionBuilder};
pub use task::TaskContext;

/// Re-exports polars, so a notebook needs only `:dep sparkbook`.
pub use polars;

/// Re-exports plotly, to restyle a [`charts::Chart`] or draw new ones.
#[cfg(feature = "charts")]
pub use plotly;

/// The types and traits a notebook needs: `use sparkbook::prelude::*;`.
///
/// Deliberately small, and free of rayon's names (rayon has its own `broadcast`
/// function), so it can be glob-imported next to `polars::prelude::*`.
pub mod prelude {
    pub use crate::datasets::train_test_split;
    pub use crate::knn::{Algorithm, KnnClassifier, KnnRegressor, Metric, Weights};
    pub use crate::metrics::TruePred;
    pub use crate::{
        Accumulator, Broadcast, ByteSize, Error, KnnClassify, KnnPredict, NotebookDisplay,
        Parallelize, PartitionFn, Partitioned, PartitionedFrame, Session, TaskContext,
    };
}

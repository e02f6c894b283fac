//! k-nearest-neighbour models: what sklearn's `KNeighborsRegressor` and
//! `KNeighborsClassifier` are in Python, on linfa's traits.
//!
//! linfa has nearest-neighbour indexes (linfa-nn) but no k-NN model; these are those
//! models, built for the broadcast-and-predict workflow:
//! - **exact**: the neighbours are those of sorting all distances, ties at the k-th
//!   distance going to the lower training row; fast paths (brute force prefiltered by
//!   an f32 GEMM, or bf16 products on Intel AMX tiles where the CPU has them, with a
//!   proven error margin; k-d tree; ball tree) re-check candidates in f64 so rounding
//!   never changes the answer;
//! - **deterministic**: a row's prediction does not depend on which partition or
//!   thread computed it;
//! - **self-contained**: a model owns its training data (one copy: with the k-d tree
//!   the rows live inside the tree, in its leaf order), so it lives across notebook
//!   cells, serialises with serde, and broadcasts by reference (cloning a model
//!   copies none of its data); `fit_frame_drain` builds that copy from the frame's
//!   columns while freeing them, so a fit holds the data once, not twice;
//! - **strict**: nulls, NaN, infinities, missing or extra features are errors that
//!   name the column and row, raised before any work.
//!
//! ```
//! use sparkbook::prelude::*;
//! use sparkbook::polars::prelude::*;
//!
//! let sc = Session::builder().threads(2).progress(false).build()?;
//! let train = df!("x" => [0.0, 1.0, 2.0, 3.0], "y" => [0.0, 1.0, 2.0, 3.0])?;
//! let test = df!("x" => [0.4, 2.6], "y" => [0.0, 3.0])?;
//!
//! let model = KnnRegressor::params(2).weights(Weights::Uniform).fit_frame(&train, "y")?;
//! let b_model = sc.broadcast(model);
//! let preds = sc
//!     .parallelize(&test, 2)?
//!     .map_partitions(|part| b_model.value()?.predict_frame(&part))?
//!     .collect()?;
//! assert_eq!(preds.column("pred")?.f64()?.to_vec(), vec![Some(0.5), Some(2.5)]);
//! # Ok::<(), Error>(())
//! ```

mod classifier;
pub(crate) mod features;
mod index;
mod kernel;
mod model;
mod params;
mod persist;
mod regressor;
mod transpose;

pub use classifier::{FrameLabel, KnnClassifier, Label};
pub use kernel::Metric;
pub use params::{Algorithm, Classification, KnnParams, KnnValidParams, Regression, Weights};
pub use regressor::KnnRegressor;

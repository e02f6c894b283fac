//! Named partition functions: partition work that can leave the process.
//!
//! A closure compiled inside a notebook cell exists only in that process; no engine
//! can ship it to a worker on another machine. A [`PartitionFn`] is the same work
//! under a name: the worker binary is compiled with the function, and a job only
//! sends the name, the broadcast payload (serde) and the partitions. The local
//! [`Session`](crate::Session) runs the same functions, so a notebook written with
//! them moves to a cluster by changing how its session is built.

use std::sync::Arc;

use polars::prelude::DataFrame;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::knn::{KnnClassifier, KnnRegressor};

/// Partition work with a name, runnable locally and on cluster workers.
///
/// `Payload` is what the job broadcasts (a model, say); each worker process
/// receives it once per broadcast, runs [`init`](Self::init) once to build its
/// `State`, and then [`call`](Self::call) on every partition routed to it. Locally,
/// `init` gets the broadcast's own `Arc`, so nothing is copied.
///
/// To run your own function on a cluster, put it in a crate that both the notebook
/// (`:dep`) and your worker binary depend on, and register it there (see
/// `sparkbook::cluster::Registry`, feature `cluster`).
///
/// ```
/// use std::sync::Arc;
/// use sparkbook::prelude::*;
/// use sparkbook::polars::prelude::*;
///
/// /// Multiplies column `x` by the broadcast factor.
/// struct Scale;
///
/// impl PartitionFn for Scale {
///     const NAME: &'static str = "example.scale";
///     type Payload = f64;
///     type State = f64;
///     fn init(payload: Arc<f64>) -> sparkbook::Result<f64> {
///         Ok(*payload)
///     }
///     fn call(factor: &f64, part: DataFrame) -> sparkbook::Result<DataFrame> {
///         let x = part.column("x")?.as_materialized_series() * *factor;
///         Ok(DataFrame::new(x.len(), vec![x.into()])?)
///     }
/// }
///
/// let sc = Session::builder().threads(2).progress(false).build()?;
/// let factor = sc.broadcast(3.0);
/// let df = df!("x" => [1.0, 2.0, 3.0])?;
/// let out = sc.parallelize(&df, 2)?.map_partitions_fn(Scale, &factor)?.collect()?;
/// assert_eq!(out.column("x")?.f64()?.to_vec(), vec![Some(3.0), Some(6.0), Some(9.0)]);
/// # Ok::<(), Error>(())
/// ```
pub trait PartitionFn: Send + Sync + 'static {
    /// The name workers know the function by; unique within a worker's registry.
    const NAME: &'static str;
    /// The broadcast value the function reads.
    type Payload: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What `init` builds from the payload, once per broadcast and process.
    type State: Send + Sync + 'static;

    /// Builds the per-process state from the broadcast payload.
    fn init(payload: Arc<Self::Payload>) -> Result<Self::State>;

    /// Runs on one partition.
    fn call(state: &Self::State, partition: DataFrame) -> Result<DataFrame>;
}

/// The seed workflow's predict step for a broadcast [`KnnRegressor`]: `true`/`pred`
/// (and `row`) per partition, as [`KnnRegressor::predict_frame`].
///
/// ```
/// use sparkbook::prelude::*;
/// use sparkbook::polars::prelude::*;
///
/// let sc = Session::builder().threads(2).progress(false).build()?;
/// let train = df!("x" => [0.0, 1.0, 2.0, 3.0], "y" => [0.0, 1.0, 2.0, 3.0])?;
/// let test = df!("x" => [0.4, 2.6], "y" => [0.0, 3.0])?;
/// let model = sc.broadcast(KnnRegressor::params(2).fit_frame(&train, "y")?);
///
/// let named = sc.parallelize(&test, 2)?.map_partitions_fn(KnnPredict, &model)?.collect()?;
/// let closure = sc
///     .parallelize(&test, 2)?
///     .map_partitions(|part| model.value()?.predict_frame(&part))?
///     .collect()?;
/// assert_eq!(named, closure);
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct KnnPredict;

impl PartitionFn for KnnPredict {
    const NAME: &'static str = "sparkbook.knn.regressor.predict_frame";
    type Payload = KnnRegressor;
    type State = Arc<KnnRegressor>;

    fn init(payload: Arc<KnnRegressor>) -> Result<Arc<KnnRegressor>> {
        Ok(payload)
    }

    fn call(model: &Arc<KnnRegressor>, partition: DataFrame) -> Result<DataFrame> {
        model.predict_frame(&partition)
    }
}

/// The predict step for a broadcast [`KnnClassifier`] with string labels.
///
/// ```
/// use sparkbook::prelude::*;
/// use sparkbook::polars::prelude::*;
///
/// let sc = Session::builder().threads(2).progress(false).build()?;
/// let train = df!("x" => [0.0, 0.1, 5.0, 5.1], "kind" => ["low", "low", "high", "high"])?;
/// let test = df!("x" => [0.2, 4.9], "kind" => ["low", "high"])?;
/// let model: KnnClassifier<String> = KnnClassifier::params(1).fit_frame(&train, "kind")?;
/// let model = sc.broadcast(model);
/// let out = sc.parallelize(&test, 2)?.map_partitions_fn(KnnClassify, &model)?.collect()?;
/// assert_eq!(out.column("pred")?.str()?.get(1), Some("high"));
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct KnnClassify;

impl PartitionFn for KnnClassify {
    const NAME: &'static str = "sparkbook.knn.classifier.predict_frame";
    type Payload = KnnClassifier<String>;
    type State = Arc<KnnClassifier<String>>;

    fn init(payload: Arc<KnnClassifier<String>>) -> Result<Arc<KnnClassifier<String>>> {
        Ok(payload)
    }

    fn call(model: &Arc<KnnClassifier<String>>, partition: DataFrame) -> Result<DataFrame> {
        model.predict_frame(&partition)
    }
}

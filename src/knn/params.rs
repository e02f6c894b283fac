//! Hyperparameters, the linfa way: params -> checked params -> fit.

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use super::kernel::Metric;
use crate::error::{Error, Result};

/// Rows per tree leaf unless set: sklearn's 30 was the default until the
/// k-d tree's groups folded leaves eight rows a vector, and then 64 ran
/// diamonds 5% and 1M x 20k at d = 8 12-17% faster (linfa-nn's ball tree,
/// which takes the same size, 8-17% faster on diamonds too). Larger leaves
/// scan more rows, so the k-d tree's hand-off to brute force, counted in
/// rows scanned, was measured with 64: diamonds scans 8.2% (6.2% at 30)
/// and keeps the tree; at 96 it crosses the 10% and loses.
const DEFAULT_LEAF_SIZE: usize = 64;

/// How neighbours' targets are combined (sklearn's `weights`).
///
/// ```
/// use sparkbook::knn::{KnnRegressor, Weights};
/// use ndarray::array;
/// use linfa::traits::Fit;
///
/// let data = linfa::Dataset::new(array![[0.0], [3.0]], array![0.0, 30.0]);
/// let uniform = KnnRegressor::params(2).fit(&data)?;
/// let distance = KnnRegressor::params(2).weights(Weights::Distance).fit(&data)?;
/// assert_eq!(uniform.try_predict(&array![[1.0]])?[0], 15.0);
/// assert!((distance.try_predict(&array![[1.0]])?[0] - 10.0).abs() < 1e-12); // 1 : 1/2
/// # Ok::<(), sparkbook::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Weights {
    /// Every neighbour counts the same.
    #[default]
    Uniform,
    /// Neighbours count by the inverse of their distance. As in sklearn, when some
    /// neighbours are at distance zero, only those count (each equally); a cosine
    /// distance rounded a few ulps below zero counts as zero.
    Distance,
}

/// The neighbour search method (sklearn's `algorithm`). All are exact and return the
/// same neighbours; they differ only in speed.
///
/// ```
/// use sparkbook::knn::{Algorithm, KnnRegressor};
/// use ndarray::array;
/// use linfa::traits::Fit;
///
/// let data = linfa::Dataset::new(array![[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]], array![0.0, 1.0, 5.0]);
/// let q = array![[0.9, 1.2], [4.0, 4.5]];
/// let brute = KnnRegressor::params(2).algorithm(Algorithm::Brute).fit(&data)?.try_predict(&q)?;
/// for a in [Algorithm::Auto, Algorithm::KdTree, Algorithm::BallTree] {
///     assert_eq!(KnnRegressor::params(2).algorithm(a).fit(&data)?.try_predict(&q)?, brute);
/// }
/// # Ok::<(), sparkbook::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Algorithm {
    /// Euclidean: the k-d tree, unless a few training rows, tried as queries at
    /// fit, show that it would scan over a tenth of the data (high intrinsic
    /// dimension, large k, small sets), where GEMM brute force is faster. Other
    /// metrics: the k-d tree up to 16 dimensions. Brute force otherwise and for
    /// cosine. The model's `algorithm()` says which was chosen.
    #[default]
    Auto,
    /// Blocked brute force: every query against every training row.
    Brute,
    /// sparkbook's k-d tree, built once at fit and shared by all partitions.
    KdTree,
    /// linfa-nn's ball tree (rebuilt per predict call, since its index borrows the
    /// training data), with candidates re-ranked exactly.
    BallTree,
}

/// Marks parameters for [`KnnRegressor`](crate::knn::KnnRegressor).
///
/// ```
/// use sparkbook::knn::{KnnRegressor, KnnValidParams, Regression};
/// use linfa::ParamGuard;
///
/// let checked: KnnValidParams<Regression> = KnnRegressor::params(3).check()?;
/// assert_eq!(checked.k(), 3);
/// # Ok::<(), sparkbook::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Regression;

/// Marks parameters for [`KnnClassifier`](crate::knn::KnnClassifier).
///
/// ```
/// use sparkbook::knn::{Classification, KnnClassifier, KnnValidParams};
/// use linfa::ParamGuard;
///
/// let checked: KnnValidParams<Classification> = KnnClassifier::params(5).check()?;
/// assert_eq!(checked.k(), 5);
/// # Ok::<(), sparkbook::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification;

/// Checked hyperparameters: what `fit` runs with.
///
/// ```
/// use sparkbook::knn::KnnRegressor;
/// use linfa::ParamGuard;
///
/// let checked = KnnRegressor::params(4).leaf_size(10).check()?;
/// assert_eq!((checked.k(), checked.leaf_size()), (4, 10));
/// assert!(KnnRegressor::params(4).leaf_size(0).check().is_err());
/// # Ok::<(), sparkbook::Error>(())
/// ```
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct KnnValidParams<Task> {
    pub(crate) k: usize,
    pub(crate) weights: Weights,
    pub(crate) metric: Metric,
    pub(crate) algorithm: Algorithm,
    pub(crate) leaf_size: usize,
    #[serde(skip)]
    task: PhantomData<Task>,
}

impl<Task> Clone for KnnValidParams<Task> {
    fn clone(&self) -> Self {
        KnnValidParams {
            task: PhantomData,
            ..*self
        }
    }
}

impl<Task> KnnValidParams<Task> {
    /// Neighbours per prediction.
    ///
    /// ```
    /// use sparkbook::knn::KnnRegressor;
    /// use linfa::ParamGuard;
    ///
    /// assert_eq!(KnnRegressor::params(7).check()?.k(), 7);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn k(&self) -> usize {
        self.k
    }

    /// How neighbours are weighted.
    ///
    /// ```
    /// use sparkbook::knn::{KnnRegressor, Weights};
    /// use linfa::ParamGuard;
    ///
    /// assert_eq!(KnnRegressor::params(1).check()?.weights(), Weights::Uniform);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn weights(&self) -> Weights {
        self.weights
    }

    /// The distance.
    ///
    /// ```
    /// use sparkbook::knn::{KnnRegressor, Metric};
    /// use linfa::ParamGuard;
    ///
    /// assert_eq!(KnnRegressor::params(1).check()?.metric(), Metric::Euclidean);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// The search method requested.
    ///
    /// ```
    /// use sparkbook::knn::{Algorithm, KnnRegressor};
    /// use linfa::ParamGuard;
    ///
    /// assert_eq!(KnnRegressor::params(1).check()?.algorithm(), Algorithm::Auto);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Points per tree leaf.
    ///
    /// ```
    /// use sparkbook::knn::KnnRegressor;
    /// use linfa::ParamGuard;
    ///
    /// assert_eq!(KnnRegressor::params(1).check()?.leaf_size(), 64);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn leaf_size(&self) -> usize {
        self.leaf_size
    }
}

/// Unchecked hyperparameters, made by `KnnRegressor::params(k)` or
/// `KnnClassifier::params(k)`; defaults as sklearn's.
///
/// ```
/// use sparkbook::knn::{Algorithm, KnnRegressor, Metric, Weights};
/// use linfa::ParamGuard;
///
/// let params = KnnRegressor::params(5)
///     .weights(Weights::Distance)
///     .metric(Metric::Minkowski(3.0))
///     .algorithm(Algorithm::KdTree);
/// assert_eq!(params.check_ref()?.k(), 5);
/// assert!(KnnRegressor::params(0).check().is_err());
/// assert!(KnnRegressor::params(3).metric(Metric::Minkowski(-1.0)).check().is_err());
/// # Ok::<(), sparkbook::Error>(())
/// ```
#[derive(Debug, PartialEq)]
#[must_use = "parameters do nothing until `.fit(...)` or `.fit_frame(...)`"]
pub struct KnnParams<Task>(pub(crate) KnnValidParams<Task>);

impl<Task> Clone for KnnParams<Task> {
    fn clone(&self) -> Self {
        KnnParams(self.0.clone())
    }
}

impl<Task> KnnParams<Task> {
    pub(crate) fn new(k: usize) -> Self {
        KnnParams(KnnValidParams {
            k,
            weights: Weights::Uniform,
            metric: Metric::Euclidean,
            algorithm: Algorithm::Auto,
            leaf_size: DEFAULT_LEAF_SIZE,
            task: PhantomData,
        })
    }

    /// sklearn's `weights`.
    ///
    /// ```
    /// use sparkbook::knn::{KnnClassifier, Weights};
    /// use linfa::ParamGuard;
    ///
    /// let params = KnnClassifier::params(3).weights(Weights::Distance);
    /// assert_eq!(params.check_ref()?.weights(), Weights::Distance);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn weights(mut self, weights: Weights) -> Self {
        self.0.weights = weights;
        self
    }

    /// sklearn's `metric` (with `p` inside `Minkowski`).
    ///
    /// ```
    /// use sparkbook::knn::{KnnRegressor, Metric};
    /// use linfa::ParamGuard;
    ///
    /// let params = KnnRegressor::params(3).metric(Metric::Minkowski(1.5));
    /// assert_eq!(params.check_ref()?.metric(), Metric::Minkowski(1.5));
    /// assert!(KnnRegressor::params(3).metric(Metric::Minkowski(0.5)).check().is_err());
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn metric(mut self, metric: Metric) -> Self {
        self.0.metric = metric;
        self
    }

    /// sklearn's `algorithm`.
    ///
    /// ```
    /// use sparkbook::knn::{Algorithm, KnnRegressor, Metric};
    /// use linfa::ParamGuard;
    ///
    /// assert_eq!(KnnRegressor::params(3).algorithm(Algorithm::Brute).check()?.algorithm(), Algorithm::Brute);
    /// // Trees cannot prune with cosine.
    /// assert!(KnnRegressor::params(3).metric(Metric::Cosine).algorithm(Algorithm::KdTree).check().is_err());
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn algorithm(mut self, algorithm: Algorithm) -> Self {
        self.0.algorithm = algorithm;
        self
    }

    /// sklearn's `leaf_size`: rows per tree leaf, which changes speed, never a
    /// result. 64 by default (sklearn's default is 30).
    ///
    /// ```
    /// use sparkbook::knn::KnnRegressor;
    /// use linfa::ParamGuard;
    ///
    /// assert_eq!(KnnRegressor::params(3).leaf_size(8).check()?.leaf_size(), 8);
    /// assert!(KnnRegressor::params(3).leaf_size(0).check().is_err());
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn leaf_size(mut self, leaf_size: usize) -> Self {
        self.0.leaf_size = leaf_size;
        self
    }
}

impl<Task> linfa::ParamGuard for KnnParams<Task> {
    type Checked = KnnValidParams<Task>;
    type Error = Error;

    fn check_ref(&self) -> Result<&KnnValidParams<Task>> {
        let p = &self.0;
        if p.k == 0 {
            return Err(Error::param("k", "must be at least 1, got 0"));
        }
        if p.leaf_size == 0 {
            return Err(Error::param("leaf_size", "must be at least 1, got 0"));
        }
        if let Metric::Minkowski(power) = p.metric
            && !(power.is_finite() && power >= 1.0)
        {
            return Err(Error::param(
                "p",
                format!(
                    "the Minkowski power must be a finite number >= 1 (below 1 it is not a distance), got {power}"
                ),
            ));
        }
        if p.metric == Metric::Cosine
            && matches!(p.algorithm, Algorithm::KdTree | Algorithm::BallTree)
        {
            return Err(Error::param(
                "algorithm",
                "cosine is not a metric distance, so trees cannot prune with it; use Brute or Auto",
            ));
        }
        Ok(p)
    }

    fn check(self) -> Result<KnnValidParams<Task>> {
        self.check_ref()?;
        Ok(self.0)
    }
}

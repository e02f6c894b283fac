//! What regressor and classifier share: settings, feature names and the index.
//!
//! Inputs are turned into a checked [`Matrix`] here, by column name for frames and
//! by width for arrays, so both models reject bad input the same way.

use ndarray::{Array2, ArrayView2};
use polars::prelude::{Column, DataFrame};
use serde::{Deserialize, Serialize};

use super::features::{self, Matrix, TrainFrame};
use super::index::Index;
use super::kernel::{Metric, Neighbors};
use super::params::{Algorithm, KnnValidParams};
use crate::error::{Error, Result};

/// Query rows searched at once by `predict`; bounds the neighbour lists' memory.
const QUERY_BLOCK: usize = 8192;

#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct Core<Task> {
    pub(crate) params: KnnValidParams<Task>,
    /// Feature names in the order of the index's columns.
    pub(crate) features: Vec<String>,
    /// Whether the features were "all numeric columns" (extra numeric columns at
    /// predict time are then an error) rather than an explicit list.
    pub(crate) all_numeric: bool,
    pub(crate) target: Option<String>,
    pub(crate) index: Index,
}

impl<Task> Core<Task> {
    pub(crate) fn fit(
        params: &KnnValidParams<Task>,
        train: Matrix,
        features: Vec<String>,
        all_numeric: bool,
        target: Option<String>,
    ) -> Result<Core<Task>> {
        Core::check_shape(params, train.rows, train.dim)?;
        let index = Index::build(
            train,
            params.metric,
            params.algorithm,
            params.leaf_size,
            params.k,
        )?;
        Ok(Core {
            params: params.clone(),
            features,
            all_numeric,
            target,
            index,
        })
    }

    /// What `fit` checks of the training matrix's shape, callable before the
    /// matrix is built (a drained frame must be checked before it is touched).
    pub(crate) fn check_shape(
        params: &KnnValidParams<Task>,
        rows: usize,
        dim: usize,
    ) -> Result<()> {
        if rows == 0 {
            return Err(Error::EmptyData {
                what: "training set",
            });
        }
        if dim == 0 {
            return Err(Error::EmptyData {
                what: "feature list",
            });
        }
        if params.k > rows {
            return Err(Error::param(
                "k",
                format!("k = {} exceeds the {rows} training rows", params.k),
            ));
        }
        Ok(())
    }

    /// The training matrix from a frame's feature columns, after every check
    /// `fit` would make, so a drained frame is only emptied by a fit that succeeds.
    pub(crate) fn frame_matrix(
        params: &KnnValidParams<Task>,
        frame: TrainFrame<'_>,
        names: &[String],
    ) -> Result<Matrix> {
        let df = frame.df();
        Core::check_shape(params, df.height(), names.len())?;
        match frame {
            TrainFrame::Shared(df) => features::matrix(df, names),
            TrainFrame::Drained(df) => {
                if params.metric == Metric::Cosine
                    && let Some(row) = features::first_zero_row(df, names)?
                {
                    return Err(Error::ZeroVector {
                        what: "training set",
                        row,
                    });
                }
                features::drain_matrix(df, names)
            }
        }
    }

    /// Which feature columns `fit_frame` uses, and checks them.
    pub(crate) fn frame_features(
        df: &DataFrame,
        target: &str,
        explicit: Option<&[&str]>,
    ) -> Result<(Vec<String>, bool)> {
        features::column(df, target)?;
        if df.height() == 0 {
            return Err(Error::EmptyData {
                what: "training set",
            });
        }
        let (names, all_numeric) = match explicit {
            Some(list) => (
                list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
                false,
            ),
            None => (features::numeric_columns(df, Some(target)), true),
        };
        if let Some(dup) = names
            .iter()
            .enumerate()
            .find(|(i, n)| names[..*i].contains(n))
        {
            return Err(Error::DuplicateColumn {
                name: dup.1.clone(),
            });
        }
        if names.iter().any(|n| n == target) {
            return Err(Error::param(
                "features",
                format!("the target `{target}` cannot also be a feature"),
            ));
        }
        if names.is_empty() {
            return Err(Error::EmptyData {
                what: "feature list",
            });
        }
        Ok((names, all_numeric))
    }

    /// An empty frame is an error when predicted directly (an empty test set is a
    /// mistake), but not inside a job: there it is an empty partition, as when a
    /// frame has fewer rows than partitions, and yields an empty result.
    pub(crate) fn frame_queries(&self, df: &DataFrame) -> Result<Matrix> {
        if df.height() == 0 && crate::TaskContext::get().is_none() {
            return Err(Error::EmptyData { what: "test set" });
        }
        features::check_features(df, &self.features, self.target.as_deref(), self.all_numeric)?;
        features::matrix(df, &self.features)
    }

    /// The predict-time output: `row` when the frame carries one, `true` when it has
    /// the target column (built by `truth` from the target's name), then `pred`.
    pub(crate) fn output_frame(
        &self,
        df: &DataFrame,
        truth: impl FnOnce(&str) -> Result<Column>,
        pred: Column,
    ) -> Result<DataFrame> {
        let mut columns = Vec::with_capacity(3);
        if let Some(row) = features::find(df, features::ROW) {
            columns.push(row.clone());
        }
        if let Some(target) = self.target.as_deref()
            && features::find(df, target).is_some()
        {
            columns.push(truth(target)?);
        }
        columns.push(pred);
        Ok(DataFrame::new(df.height(), columns)?)
    }

    pub(crate) fn array_queries(&self, x: ArrayView2<'_, f64>) -> Result<Matrix> {
        let (rows, dim) = x.dim();
        if rows == 0 {
            return Err(Error::EmptyData { what: "test set" });
        }
        if dim != self.features.len() {
            return Err(Error::FeatureMismatch {
                reason: format!(
                    "the model has {} features, the input has {dim} columns",
                    self.features.len()
                ),
            });
        }
        Matrix::from_array(x.view(), &self.features)
    }

    pub(crate) fn neighbors(&self, queries: &Matrix, k: usize) -> Result<Neighbors> {
        if k == 0 || k > self.index.rows() {
            return Err(Error::param(
                "k",
                format!(
                    "must be in 1..={} (the training rows), got {k}",
                    self.index.rows()
                ),
            ));
        }
        if queries.rows == 0 {
            return Ok(Neighbors {
                k,
                distances: Vec::new(),
                indices: Vec::new(),
            });
        }
        self.index.search(queries, k)
    }

    /// Searches `queries` a block of rows at a time and hands each block's neighbours
    /// to `f`, in row order. Memory for neighbour lists stays at `QUERY_BLOCK x k`
    /// whatever the partition size; results do not depend on the blocking because
    /// every kernel answers each query independently.
    pub(crate) fn for_each_block(
        &self,
        queries: &Matrix,
        k: usize,
        mut f: impl FnMut(&Neighbors),
    ) -> Result<()> {
        let dim = queries.dim;
        for start in (0..queries.rows).step_by(QUERY_BLOCK) {
            let end = (start + QUERY_BLOCK).min(queries.rows);
            let block = Matrix {
                data: queries.data[start * dim..end * dim].to_vec(),
                rows: end - start,
                dim,
            };
            f(&self.neighbors(&block, k)?);
        }
        Ok(())
    }

    /// sklearn's `kneighbors`: distances and training-row indices, row per query.
    pub(crate) fn kneighbors(
        &self,
        x: ArrayView2<'_, f64>,
        k: usize,
    ) -> Result<(Array2<f64>, Array2<usize>)> {
        let queries = self.array_queries(x)?;
        let nb = self.neighbors(&queries, k)?;
        let dist = Array2::from_shape_vec((queries.rows, k), nb.distances)
            .map_err(|e| Error::Message(e.to_string()))?;
        let idx = Array2::from_shape_vec(
            (queries.rows, k),
            nb.indices.into_iter().map(|i| i as usize).collect(),
        )
        .map_err(|e| Error::Message(e.to_string()))?;
        Ok((dist, idx))
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        self.index.algorithm()
    }

    /// Checks a deserialised model, so a damaged file is an error at load time and
    /// never an out-of-bounds panic at predict time.
    pub(crate) fn validate(&self, n_targets: usize) -> std::result::Result<(), String> {
        linfa::ParamGuard::check_ref(&super::params::KnnParams(self.params.clone()))
            .map_err(|e| e.to_string())?;
        if self.features.len() != self.index.dim() {
            return Err(format!(
                "{} feature names for {} columns",
                self.features.len(),
                self.index.dim()
            ));
        }
        if n_targets != self.index.rows() {
            return Err(format!(
                "{n_targets} targets for {} training rows",
                self.index.rows()
            ));
        }
        if self.params.k > self.index.rows() {
            return Err(format!(
                "k = {} exceeds the {} training rows",
                self.params.k,
                self.index.rows()
            ));
        }
        Ok(())
    }
}

/// Per-neighbour weights by sklearn's rule: uniform, or 1/d, where any zero distance
/// gives weight 1 to the zero-distance neighbours and 0 to the rest. A cosine
/// distance can round a few ulps below zero for the same direction: it counts as
/// zero, where sklearn would give it a weight of about -1e16 (and a prediction
/// of -0.0 for targets of 0).
pub(crate) fn neighbor_weights(weights: super::Weights, dist: &[f64], out: &mut Vec<f64>) {
    out.clear();
    match weights {
        super::Weights::Uniform => out.extend(dist.iter().map(|_| 1.0)),
        super::Weights::Distance => {
            if dist.iter().any(|&d| d <= 0.0) {
                out.extend(dist.iter().map(|&d| if d <= 0.0 { 1.0 } else { 0.0 }));
            } else {
                out.extend(dist.iter().map(|&d| 1.0 / d));
            }
        }
    }
}

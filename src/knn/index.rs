//! The model's neighbour index: training rows it owns, and the search over them.
//!
//! The index owns its data (behind an `Arc`), unlike linfa-nn's indexes, which
//! borrow it: a borrowed index cannot outlive a notebook cell or be broadcast.
//! With the k-d tree the rows live inside the tree, in its leaf order, so there
//! is one copy of them, not two. A saved model stores only the rows (in their
//! original order) and settings; the tree is rebuilt when the file is read.

use std::sync::{Arc, OnceLock};

use linfa_nn::distance::{L1Dist, L2Dist, LInfDist, LpDist};
use linfa_nn::{BallTree, NearestNeighbour};
use ndarray::{ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use super::features::Matrix;
use super::kernel::{self, Brute, KdTree, Metric, Neighbors, Points};
use super::params::Algorithm;
use crate::error::{Error, Result};

/// Dimensions up to which `Auto` uses the k-d tree for non-Euclidean metrics. For
/// Euclidean the dimension alone does not decide: real data (clustered, unevenly
/// scaled) can keep a tree ahead well past 16 dimensions, so `Auto` tries the tree
/// on training rows at fit and keeps it unless it would scan over a tenth of them.
const TREE_MAX_DIM: usize = 16;

/// Training rows above which Euclidean `Auto` first tries the tree on an evenly
/// strided sample of this many rows, with k scaled down to match, and skips the
/// full build where the sample's tree would not prune (uniform d = 32: 3 s to
/// build on 1M rows, then brute force anyway, whose fit takes 0.9 s). The k
/// nearest of all rows reach about as far as the `k * PROBE_ROWS / rows` nearest
/// of the sample, so the share of rows the two trees scan is about the same.
const PROBE_ROWS: usize = 1 << 16;

/// Where the training rows live.
#[derive(Clone)]
enum Rows {
    /// As given: brute force and the ball tree read them in place.
    Plain(Arc<Matrix>),
    /// Inside the k-d tree, in its leaf order.
    Tree(Arc<KdTree>),
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(into = "IndexFile", try_from = "IndexFile")]
pub(crate) struct Index {
    rows: Rows,
    metric: Metric,
    algorithm: Algorithm,
    leaf_size: usize,
    /// Built on first use: only brute-force searches need it. Shared by the
    /// index's clones, which hold the same rows: `sc.broadcast(model.clone())`
    /// in a notebook cell would otherwise build it again on every run.
    brute: Arc<OnceLock<Brute>>,
}

/// An index as saved: rows in their original order and the settings.
#[derive(Serialize, Deserialize)]
struct IndexFile {
    train: Matrix,
    metric: Metric,
    algorithm: Algorithm,
    leaf_size: usize,
}

impl From<Index> for IndexFile {
    fn from(index: Index) -> IndexFile {
        let train = match index.rows {
            Rows::Plain(m) => Arc::unwrap_or_clone(m),
            Rows::Tree(t) => Matrix {
                data: t.original_rows(),
                rows: t.rows(),
                dim: t.dim(),
            },
        };
        IndexFile {
            train,
            metric: index.metric,
            algorithm: index.algorithm,
            leaf_size: index.leaf_size,
        }
    }
}

/// A file is checked before its tree is built, so a damaged one is an error at
/// load time and never a panic.
impl TryFrom<IndexFile> for Index {
    type Error = String;

    fn try_from(file: IndexFile) -> std::result::Result<Index, String> {
        file.validate()?;
        Ok(Index::assemble(
            file.train,
            file.metric,
            file.algorithm,
            file.leaf_size,
        ))
    }
}

impl Index {
    /// Resolves `Auto` and builds the k-d tree now, so the first partition of the
    /// first job does not pay for it. For Euclidean `Auto` the tree is tried on a
    /// few training rows as queries, and if it would scan too much of the data
    /// (see `KdTree::prefers_brute`) the rows go back to their order for brute
    /// force: every later call is then spared the tree's own sampling, and the
    /// model reports what it really runs.
    pub(crate) fn build(
        train: Matrix,
        metric: Metric,
        algorithm: Algorithm,
        leaf_size: usize,
        k: usize,
    ) -> Result<Index> {
        if train.rows == 0 || train.dim == 0 {
            return Err(Error::EmptyData {
                what: "training set",
            });
        }
        if metric == Metric::Cosine {
            no_zero_row(&train, "training set")?;
        }
        let auto_euclidean = algorithm == Algorithm::Auto && metric == Metric::Euclidean;
        let algorithm = match algorithm {
            Algorithm::Auto
                if metric == Metric::Euclidean
                    || (metric != Metric::Cosine && train.dim <= TREE_MAX_DIM) =>
            {
                Algorithm::KdTree
            }
            Algorithm::Auto => Algorithm::Brute,
            chosen => chosen,
        };
        if auto_euclidean && sample_prefers_brute(&train, leaf_size, k) {
            return Ok(Index::assemble(train, metric, Algorithm::Brute, leaf_size));
        }
        let index = Index::assemble(train, metric, algorithm, leaf_size);
        Ok(if auto_euclidean {
            index.brute_unless_the_tree_prunes(k)
        } else {
            index
        })
    }

    fn brute_unless_the_tree_prunes(self, k: usize) -> Index {
        match self.rows {
            Rows::Tree(tree) if tree.prefers_brute(k) => {
                // Built a moment ago, so this Arc is the only one: no copy.
                let tree = Arc::unwrap_or_clone(tree);
                let (rows, dim) = (tree.rows(), tree.dim());
                let train = Matrix {
                    data: tree.into_rows(),
                    rows,
                    dim,
                };
                Index::assemble(train, self.metric, Algorithm::Brute, self.leaf_size)
            }
            _ => self,
        }
    }

    /// `algorithm` is resolved (never `Auto`) and `train` checked.
    fn assemble(train: Matrix, metric: Metric, algorithm: Algorithm, leaf_size: usize) -> Index {
        let rows = if algorithm == Algorithm::KdTree {
            Rows::Tree(Arc::new(KdTree::build(
                train.data, train.rows, train.dim, leaf_size,
            )))
        } else {
            Rows::Plain(Arc::new(train))
        };
        Index {
            rows,
            metric,
            algorithm,
            leaf_size,
            brute: Arc::default(),
        }
    }
}

/// Cosine distance has no value at an all-zero row: the first one, in `what`,
/// is the error.
fn no_zero_row(m: &Matrix, what: &'static str) -> Result<()> {
    match (0..m.rows).find(|&i| m.row(i).iter().all(|&v| v == 0.0)) {
        Some(row) => Err(Error::ZeroVector { what, row }),
        None => Ok(()),
    }
}

/// Whether a tree on [`PROBE_ROWS`] strided training rows, asked for the
/// matching share of k, would hand its calls to brute force. False for
/// training sets of at most `PROBE_ROWS` rows: their full tree is the test.
fn sample_prefers_brute(train: &Matrix, leaf_size: usize, k: usize) -> bool {
    if train.rows <= PROBE_ROWS {
        return false;
    }
    let stride = train.rows / PROBE_ROWS;
    let sample: Vec<f64> = (0..PROBE_ROWS)
        .flat_map(|i| train.row(i * stride).iter().copied())
        .collect();
    let k = (k * PROBE_ROWS).div_ceil(train.rows);
    KdTree::build(sample, PROBE_ROWS, train.dim, leaf_size).prefers_brute(k)
}

impl IndexFile {
    /// Shape and value checks for an index read from a file.
    fn validate(&self) -> std::result::Result<(), String> {
        let m = &self.train;
        if m.rows == 0 || m.dim == 0 || m.rows.checked_mul(m.dim) != Some(m.data.len()) {
            return Err(format!(
                "training matrix of {} values cannot be {} x {}",
                m.data.len(),
                m.rows,
                m.dim
            ));
        }
        if m.rows > u32::MAX as usize {
            return Err(format!(
                "{} training rows exceed the supported 2^32",
                m.rows
            ));
        }
        if m.data.iter().any(|v| !v.is_finite()) {
            return Err("the training matrix holds a non-finite value".to_owned());
        }
        if self.algorithm == Algorithm::Auto
            || (self.metric == Metric::Cosine && self.algorithm != Algorithm::Brute)
        {
            return Err(format!(
                "algorithm {:?} cannot be used with metric {:?}",
                self.algorithm, self.metric
            ));
        }
        Ok(())
    }
}

impl Index {
    pub(crate) fn rows(&self) -> usize {
        match &self.rows {
            Rows::Plain(m) => m.rows,
            Rows::Tree(t) => t.rows(),
        }
    }

    pub(crate) fn dim(&self) -> usize {
        match &self.rows {
            Rows::Plain(m) => m.dim,
            Rows::Tree(t) => t.dim(),
        }
    }

    /// The algorithm actually used (`Auto` resolved).
    pub(crate) fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub(crate) fn byte_size(&self) -> usize {
        match &self.rows {
            Rows::Plain(m) => m.data.capacity() * std::mem::size_of::<f64>(),
            Rows::Tree(t) => t.byte_size(),
        }
    }

    /// The k nearest training rows of every query row, exact, ties to the lower
    /// training index. The caller has checked `queries` (finite, right width) and k.
    pub(crate) fn search(&self, queries: &Matrix, k: usize) -> Result<Neighbors> {
        if self.metric == Metric::Cosine {
            no_zero_row(queries, "test set")?;
        }
        let q = Points::new(&queries.data, queries.rows, queries.dim);
        Ok(match &self.rows {
            Rows::Tree(tree) => tree.knn(q, k, self.metric),
            Rows::Plain(train) if self.algorithm == Algorithm::BallTree => {
                self.ball_tree_search(train, queries, k)?
            }
            Rows::Plain(train) => {
                let points = Points::new(&train.data, train.rows, train.dim);
                let brute = self.brute.get_or_init(|| Brute::new(points));
                brute.knn(points, None, q, k, self.metric)
            }
        })
    }

    /// linfa-nn's ball tree proposes k neighbours; the exact answer is then taken
    /// from every training row within the farthest proposal's exact distance, so
    /// linfa-nn's own rounding and tie order never change the result.
    fn ball_tree_search(&self, rows: &Matrix, queries: &Matrix, k: usize) -> Result<Neighbors> {
        let train = ArrayView2::from_shape((rows.rows, rows.dim), &rows.data)
            .map_err(|e| Error::Message(format!("training matrix shape: {e}")))?;
        let tree = match self.metric {
            Metric::Euclidean => {
                BallTree::new().from_batch_with_leaf_size(&train, self.leaf_size, L2Dist)
            }
            Metric::Manhattan => {
                BallTree::new().from_batch_with_leaf_size(&train, self.leaf_size, L1Dist)
            }
            Metric::Chebyshev => {
                BallTree::new().from_batch_with_leaf_size(&train, self.leaf_size, LInfDist)
            }
            Metric::Minkowski(p) => {
                BallTree::new().from_batch_with_leaf_size(&train, self.leaf_size, LpDist(p))
            }
            Metric::Cosine => {
                return Err(Error::param(
                    "algorithm",
                    "the ball tree does not support cosine",
                ));
            }
        }
        .map_err(|e| Error::Message(format!("ball tree: {e}")))?;
        let mut out = Neighbors {
            k,
            distances: Vec::with_capacity(queries.rows * k),
            indices: Vec::with_capacity(queries.rows * k),
        };
        // linfa-nn bounds balls by (distance to centre - radius), whose rounding error
        // grows with the coordinates' magnitude, not with the search radius: widen
        // the radius by a margin on that scale.
        let scale = rows.data.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
        let mut candidates: Vec<(f64, u32)> = Vec::new();
        for i in 0..queries.rows {
            let query = queries.row(i);
            let point = ArrayView1::from(query);
            let proposed = tree
                .k_nearest(point, k)
                .map_err(|e| Error::Message(format!("ball tree query: {e}")))?;
            let reach = proposed
                .iter()
                .map(|&(_, j)| kernel::distance(self.metric, query, rows.row(j)))
                .fold(0.0, f64::max);
            let magnitude = scale.max(query.iter().fold(0.0_f64, |m, v| m.max(v.abs())));
            let range = reach * (1.0 + 1e-9) + 1e-12 * magnitude * (rows.dim as f64);
            candidates.clear();
            if range > 0.0 {
                for (_, j) in tree
                    .within_range(point, range)
                    .map_err(|e| Error::Message(format!("ball tree query: {e}")))?
                {
                    candidates.push((kernel::distance(self.metric, query, rows.row(j)), j as u32));
                }
            } else {
                // All data and the query are zero: every row is at distance 0.
                candidates.extend((0..rows.rows).map(|j| (0.0, j as u32)));
            }
            candidates.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            if candidates.len() < k {
                return Err(Error::Message(format!(
                    "ball tree returned {} of {k} neighbours for query row {i}",
                    candidates.len()
                )));
            }
            for &(d, j) in &candidates[..k] {
                out.distances.push(d);
                out.indices.push(j);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::tests::Rng;
    use super::*;

    fn uniform(rows: usize, dim: usize) -> Matrix {
        let mut rng = Rng(11);
        let data = (0..rows * dim).map(|_| rng.unit()).collect();
        Matrix { data, rows, dim }
    }

    /// The sample says brute force where the tree cannot prune, the tree where
    /// it can, and nothing for training sets small enough to test in full.
    #[test]
    fn the_sample_decides_only_for_large_training_sets() {
        assert!(sample_prefers_brute(&uniform(PROBE_ROWS + 10, 32), 30, 100));
        assert!(!sample_prefers_brute(&uniform(PROBE_ROWS + 10, 2), 30, 100));
        assert!(!sample_prefers_brute(&uniform(PROBE_ROWS, 32), 30, 100));
    }

    /// A clone made before any search (a model broadcast as `model.clone()`)
    /// shares what the first brute-force search builds, with every clone.
    #[test]
    fn clones_share_the_brute_force_state() {
        let index = Index::assemble(uniform(200, 3), Metric::Euclidean, Algorithm::Brute, 30);
        let (first, second) = (index.clone(), index.clone());
        assert!(index.brute.get().is_none());
        first.search(&uniform(5, 3), 4).unwrap();
        let built = index.brute.get().expect("built by a clone's search");
        assert!(std::ptr::eq(built, second.brute.get().unwrap()));
    }
}

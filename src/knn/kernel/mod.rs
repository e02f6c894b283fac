//! Exact k-nearest-neighbour kernels: results are bit-identical to sorting every
//! training distance by (distance, index), whatever the algorithm or the way queries
//! are batched, so predictions do not depend on partitioning.

mod bf16;
mod brute;
mod kdtree;
mod metric;
mod select;

pub(crate) use brute::Brute;
#[cfg(test)]
pub(crate) use brute::brute_knn;
pub(crate) use kdtree::KdTree;
pub use metric::Metric;
pub(crate) use metric::{Points, distance};
pub(crate) use select::Neighbors;

#[cfg(test)]
pub(crate) mod tests;

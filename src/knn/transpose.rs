//! Columns into a row-major matrix inside one buffer, so a fit that is handed
//! a frame's columns one at a time can free each as soon as it is copied.
//!
//! Writing column after column straight into row-major order touches every page
//! of the matrix with the first column, so the whole frame and the whole matrix
//! would be resident together (2x the data). Here each column goes into its own
//! contiguous stretch of the buffer (only that stretch's pages are touched), and
//! the buffer is transposed in place at the end, in two cache-friendly steps:
//! stretches of [`BLOCK`] values move as units (cycle following over
//! `dim x rows / BLOCK` units), then each group of `BLOCK` rows is transposed
//! through a small scratch.

use super::features::Matrix;

/// Rows moved as one unit by the first step: 512 bytes of `f64`.
const BLOCK: usize = 64;

/// A `rows x dim` matrix filled one column at a time.
pub(crate) struct ColumnsToRows {
    data: Vec<f64>,
    rows: usize,
    dim: usize,
    /// Rows in whole blocks; the rest are written row-major at the end of the
    /// buffer, where they belong, from the start.
    main: usize,
}

impl ColumnsToRows {
    /// The buffer comes zeroed from the allocator (untouched pages cost no
    /// memory until a column is written into them).
    pub(crate) fn new(rows: usize, dim: usize) -> ColumnsToRows {
        ColumnsToRows {
            data: vec![0.0; rows * dim],
            rows,
            dim,
            main: rows - rows % BLOCK,
        }
    }

    /// Writes column `j` (`rows` values; extra values are ignored, missing ones
    /// stay 0).
    pub(crate) fn put(&mut self, j: usize, values: impl IntoIterator<Item = f64>) {
        assert!(j < self.dim, "column {j} of {}", self.dim);
        let (main, dim) = (self.main, self.dim);
        let (stretches, tail) = self.data.split_at_mut(main * dim);
        let mut values = values.into_iter();
        for (slot, v) in stretches[j * main..(j + 1) * main]
            .iter_mut()
            .zip(values.by_ref())
        {
            *slot = v;
        }
        for (slot, v) in tail.iter_mut().skip(j).step_by(dim).zip(values) {
            *slot = v;
        }
    }

    /// The row-major matrix.
    pub(crate) fn into_matrix(mut self) -> Matrix {
        let units = self.main / BLOCK;
        let (dim, data) = (self.dim, &mut self.data[..self.main * self.dim]);
        if units > 1 && dim > 1 {
            // Unit (feature f, block b) at f * units + b goes to b * dim + f.
            let n = dim * units;
            let dest = |p: usize| (p % units) * dim + p / units;
            let mut seen = vec![false; n];
            let mut carry = [0.0; BLOCK];
            for start in 0..n {
                if seen[start] {
                    continue;
                }
                carry.copy_from_slice(&data[start * BLOCK..(start + 1) * BLOCK]);
                let mut at = start;
                loop {
                    at = dest(at);
                    seen[at] = true;
                    carry.swap_with_slice(&mut data[at * BLOCK..(at + 1) * BLOCK]);
                    if at == start {
                        break;
                    }
                }
            }
        }
        if dim > 1 {
            let mut scratch = vec![0.0; dim * BLOCK];
            for group in data.chunks_exact_mut(dim * BLOCK) {
                for (f, unit) in group.chunks_exact(BLOCK).enumerate() {
                    for (r, &v) in unit.iter().enumerate() {
                        scratch[r * dim + f] = v;
                    }
                }
                group.copy_from_slice(&scratch);
            }
        }
        Matrix {
            data: self.data,
            rows: self.rows,
            dim: self.dim,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against the plain definition of row-major order, for shapes with and
        /// without whole blocks, a partial last block, and one column.
        #[test]
        fn into_matrix_is_the_row_major_matrix(rows in 0usize..400, dim in 1usize..12) {
            let value = |i: usize, j: usize| (i * 1000 + j) as f64;
            let mut m = ColumnsToRows::new(rows, dim);
            for j in (0..dim).rev() {
                m.put(j, (0..rows).map(|i| value(i, j)));
            }
            let expected: Vec<f64> = (0..rows)
                .flat_map(|i| (0..dim).map(move |j| value(i, j)))
                .collect();
            prop_assert_eq!(m.into_matrix().data, expected);
        }
    }

    #[test]
    fn a_large_matrix_with_many_cycles() {
        let (rows, dim) = (64 * 1000 + 17, 9);
        let mut m = ColumnsToRows::new(rows, dim);
        for j in 0..dim {
            m.put(j, (0..rows).map(|i| (i * dim + j) as f64));
        }
        let data = m.into_matrix().data;
        assert!(data.iter().enumerate().all(|(p, &v)| v == p as f64));
    }
}

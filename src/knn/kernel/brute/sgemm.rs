//! f32 products straight from the feature-by-feature layout, with AVX2 and FMA.
//!
//! matrixmultiply copies its right operand into panels on every call, though
//! ours is already one: feature `p` of training rows `j..j + 16` lies in 64
//! contiguous bytes at `b[p * ldb + j]`, the seed rows packed once per index.
//! Over King County (16 queries by 1,024 seed rows by 19 values a call), that
//! copy was a tenth of the time. This kernel reads both operands in place: a
//! tile of six queries by 16 rows keeps its twelve sums in registers, each
//! feature adding one broadcast query value times two vectors of row values.
//! The sums differ from matrixmultiply's in rounding only, which the
//! prefilter's margin covers for any order of summation.

use std::arch::x86_64::{
    __m256, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps,
    _mm256_storeu_ps,
};

/// Queries per tile: 12 sums, two row vectors and a broadcast fill 15 of the
/// 16 vector registers.
const MR: usize = 6;
/// Training rows per tile: two vectors of eight.
const NR: usize = 16;
/// Training rows whose values stay in L1 while every query passes over them
/// (8 KiB at d = 32): the queries are read from L2 once per block, where a
/// pass per tile's columns read the 512 queries of a d = 32 call 16 times.
const NB: usize = 4 * NR;

/// Whether [`products`] runs on this CPU.
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// `C = A B` into `c[i*n + j]`, with `A[i][p] = a[p*lda + i]` (`m x k`) and
/// `B[p][j] = b[p*ldb + j]` (`k x n`), as [`gemm`](super::gemm) takes them.
///
/// # Safety
/// The CPU must support AVX2 and FMA ([`available`]).
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn products(
    (m, k, n): (usize, usize, usize),
    (a, lda): (&[f32], usize),
    (b, ldb): (&[f32], usize),
    c: &mut [f32],
) {
    super::check_shape((m, k, n), (a, lda), (b, ldb), c);
    let whole = n - n % NR;
    for j0 in (0..whole).step_by(NB) {
        let columns = (j0..whole.min(j0 + NB)).step_by(NR);
        let mut i = 0;
        while i + MR <= m {
            for j in columns.clone() {
                // SAFETY: rows i..i + MR <= m and columns j..j + NR <= n, in
                // bounds by `check_shape`; the CPU's features are the caller's promise.
                unsafe { tile::<MR>((i, j), (k, n), (a, lda), (b, ldb), c) };
            }
            i += MR;
        }
        for j in columns {
            // SAFETY: as above, for the m - i < MR rows left.
            unsafe {
                match m - i {
                    0 => {}
                    1 => tile::<1>((i, j), (k, n), (a, lda), (b, ldb), c),
                    2 => tile::<2>((i, j), (k, n), (a, lda), (b, ldb), c),
                    3 => tile::<3>((i, j), (k, n), (a, lda), (b, ldb), c),
                    4 => tile::<4>((i, j), (k, n), (a, lda), (b, ldb), c),
                    _ => tile::<5>((i, j), (k, n), (a, lda), (b, ldb), c),
                }
            }
        }
    }
    for i in 0..m {
        for j in whole..n {
            c[i * n + j] = (0..k)
                .map(|p| a[p * lda + i] * b[p * ldb + j])
                .fold(0.0, |s, x| s + x);
        }
    }
}

/// Rows `i..i + R` by columns `j..j + NR` of `C`.
///
/// # Safety
/// `i + R <= m` and `j + NR <= n` for [`products`]' checked shapes, and the
/// CPU supports AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile<const R: usize>(
    (i, j): (usize, usize),
    (k, n): (usize, usize),
    (a, lda): (&[f32], usize),
    (b, ldb): (&[f32], usize),
    c: &mut [f32],
) {
    let mut sum: [[__m256; 2]; R] = [[_mm256_setzero_ps(); 2]; R];
    let (a, b) = (a.as_ptr(), b.as_ptr());
    for p in 0..k {
        // SAFETY: p * ldb + j + NR <= (k - 1) * ldb + n <= b.len(), and
        // p * lda + i + R <= (k - 1) * lda + m <= a.len().
        let (lo, hi, q) = unsafe {
            let row = b.add(p * ldb + j);
            (
                _mm256_loadu_ps(row),
                _mm256_loadu_ps(row.add(8)),
                a.add(p * lda + i),
            )
        };
        for (r, s) in sum.iter_mut().enumerate() {
            // SAFETY: r < R, in bounds as above.
            let v = unsafe { _mm256_broadcast_ss(&*q.add(r)) };
            s[0] = _mm256_fmadd_ps(v, lo, s[0]);
            s[1] = _mm256_fmadd_ps(v, hi, s[1]);
        }
    }
    for (r, s) in sum.iter().enumerate() {
        let out = &mut c[(i + r) * n + j..][..NR];
        // SAFETY: `out` holds NR = 16 values.
        unsafe {
            _mm256_storeu_ps(out.as_mut_ptr(), s[0]);
            _mm256_storeu_ps(out.as_mut_ptr().add(8), s[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shape's edges (tile remainders in both directions, one feature,
    /// strides wider than the operands) against the sums in f64: the products
    /// of small integers are exact in f32, so they must match to the bit.
    #[test]
    fn products_match_the_exact_sums() {
        if !available() {
            return;
        }
        let mut rng = super::super::super::tests::Rng(5);
        for (m, k, n) in [
            (1, 1, 1),
            (6, 19, 1024),
            (16, 19, 33),
            (7, 3, 16),
            (13, 40, 47),
        ] {
            let (lda, ldb) = (m + 3, n + 5);
            let mut int = || (rng.unit() * 16.0).floor() as f32 - 8.0;
            let a: Vec<f32> = (0..k * lda).map(|_| int()).collect();
            let b: Vec<f32> = (0..k * ldb).map(|_| int()).collect();
            let mut c = vec![f32::NAN; m * n];
            // SAFETY: `available` said so.
            unsafe { products((m, k, n), (&a, lda), (&b, ldb), &mut c) };
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|p| f64::from(a[p * lda + i]) * f64::from(b[p * ldb + j]))
                        .sum();
                    assert_eq!(f64::from(c[i * n + j]), want, "{m}x{k}x{n} at ({i}, {j})");
                }
            }
        }
    }
}

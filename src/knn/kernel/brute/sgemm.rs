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
//!
//! [`survivors`] runs the same tiles for the main scan and compares each
//! tile's sums with its queries' thresholds while they are still in
//! registers, so no product is written unless it survives.

use std::arch::x86_64::{
    __m256, _CMP_LE_OQ, _mm256_broadcast_ss, _mm256_cmp_ps, _mm256_fmadd_ps, _mm256_loadu_ps,
    _mm256_movemask_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps,
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
    let write = |(i, j): (usize, usize), sums: &[[__m256; 2]]| {
        for (r, s) in sums.iter().enumerate() {
            store(&mut c[(i + r) * n + j..], s);
        }
    };
    // SAFETY: the shapes are checked above; the CPU's features are the caller's promise.
    let last = unsafe { tiles((m, k, n), (a, lda), (b, ldb), write) };
    for i in 0..m {
        for j in last..n {
            c[i * n + j] = product((i, j), k, (a, lda), (b, ldb));
        }
    }
}

/// What [`survivors`] asks of the scan it serves.
pub(super) trait Sieve {
    /// Query `i`'s threshold as it stands now: a product above it is out.
    fn threshold(&self, i: usize) -> f32;
    /// Query `i`'s product with row `j`, at most its threshold when it was
    /// asked; a query's rows come in increasing order.
    fn pass(&mut self, i: usize, j: usize, product: f32);
}

/// [`products`]' `C = A B`, its values handed to `sieve.pass` where they are
/// at most their query's threshold instead of written out: the main scan at
/// d = 32 stored and read back 512 KiB of products per training block, more
/// than a Zen 3 core's L2 holds.
///
/// # Safety
/// The CPU must support AVX2 and FMA ([`available`]).
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn survivors(
    (m, k, n): (usize, usize, usize),
    (a, lda): (&[f32], usize),
    (b, ldb): (&[f32], usize),
    sieve: &mut impl Sieve,
) {
    super::check_operands((m, k, n), (a, lda), (b, ldb));
    let sift = |(i, j): (usize, usize), sums: &[[__m256; 2]]| {
        for (r, s) in sums.iter().enumerate() {
            let t = _mm256_set1_ps(sieve.threshold(i + r));
            let lo = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(s[0], t));
            let hi = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(s[1], t));
            let mut bits = (lo | hi << 8) as u32;
            if bits == 0 {
                continue;
            }
            let mut values = [0.0; NR];
            store(&mut values, s);
            while bits != 0 {
                let o = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                sieve.pass(i + r, j + o, values[o]);
            }
        }
    };
    // SAFETY: the shapes are checked above; the CPU's features are the caller's promise.
    let last = unsafe { tiles((m, k, n), (a, lda), (b, ldb), sift) };
    for i in 0..m {
        for j in last..n {
            let g = product((i, j), k, (a, lda), (b, ldb));
            if g <= sieve.threshold(i) {
                sieve.pass(i, j, g);
            }
        }
    }
}

/// Calls `each((i, j), sums)` with the sums of every tile of queries
/// `i..i + sums.len()` by rows `j..j + NR`, a query's tiles in increasing
/// `j`, and returns where the whole tiles end: the rows from there on are
/// left to [`product`].
///
/// # Safety
/// The shapes must be in bounds as [`products`] checks them, and the CPU
/// must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tiles(
    (m, k, n): (usize, usize, usize),
    a: (&[f32], usize),
    b: (&[f32], usize),
    mut each: impl FnMut((usize, usize), &[[__m256; 2]]),
) -> usize {
    let whole = n - n % NR;
    for j0 in (0..whole).step_by(NB) {
        let columns = (j0..whole.min(j0 + NB)).step_by(NR);
        let mut i = 0;
        while i + MR <= m {
            for j in columns.clone() {
                // SAFETY: rows i..i + MR <= m and columns j..j + NR <= n, in
                // bounds by the caller's promise, as are the CPU's features.
                each((i, j), &unsafe { sums::<MR>((i, j), k, a, b) });
            }
            i += MR;
        }
        for j in columns {
            // SAFETY: as above, for the m - i < MR rows left.
            unsafe {
                match m - i {
                    0 => {}
                    1 => each((i, j), &sums::<1>((i, j), k, a, b)),
                    2 => each((i, j), &sums::<2>((i, j), k, a, b)),
                    3 => each((i, j), &sums::<3>((i, j), k, a, b)),
                    4 => each((i, j), &sums::<4>((i, j), k, a, b)),
                    _ => each((i, j), &sums::<5>((i, j), k, a, b)),
                }
            }
        }
    }
    whole
}

/// A tile's row of sums into the first [`NR`] values of `out`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn store(out: &mut [f32], s: &[__m256; 2]) {
    let out = out[..NR].as_mut_ptr();
    // SAFETY: `out` points at NR = 16 values.
    unsafe {
        _mm256_storeu_ps(out, s[0]);
        _mm256_storeu_ps(out.add(8), s[1]);
    }
}

/// One value of `C`, for the rows past the whole tiles.
fn product(
    (i, j): (usize, usize),
    k: usize,
    (a, lda): (&[f32], usize),
    (b, ldb): (&[f32], usize),
) -> f32 {
    (0..k)
        .map(|p| a[p * lda + i] * b[p * ldb + j])
        .fold(0.0, |s, x| s + x)
}

/// The sums of queries `i..i + R` by rows `j..j + NR`.
///
/// # Safety
/// `i + R <= m` and `j + NR <= n` for [`products`]' checked shapes, and the
/// CPU supports AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn sums<const R: usize>(
    (i, j): (usize, usize),
    k: usize,
    (a, lda): (&[f32], usize),
    (b, ldb): (&[f32], usize),
) -> [[__m256; 2]; R] {
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
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knn::kernel::tests::Rng;

    /// Operands of small integers for an `m x k x n` product, with strides
    /// wider than the operands: their products and sums are exact in f32.
    fn operands(rng: &mut Rng, (m, k, n): (usize, usize, usize)) -> [(Vec<f32>, usize); 2] {
        let (lda, ldb) = (m + 3, n + 5);
        let mut int = || (rng.unit() * 16.0).floor() as f32 - 8.0;
        let a: Vec<f32> = (0..k * lda).map(|_| int()).collect();
        let b: Vec<f32> = (0..k * ldb).map(|_| int()).collect();
        [(a, lda), (b, ldb)]
    }

    /// `C[i][j]` summed in f64.
    fn exact(
        k: usize,
        (a, lda): (&[f32], usize),
        (b, ldb): (&[f32], usize),
        (i, j): (usize, usize),
    ) -> f64 {
        (0..k)
            .map(|p| f64::from(a[p * lda + i]) * f64::from(b[p * ldb + j]))
            .sum()
    }

    /// Every shape's edges (tile remainders in both directions, one feature,
    /// strides wider than the operands) against the sums in f64: the products
    /// of small integers are exact in f32, so they must match to the bit.
    #[test]
    fn products_match_the_exact_sums() {
        if !available() {
            return;
        }
        let mut rng = Rng(5);
        for (m, k, n) in [
            (1, 1, 1),
            (6, 19, 1024),
            (16, 19, 33),
            (7, 3, 16),
            (13, 40, 47),
        ] {
            let [(a, lda), (b, ldb)] = operands(&mut rng, (m, k, n));
            let mut c = vec![f32::NAN; m * n];
            // SAFETY: `available` said so.
            unsafe { products((m, k, n), (&a, lda), (&b, ldb), &mut c) };
            for i in 0..m {
                for j in 0..n {
                    assert_eq!(
                        f64::from(c[i * n + j]),
                        exact(k, (&a, lda), (&b, ldb), (i, j)),
                        "{m}x{k}x{n} at ({i}, {j})"
                    );
                }
            }
        }
    }

    /// A sieve whose thresholds tighten as it is passed products, as a
    /// scan's do: it records what it was passed.
    struct Record {
        thr: Vec<f32>,
        passed: Vec<(usize, usize, f32)>,
    }

    impl Sieve for Record {
        fn threshold(&self, i: usize) -> f32 {
            self.thr[i]
        }

        fn pass(&mut self, i: usize, j: usize, product: f32) {
            self.passed.push((i, j, product));
            self.thr[i] = product;
        }
    }

    /// `survivors` passes exactly the products at most their query's
    /// threshold as it stood when their tile was compared, each query's in
    /// increasing row order, with the exact sums' values: against a replay of
    /// the same tightening on sums taken in f64 (exact for small integers).
    #[test]
    fn survivors_pass_what_products_at_most_their_thresholds() {
        if !available() {
            return;
        }
        let mut rng = Rng(9);
        for (m, k, n) in [
            (1, 1, 1),
            (6, 33, 256),
            (13, 40, 47),
            (7, 3, 16),
            (20, 9, 100),
        ] {
            let [(a, lda), (b, ldb)] = operands(&mut rng, (m, k, n));
            let c: Vec<f32> = (0..m * n)
                .map(|e| exact(k, (&a, lda), (&b, ldb), (e / n, e % n)) as f32)
                .collect();
            let start: Vec<f32> = (0..m)
                .map(|i| c[i * n..][..n].iter().sum::<f32>() / n as f32)
                .collect();
            let mut sieve = Record {
                thr: start.clone(),
                passed: Vec::new(),
            };
            // SAFETY: `available` said so.
            unsafe { survivors((m, k, n), (&a, lda), (&b, ldb), &mut sieve) };
            // Replay: the threshold is read once per tile (16 rows; one value
            // past the whole tiles) and the tile's survivors all pass.
            let whole = n - n % NR;
            let mut want = Vec::new();
            for i in 0..m {
                let mut thr = start[i];
                let mut j = 0;
                while j < n {
                    let width = if j < whole { NR } else { 1 };
                    let t = thr;
                    for jj in j..j + width {
                        if c[i * n + jj] <= t {
                            want.push((i, jj, c[i * n + jj]));
                            thr = c[i * n + jj];
                        }
                    }
                    j += width;
                }
            }
            let mut got = sieve.passed.clone();
            got.sort_by_key(|&(i, j, _)| (i, j));
            assert_eq!(got, want, "{m}x{k}x{n}");
            for w in sieve.passed.windows(2) {
                if w[0].0 == w[1].0 {
                    assert!(
                        w[0].1 < w[1].1,
                        "{m}x{k}x{n}: query {}'s rows out of order",
                        w[0].0
                    );
                }
            }
            assert!(!want.is_empty());
        }
    }
}

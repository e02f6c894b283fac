//! The reference distance and the exactness machinery every kernel shares.
//!
//! Kernels never trust an approximation for the final answer: they only use
//! bounds to *skip* points that provably cannot enter the top k, and compute
//! every surviving distance with the same arithmetic as [`distance`]. That is
//! what makes results bit-identical to the oracle and independent of how the
//! caller batches queries.

use serde::{Deserialize, Serialize};

/// Row-major (C-order) dense matrix view: `rows x dim`, `data.len() == rows * dim`.
#[derive(Clone, Copy, Debug)]
pub struct Points<'a> {
    pub data: &'a [f64],
    pub rows: usize,
    pub dim: usize,
}

impl<'a> Points<'a> {
    /// Checked constructor: a shape mismatch would otherwise surface later as
    /// silently wrong rows or an index panic deep inside a kernel.
    pub fn new(data: &'a [f64], rows: usize, dim: usize) -> Self {
        assert_eq!(data.len(), rows * dim, "Points: data.len() != rows * dim");
        Points { data, rows, dim }
    }

    #[inline]
    pub fn row(&self, i: usize) -> &'a [f64] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// The distance between rows (sklearn's `metric`, with Minkowski's `p` inside).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Metric {
    /// sqrt(sum (a_i - b_i)^2), sklearn's default.
    Euclidean,
    /// sum |a_i - b_i|.
    Manhattan,
    /// max |a_i - b_i|.
    Chebyshev,
    /// (sum |a_i - b_i|^p)^(1/p). `p` must be finite and >= 1 (the caller validates). The kd-tree and the
    /// early-exit scans assume the platform `powf` is accurate to ~2 ulp (glibc,
    /// musl, macOS libm are), which their safety margins absorb.
    Minkowski(f64),
    /// 1 - a.b / (|a| |b|). Inputs must be nonzero vectors (the caller guarantees it).
    Cosine,
}

/// Exact distance by direct differences, dimensions folded in index order
/// `0..dim`. This is THE reference: every kernel returns these bits.
pub fn distance(metric: Metric, a: &[f64], b: &[f64]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    match metric {
        Metric::Euclidean => exact(SqEuclid, a, b),
        Metric::Manhattan => exact(L1, a, b),
        Metric::Chebyshev => exact(LInf, a, b),
        Metric::Minkowski(p) => exact(Lp(p), a, b),
        Metric::Cosine => cosine(a, b),
    }
}

/// The complete folds (no early exit) from `q` to four rows at once. Each
/// row's fold is the reference's, term for term, so the bits are the same;
/// interleaving the four lets their chains of dependent operations overlap.
#[inline(always)]
pub(crate) fn fold4<F: Fold>(f: F, q: &[f64], rows: [&[f64]; 4]) -> [f64; 4] {
    let rows = rows.map(|r| &r[..q.len()]);
    let mut acc = [0.0f64; 4];
    for (t, &x) in q.iter().enumerate() {
        for (a, row) in acc.iter_mut().zip(&rows) {
            *a = F::combine(*a, f.term(x - row[t]));
        }
    }
    acc
}

/// Rows per block where rows are stored in blocks (the k-d tree's): a
/// block holds `BLOCK` rows dimension by dimension, row j's value t at
/// `BLOCK * t + j`, so one load gives a dimension of four rows. Stored row
/// by row, four rows had to be transposed in registers first (a 4 x 4 tile
/// costs eight shuffles), and a dimension past the last whole tile, or a
/// row past the last whole four, was gathered value by value.
pub(crate) const BLOCK: usize = 4;

/// Calls `each(i, fold)` for each row `i < n` of `blocks` (whole blocks of
/// `q.len()`-wide rows, see [`BLOCK`], the first `n` rows wanted), in order,
/// with the complete reduced fold from `q` to row `i`, bit for bit the
/// reference's. Squared Euclidean folds take one AVX2 lane per row where
/// the CPU has it.
#[inline(always)]
pub(crate) fn fold_blocks<F: Fold>(
    f: F,
    q: &[f64],
    blocks: &[f64],
    n: usize,
    each: impl FnMut(usize, f64),
) {
    debug_assert!(n.div_ceil(BLOCK) * BLOCK * q.len() <= blocks.len());
    #[cfg(target_arch = "x86_64")]
    if F::SQUARES && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present, checked just above.
        unsafe { avx2::sq_euclid_blocks(q, blocks, n, each) };
        return;
    }
    fold_blocks_portable(f, q, blocks, n, each);
}

/// [`fold_blocks`] without vector instructions beyond the target's baseline.
#[inline(always)]
fn fold_blocks_portable<F: Fold>(
    f: F,
    q: &[f64],
    blocks: &[f64],
    n: usize,
    mut each: impl FnMut(usize, f64),
) {
    let width = BLOCK * q.len();
    for (b, block) in blocks
        .chunks_exact(width)
        .take(n.div_ceil(BLOCK))
        .enumerate()
    {
        let mut acc = [0.0f64; BLOCK];
        for (t, &x) in q.iter().enumerate() {
            let values = &block[BLOCK * t..BLOCK * (t + 1)];
            for (a, &y) in acc.iter_mut().zip(values) {
                *a = F::combine(*a, f.term(x - y));
            }
        }
        let at = BLOCK * b;
        for (j, &r) in acc.iter().enumerate().take(n - at) {
            each(at + j, r);
        }
    }
}

/// The fold from `q` to row `j` of `block` (see [`BLOCK`]), stopped once it
/// passes `limit`: [`fold_until`] on a row stored in a block.
#[inline(always)]
pub(crate) fn fold_block_until<F: Fold>(
    f: F,
    q: &[f64],
    block: &[f64],
    j: usize,
    limit: f64,
) -> f64 {
    let mut acc = 0.0;
    for (x, y) in q.iter().zip(block[j..].iter().step_by(BLOCK)) {
        acc = F::combine(acc, f.term(x - y));
        if acc > limit {
            break;
        }
    }
    acc
}

/// Squared Euclidean folds with one row per AVX2 lane. Per lane the
/// operations are the reference's (`q - x`, square, add, in dimension order,
/// never fused), so every bit is the same.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::BLOCK;

    /// [`super::fold_blocks`] for `SqEuclid`, two blocks at a time: one
    /// block's chain of dependent additions would wait on each addition's
    /// latency.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn sq_euclid_blocks(
        q: &[f64],
        blocks: &[f64],
        n: usize,
        mut each: impl FnMut(usize, f64),
    ) {
        let dim = q.len();
        let width = BLOCK * dim;
        let count = n.div_ceil(BLOCK);
        assert!(count * width <= blocks.len());
        let base = blocks.as_ptr();
        let mut report = |b: usize, acc: __m256d| {
            let mut out = [0.0; BLOCK];
            // SAFETY: `out` holds four values.
            unsafe { _mm256_storeu_pd(out.as_mut_ptr(), acc) };
            let at = BLOCK * b;
            for (j, &r) in out.iter().enumerate().take(n - at) {
                each(at + j, r);
            }
        };
        let mut b = 0;
        while b + 2 <= count {
            let (mut fa, mut fb) = (_mm256_setzero_pd(), _mm256_setzero_pd());
            for (t, &x) in q.iter().enumerate() {
                let x = _mm256_set1_pd(x);
                // SAFETY: blocks `b` and `b + 1` lie within the `count`
                // checked above.
                let (ya, yb) = unsafe {
                    (
                        _mm256_loadu_pd(base.add(b * width + BLOCK * t)),
                        _mm256_loadu_pd(base.add((b + 1) * width + BLOCK * t)),
                    )
                };
                let (da, db) = (_mm256_sub_pd(x, ya), _mm256_sub_pd(x, yb));
                fa = _mm256_add_pd(fa, _mm256_mul_pd(da, da));
                fb = _mm256_add_pd(fb, _mm256_mul_pd(db, db));
            }
            report(b, fa);
            report(b + 1, fb);
            b += 2;
        }
        if b < count {
            let mut fa = _mm256_setzero_pd();
            for (t, &x) in q.iter().enumerate() {
                // SAFETY: as above.
                let ya = unsafe { _mm256_loadu_pd(base.add(b * width + BLOCK * t)) };
                let da = _mm256_sub_pd(_mm256_set1_pd(x), ya);
                fa = _mm256_add_pd(fa, _mm256_mul_pd(da, da));
            }
            report(b, fa);
        }
    }
}

fn exact<F: Fold>(f: F, a: &[f64], b: &[f64]) -> f64 {
    f.finish(fold_until(f, a, b, f64::INFINITY))
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    1.0 - dot / (na.sqrt() * nb.sqrt())
}

/// A metric of the form `finish(fold(term(a_i - b_i)))` whose fold and terms
/// are monotone in `|a_i - b_i|`, evaluated in IEEE arithmetic. Monotone
/// rounding (correctly rounded `-`, `*`, `+`, `max`, `sqrt`) makes partial
/// folds and kd-tree box bounds provable lower bounds of the final *computed*
/// value, not just of the real-number distance.
pub(crate) trait Fold: Copy {
    /// Whether scans should stop a fold once it passes the limit. Worth it
    /// only when terms are expensive (`powf`); for cheap terms the
    /// data-dependent exit branch mispredicts and costs more than it saves.
    const EARLY_EXIT: bool;
    /// Whether this is the squared Euclidean fold (term `d * d`, combine
    /// `+`), which has a vector kernel (see [`fold_blocks`]).
    const SQUARES: bool = false;
    fn term(self, diff: f64) -> f64;
    fn combine(acc: f64, t: f64) -> f64;
    fn finish(self, reduced: f64) -> f64;
    /// A reduced-space value `L` such that `reduced > L` implies
    /// `finish(reduced) > kth` strictly. Strictness matters: a point that
    /// merely ties the k-th distance may still win on a lower index.
    fn limit(self, kth: f64, dim: usize) -> f64;
}

#[derive(Clone, Copy)]
pub(crate) struct SqEuclid;
#[derive(Clone, Copy)]
pub(crate) struct L1;
#[derive(Clone, Copy)]
pub(crate) struct LInf;
#[derive(Clone, Copy)]
pub(crate) struct Lp(pub f64);
#[derive(Clone, Copy)]
pub(crate) struct CosineDist;

impl Fold for SqEuclid {
    const EARLY_EXIT: bool = false;
    const SQUARES: bool = true;
    #[inline(always)]
    fn term(self, diff: f64) -> f64 {
        diff * diff
    }
    #[inline(always)]
    fn combine(acc: f64, t: f64) -> f64 {
        acc + t
    }
    #[inline(always)]
    fn finish(self, r: f64) -> f64 {
        r.sqrt()
    }
    /// With `nu` the float just above `kth`: `r >= nu^2` gives `sqrt(r) >= nu`,
    /// and correctly rounded sqrt is monotone, so `fl(sqrt(r)) >= nu > kth`.
    /// `fl(nu*nu) * (1 + 2eps)` is >= nu^2 in the normal range; adding
    /// `MIN_POSITIVE` covers the absolute error of a subnormal square.
    fn limit(self, kth: f64, _dim: usize) -> f64 {
        if !kth.is_finite() {
            return f64::INFINITY;
        }
        let nu = f64::from_bits(kth.to_bits() + 1); // kth >= 0, so this is next_up
        nu * nu * (1.0 + 2.0 * f64::EPSILON) + f64::MIN_POSITIVE
    }
}

impl Fold for L1 {
    const EARLY_EXIT: bool = false;
    #[inline(always)]
    fn term(self, diff: f64) -> f64 {
        diff.abs()
    }
    #[inline(always)]
    fn combine(acc: f64, t: f64) -> f64 {
        acc + t
    }
    #[inline(always)]
    fn finish(self, r: f64) -> f64 {
        r
    }
    fn limit(self, kth: f64, _dim: usize) -> f64 {
        kth
    }
}

impl Fold for LInf {
    const EARLY_EXIT: bool = false;
    #[inline(always)]
    fn term(self, diff: f64) -> f64 {
        diff.abs()
    }
    #[inline(always)]
    fn combine(acc: f64, t: f64) -> f64 {
        acc.max(t)
    }
    #[inline(always)]
    fn finish(self, r: f64) -> f64 {
        r
    }
    fn limit(self, kth: f64, _dim: usize) -> f64 {
        kth
    }
}

impl Fold for Lp {
    const EARLY_EXIT: bool = true;
    #[inline(always)]
    fn term(self, diff: f64) -> f64 {
        diff.abs().powf(self.0)
    }
    #[inline(always)]
    fn combine(acc: f64, t: f64) -> f64 {
        acc + t
    }
    #[inline(always)]
    fn finish(self, r: f64) -> f64 {
        r.powf(1.0 / self.0)
    }
    /// `powf` is not guaranteed monotone, so unlike the other folds this one
    /// needs a margin. With `powf` relative error `<= 2eps`, a bound or partial
    /// sum can exceed the true fold of a point by `(1 + 4eps)(1 + gamma_dim)`,
    /// and `kth^p` and the final `^(1/p)` each add `2eps` (scaled by `p` when
    /// mapped back); `4 (dim + p + 4) eps` is over twice the sum of these.
    /// The final root also raises to `1/p` rounded, off by up to `eps / 2p`,
    /// which moves `r^(1/p)` by a factor `r^(eps / 2p)`: relatively
    /// `|ln r| eps / 2p`, or `p |ln kth| eps / 2` once mapped back by `^p`.
    /// At `kth` near 1e99 and `p = 3` that is 34 times the rest, and without
    /// it a row tied with the k-th distance was pruned (the oracle keeps the
    /// lower training index); `2 p |ln kth| eps` covers it four times over.
    fn limit(self, kth: f64, dim: usize) -> f64 {
        if !kth.is_finite() {
            return f64::INFINITY;
        }
        let root = 2.0 * self.0 * kth.max(f64::from_bits(1)).ln().abs();
        let margin = (4.0 * (dim as f64 + self.0 + 4.0) + root) * f64::EPSILON;
        kth.powf(self.0) * (1.0 + margin) + f64::MIN_POSITIVE
    }
}

/// Folds `term(a_i - b_i)` in index order, stopping once the accumulator
/// exceeds `limit`. With `limit = inf` this is the reference; the check never
/// changes the arithmetic, so a completed fold is bit-identical to it.
#[inline(always)]
pub(crate) fn fold_until<F: Fold>(f: F, a: &[f64], b: &[f64], limit: f64) -> f64 {
    let mut acc = 0.0;
    for (x, y) in a.iter().zip(b) {
        acc = F::combine(acc, f.term(x - y));
        if acc > limit {
            break;
        }
    }
    acc
}

/// Lower bound, in reduced space, of the fold for any point of the box
/// `[lo, hi]`: the same operations applied to the smallest possible
/// difference per dimension. `fl(q - y)` is monotone in `y`, so each term is
/// at most the point's term, and monotone `+`/`max` carry that to the fold.
/// The kd-tree uses [`box_fold2`]; this one-box form is what the tests hold
/// it to.
#[cfg(test)]
fn box_fold<F: Fold>(f: F, q: &[f64], lo: &[f64], hi: &[f64]) -> f64 {
    let mut acc = 0.0;
    for ((&x, &l), &h) in q.iter().zip(lo).zip(hi) {
        // Exactly one of these is nonzero outside the box, both are 0 inside.
        let below = x - l;
        let above = x - h;
        let below = if below < 0.0 { below } else { 0.0 };
        let above = if above > 0.0 { above } else { 0.0 };
        acc = F::combine(acc, f.term(below + above));
    }
    acc
}

/// `box_fold` (the one-box form, kept for the tests) of two boxes at once,
/// bit for bit the same, from their coordinates interleaved (`lo = [a_lo[0],
/// b_lo[0], a_lo[1], ...]`, `hi` likewise): the kd-tree bounds both children
/// of every node it visits, and two interleaved chains of dependent
/// additions, one vector lane each, run in the time of one. Branch-free
/// (selects, no early exit): data-dependent branches here mispredict.
#[inline(always)]
pub(crate) fn box_fold2<F: Fold>(f: F, q: &[f64], lo: &[f32], hi: &[f32]) -> [f64; 2] {
    let (lo, hi) = (&lo[..2 * q.len()], &hi[..2 * q.len()]);
    let mut acc = [0.0f64; 2];
    for (t, &x) in q.iter().enumerate() {
        for (c, a) in acc.iter_mut().enumerate() {
            let below = x - f64::from(lo[2 * t + c]);
            let above = x - f64::from(hi[2 * t + c]);
            let below = if below < 0.0 { below } else { 0.0 };
            let above = if above > 0.0 { above } else { 0.0 };
            *a = F::combine(*a, f.term(below + above));
        }
    }
    acc
}

/// What a scan needs from a metric: a rejection limit derived from the
/// current k-th distance, and an exact distance that may give up early.
pub(crate) trait Exact: Copy {
    fn limit_for(self, kth: f64, dim: usize) -> f64;
    /// `Some(distance(a, b))` bit for bit, or `None` only when that distance
    /// is provably greater than the `kth` that `limit` was derived from.
    fn within(self, a: &[f64], b: &[f64], limit: f64) -> Option<f64>;
}

impl<F: Fold> Exact for F {
    #[inline(always)]
    fn limit_for(self, kth: f64, dim: usize) -> f64 {
        self.limit(kth, dim)
    }
    #[inline(always)]
    fn within(self, a: &[f64], b: &[f64], limit: f64) -> Option<f64> {
        let r = fold_until(
            self,
            a,
            b,
            if F::EARLY_EXIT { limit } else { f64::INFINITY },
        );
        // A fold that stopped early ends above the limit; one that did not
        // is the complete reference fold.
        (r <= limit).then(|| self.finish(r))
    }
}

/// Cosine is not a coordinate fold, so nothing can be skipped early.
impl Exact for CosineDist {
    fn limit_for(self, _kth: f64, _dim: usize) -> f64 {
        f64::INFINITY
    }
    fn within(self, a: &[f64], b: &[f64], _limit: f64) -> Option<f64> {
        Some(cosine(a, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vecs() -> impl Strategy<Value = (Vec<f64>, Vec<f64>, Vec<f64>)> {
        (1usize..10).prop_flat_map(|d| {
            let v = prop_oneof![
                (-3i32..4).prop_map(f64::from),
                -1e3f64..1e3,
                (-2.0f64..2.0).prop_map(|x| x * 1e-160),
            ];
            (
                prop::collection::vec(v.clone(), d),
                prop::collection::vec(v.clone(), d),
                prop::collection::vec(v, d),
            )
        })
    }

    /// `rows` (row-major) in blocks (see [`BLOCK`]), the last one padded.
    fn blocked(dim: usize, rows: &[f64]) -> Vec<f64> {
        let n = rows.len() / dim;
        let mut out = vec![f64::NAN; n.div_ceil(BLOCK) * BLOCK * dim];
        for (i, row) in rows.chunks_exact(dim).enumerate() {
            for (t, &v) in row.iter().enumerate() {
                out[(i / BLOCK) * BLOCK * dim + BLOCK * t + i % BLOCK] = v;
            }
        }
        out
    }

    /// What [`fold_blocks`] reports, finished, as bits.
    fn folded<F: Fold>(f: F, q: &[f64], rows: &[f64]) -> Vec<(usize, u64)> {
        let mut seen = Vec::new();
        let n = rows.len() / q.len();
        fold_blocks(f, q, &blocked(q.len(), rows), n, |at, r| {
            seen.push((at, f.finish(r).to_bits()))
        });
        seen
    }

    fn want(metric: Metric, q: &[f64], rows: &[f64]) -> Vec<(usize, u64)> {
        let rows = rows.chunks_exact(q.len());
        rows.map(|row| distance(metric, q, row).to_bits())
            .enumerate()
            .collect()
    }

    /// Whatever kth the limit came from, rejecting a point (early exit) or a
    /// box holding it (bound above the limit) must imply its distance > kth.
    fn check<F: Fold>(f: F, metric: Metric, a: &[f64], b: &[f64], c: &[f64]) {
        let d = distance(metric, a, b);
        let lo: Vec<f64> = b.iter().zip(c).map(|(x, y)| x.min(*y)).collect();
        let hi: Vec<f64> = b.iter().zip(c).map(|(x, y)| x.max(*y)).collect();
        let bound = f.finish(box_fold(f, a, &lo, &hi));
        let prev = f64::from_bits(d.to_bits().saturating_sub(1));
        for kth in [d, prev, d * (1.0 + 1e-15), distance(metric, a, c), bound] {
            let lim = f.limit(kth, a.len());
            match f.within(a, b, lim) {
                Some(x) => assert_eq!(x.to_bits(), d.to_bits()),
                None => assert!(d > kth, "point rejected: {d} vs kth {kth}"),
            }
            if box_fold(f, a, &lo, &hi) > lim {
                assert!(d > kth, "box pruned: {d} vs kth {kth}");
            }
        }
        if !matches!(metric, Metric::Minkowski(_)) {
            assert!(bound <= d, "box bound {bound} above member {d}");
        }
    }

    proptest! {
        #[test]
        fn four_at_once_is_the_reference((a, b, c) in vecs()) {
            let rows = [&b[..], &c, &a, &b];
            for (x, row) in fold4(SqEuclid, &a, rows).iter().zip(rows) {
                let want = distance(Metric::Euclidean, &a, row);
                prop_assert_eq!(SqEuclid.finish(*x).to_bits(), want.to_bits());
            }
            for (x, row) in fold4(L1, &a, rows).iter().zip(rows) {
                prop_assert_eq!(x.to_bits(), distance(Metric::Manhattan, &a, row).to_bits());
            }
            for (x, row) in fold4(LInf, &a, rows).iter().zip(rows) {
                prop_assert_eq!(x.to_bits(), distance(Metric::Chebyshev, &a, row).to_bits());
            }
        }

        /// Every row count around the blocks and the pairs of blocks, through
        /// the AVX2 path where the CPU has it and through the portable one;
        /// the padding is NaN, so a padded lane reported would show. Rows
        /// stored in blocks, one at a time, with and without a limit.
        #[test]
        fn rows_in_blocks_are_the_reference(
            (dim, q, rows) in (1usize..14).prop_flat_map(|d| {
                let v = prop_oneof![(-3i32..4).prop_map(f64::from), -1e3f64..1e3];
                (Just(d), prop::collection::vec(v.clone(), d), prop::collection::vec(v, 0..12 * d))
            }),
            limit in 0.0f64..1e6,
        ) {
            let rows = &rows[..rows.len() / dim * dim];
            prop_assert_eq!(folded(SqEuclid, &q, rows), want(Metric::Euclidean, &q, rows));
            let mut portable = Vec::new();
            let n = rows.len() / dim;
            fold_blocks_portable(SqEuclid, &q, &blocked(dim, rows), n, |at, r| {
                portable.push((at, SqEuclid.finish(r).to_bits()));
            });
            prop_assert_eq!(portable, want(Metric::Euclidean, &q, rows));
            prop_assert_eq!(folded(L1, &q, rows), want(Metric::Manhattan, &q, rows));
            prop_assert_eq!(folded(LInf, &q, rows), want(Metric::Chebyshev, &q, rows));
            let blocks = blocked(dim, rows);
            for (i, row) in rows.chunks_exact(dim).enumerate() {
                let block = &blocks[(i / BLOCK) * BLOCK * dim..][..BLOCK * dim];
                let f = Lp(3.0);
                let got = fold_block_until(f, &q, block, i % BLOCK, limit);
                prop_assert_eq!(got.to_bits(), fold_until(f, &q, row, limit).to_bits());
            }
        }

        #[test]
        fn two_boxes_at_once_are_two_box_folds((a, b, c) in vecs()) {
            // Corners as the tree stores them, in f32.
            let narrow = |v: f64| f64::from(v as f32);
            let lo: Vec<f64> = b.iter().zip(&c).map(|(x, y)| narrow(x.min(*y))).collect();
            let hi: Vec<f64> = b.iter().zip(&c).map(|(x, y)| narrow(x.max(*y))).collect();
            // The box of `b` and `c`, and the same box stretched down to `a`.
            let around: Vec<f64> = a.iter().zip(&lo).map(|(x, y)| narrow(x.min(*y))).collect();
            let weave = |a: &[f64], b: &[f64]| -> Vec<f32> {
                a.iter().zip(b).flat_map(|(&x, &y)| [x as f32, y as f32]).collect()
            };
            for (one, two) in [(&lo, &around), (&around, &lo)] {
                let (wlo, whi) = (weave(one, two), weave(&hi, &hi));
                let [x, y] = box_fold2(SqEuclid, &a, &wlo, &whi);
                prop_assert_eq!(x.to_bits(), box_fold(SqEuclid, &a, one, &hi).to_bits());
                prop_assert_eq!(y.to_bits(), box_fold(SqEuclid, &a, two, &hi).to_bits());
                let [x, y] = box_fold2(LInf, &a, &wlo, &whi);
                prop_assert_eq!(x.to_bits(), box_fold(LInf, &a, one, &hi).to_bits());
                prop_assert_eq!(y.to_bits(), box_fold(LInf, &a, two, &hi).to_bits());
            }
        }

        #[test]
        fn limits_and_bounds_are_safe((a, b, c) in vecs()) {
            check(SqEuclid, Metric::Euclidean, &a, &b, &c);
            check(L1, Metric::Manhattan, &a, &b, &c);
            check(LInf, Metric::Chebyshev, &a, &b, &c);
            check(Lp(3.0), Metric::Minkowski(3.0), &a, &b, &c);
            check(Lp(1.5), Metric::Minkowski(1.5), &a, &b, &c);
        }
    }
}

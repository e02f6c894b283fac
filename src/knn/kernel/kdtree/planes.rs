//! The rows of a tree past the caches, stored as two planes of 32-bit
//! words.
//!
//! A query at 1M x 8 folds some 15,000 rows (64 bytes each) from a 64 MB
//! array that no cache holds, and the folds wait for those bytes more than
//! for their arithmetic; yet only 0.4-1.8% of the rows a search folds end up
//! within its limit. So a large tree keeps its `f64` values as two planes:
//! the rows' own buffer, halved, holds every value cut to an `f32` (its
//! sign, exponent and top 23 bits of mantissa: within 2^-23 of the value,
//! relatively), and a second plane every value's low 32 bits, both in the
//! blocks' order (see `metric::BLOCK`). A search folds the `f32`s alone,
//! eight rows to an AVX2 vector, against a limit widened by a proven margin
//! ([`KdTree::widen`]); a row that passes is folded again from its whole
//! values, rebuilt from both planes, with the reference's very operations,
//! so what it offers, and every answer, is bit for bit the same. The planes
//! together hold the `f64`s' bits, so the model's memory does not change.
//! (Each leaf's two halves side by side, the first layout tried, gained
//! nothing: the hardware's prefetcher, streaming through a leaf's cuts, ran
//! on into its low halves.) Trees that fit the caches keep plain blocks:
//! there the folds wait for their arithmetic, which the second folds only
//! add to (diamonds, whose 3 MB stay in cache, was 10-20% slower with an
//! `f32` scan). So do trees with a value an `f32` cannot hold the exponent
//! of (beyond 2^128 in magnitude, or below 2^-126 but not zero), which no
//! rebuilding could undo.

use super::{BLOCK, KdTree};
#[cfg(target_arch = "x86_64")]
use super::{Search, first_value};
#[cfg(target_arch = "x86_64")]
use crate::knn::kernel::metric::Fold;

/// Rows that take more bytes than this are stored split: the largest
/// last-level cache of the machines measured is 32 MB.
pub(super) const SPLIT_BYTES: usize = 32 << 20;

/// Hands the whole pages within words `from..to` after `words` back to
/// the system (their contents are dead); returns `to`.
fn free(words: *mut u32, from: usize, to: usize) -> usize {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let (start, end) = (words as usize + 4 * from, words as usize + 4 * to);
        let (start, end) = (start.div_ceil(PAGE) * PAGE, end / PAGE * PAGE);
        if end > start {
            // SAFETY: the pages lie within the rows' buffer, and nothing
            // reads them before writing them again (`split_rows`).
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (words, from);
    to
}

/// Whether `v` is zero or has an exponent an `f32` holds (see [`cut`]).
fn fits(v: f64) -> bool {
    let exponent = (v.to_bits() >> 52) & 0x7ff;
    v == 0.0 || (1023 - 126..=1023 + 127).contains(&exponent)
}

/// The bits of `v` cut to an `f32`, towards zero: its sign, its exponent
/// and the top 23 bits of its mantissa. `v` must [`fits`].
fn cut(v: f64) -> u32 {
    let bits = v.to_bits();
    let sign = ((bits >> 63) as u32) << 31;
    if v == 0.0 {
        return sign;
    }
    let exponent = ((bits >> 52) & 0x7ff) as u32 + 127 - 1023;
    sign | (exponent << 23) | ((bits >> 29) & 0x7f_ffff) as u32
}

/// The `f64` whose cut is `hi` (see [`cut`]) and whose low 32 bits are
/// `lo`: the cut gives the sign, the exponent and the top 20 bits of the
/// mantissa, which all lie in the high 32 bits; the rest is `lo`.
#[inline(always)]
pub(super) fn whole(hi: u32, lo: u32) -> f64 {
    let high = f64::from(f32::from_bits(hi)).to_bits() & !0xffff_ffff;
    f64::from_bits(high | u64::from(lo))
}

impl KdTree {
    /// Splits the rows (see the module's notes): each value's cut goes to
    /// the front of the rows' own buffer, which then shrinks to half, and
    /// its low half to a plane of its own. The cuts are written behind the
    /// values still to be read, and the words read and not yet overwritten
    /// are handed back to the system as the pass goes on, so the memory
    /// held stays that of the rows throughout.
    pub(super) fn split_rows(&mut self) {
        let n = self.data.len();
        let mut lo = Vec::with_capacity(n);
        let words = self.data.as_mut_ptr().cast::<u32>();
        let mut freed = 0;
        for i in 0..n {
            // SAFETY: value i (words 2i, 2i + 1) is read before word i is
            // written, and every word below 2i belongs to a value read
            // already; all lie within the `n` values.
            let bits = unsafe { words.cast::<u64>().add(i).read() };
            lo.push(bits as u32);
            // SAFETY: as above.
            unsafe { words.add(i).write(cut(f64::from_bits(bits))) };
            if i + 1 == n || (i + 1) % (1 << 18) == 0 {
                // Words i + 1..2i + 2 are read and not yet written.
                freed = free(words, freed.max(i + 1), 2 * (i + 1));
            }
        }
        self.data.truncate(n / 2);
        self.data.shrink_to_fit();
        self.lo = lo;
    }

    /// The rows joined back into blocks, in place but for the low halves'
    /// plane, which is freed at the end.
    pub(super) fn join_rows(&mut self) {
        let lo = std::mem::take(&mut self.lo);
        let n = lo.len();
        self.data.resize(n, 0.0);
        let words = self.data.as_mut_ptr().cast::<u32>();
        for i in (0..n).rev() {
            // SAFETY: word i is read before value i (words 2i, 2i + 1, at
            // or past i) is written, and the cuts still to be read lie
            // below i; all lie within the `n` values.
            unsafe {
                let hi = words.add(i).read();
                words.cast::<f64>().add(i).write(whole(hi, lo[i]));
            }
        }
    }

    /// Whether the rows are split (see the module's notes): only then is
    /// there a plane of low halves.
    pub(super) fn split(&self) -> bool {
        !self.lo.is_empty()
    }

    /// The blocks of `node`'s rows, joined into `scratch` where the tree is
    /// split.
    pub(super) fn node_blocks<'s>(&'s self, node: usize, scratch: &'s mut Vec<f64>) -> &'s [f64] {
        let n = self.nodes[node];
        let range = self.block_range(n.start as usize, n.end as usize);
        if !self.split() {
            return &self.data[range];
        }
        scratch.clear();
        self.join(range, scratch);
        scratch
    }

    /// The values `range` of the blocks (of every stored row: see
    /// `KdTree::data`), joined from the planes where the tree is split,
    /// appended to `out`.
    pub(super) fn join(&self, range: std::ops::Range<usize>, out: &mut Vec<f64>) {
        if self.split() {
            let (hi, lo) = (&self.cuts()[range.clone()], &self.lo[range]);
            out.extend(hi.iter().zip(lo).map(|(&h, &l)| whole(h, l)));
        } else {
            out.extend_from_slice(&self.data[range]);
        }
    }

    /// Asks the cache for the cuts of a split tree's leaf `node` (trees
    /// that are not split fit the caches).
    pub(super) fn fetch_leaf(&self, node: usize) {
        let n = self.nodes[node];
        let range = self.block_range(n.start as usize, n.end as usize);
        let cuts = &self.cuts()[range];
        #[cfg(target_arch = "x86_64")]
        for line in (0..cuts.len()).step_by(16) {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            // SAFETY: a prefetch reads nothing; the address lies within
            // the cuts.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(cuts.as_ptr().wrapping_add(line).cast()) };
        }
    }

    /// A split tree's cuts, in the blocks' order.
    fn cuts(&self) -> &[u32] {
        // SAFETY: the same memory, twice as many elements of half the size
        // and alignment; every bit pattern is a valid `u32`.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr().cast::<u32>(), 2 * self.data.len()) }
    }

    /// The cuts and low halves of a split tree's stored rows `start..end`
    /// (`start` at a block's start), indexed as [`KdTree::blocks`]' values.
    pub(super) fn planes(&self, start: usize, end: usize) -> (&[u32], &[u32]) {
        let range = self.block_range(start, end);
        (&self.cuts()[range.clone()], &self.lo[range])
    }

    /// Value `at` of the blocks, joined from the planes where the tree is
    /// split.
    #[inline]
    pub(super) fn value(&self, at: usize) -> f64 {
        if self.split() {
            whole(self.cuts()[at], self.lo[at])
        } else {
            self.data[at]
        }
    }

    /// The most a row's `f32` fold can come to when its exact fold is
    /// within `limit` (both squared Euclidean, reduced), for a query whose
    /// own `f32`s lie within `near` of it ([`query_slack`]), rounded up to
    /// an `f32`.
    ///
    /// With D and D' the true distances from the query to a row and from the
    /// query's `f32`s to the row's, |D' - D| <= `slack + near`. An `f64`
    /// fold of d terms is within a factor 1 +- g of the true square, g >=
    /// 2 (d + 2) 2^-53, plus d underflows of 2^-1074 at most, and an `f32`
    /// one within 1 + h, h >= 2 (d + 2) 2^-24, plus d of 2^-149. So an
    /// exact fold e <= L means D <= sqrt((L + tiny)(1 + g)), and the `f32`
    /// fold is at most (1 + h)(that + slack + near)^2 plus its underflows;
    /// the last factor covers this function's own roundings. Infinite where
    /// that passes the `f32`s: every row is then folded exactly.
    #[inline]
    #[cfg_attr(not(target_arch = "x86_64"), expect(dead_code))]
    pub(super) fn widen(&self, limit: f64, near: f64) -> f32 {
        // 2^-1070 and 2^-147, from their bits.
        const UNDER64: f64 = f64::from_bits(1 << 4);
        const UNDER32: f64 = f64::from_bits((1023 - 147) << 52);
        let d = self.dim as f64;
        let g = (2.0 * d + 8.0) * f64::EPSILON;
        let h = (4.0 * d + 16.0) * f64::from(f32::EPSILON);
        let r = ((limit + d * UNDER64) * (1.0 + g)).sqrt() + self.slack + near;
        let w = (r * r * (1.0 + h) + d * UNDER32) * (1.0 + 1e-12);
        // `w` is never NaN: `limit` is a fold's or infinite.
        let up = w as f32;
        if w >= f64::from(f32::MAX) {
            f32::INFINITY
        } else if f64::from(up) < w {
            up.next_up()
        } else {
            up
        }
    }
}

/// How far a tree's rows cut to `f32`s lie from the rows (see
/// [`KdTree::widen`]): 2^-23 of the norm of each dimension's largest
/// magnitude, rounded up; `None` where a value does not [`fits`].
pub(super) fn slack(rows: &[f64], dim: usize) -> Option<f64> {
    let mut most = vec![0.0f64; dim];
    for row in rows.chunks_exact(dim) {
        for (m, &v) in most.iter_mut().zip(row) {
            if !fits(v) {
                return None;
            }
            *m = m.max(v.abs());
        }
    }
    let norm = most.iter().map(|m| m * m).sum::<f64>().sqrt();
    Some(norm * 2f64.powi(-23) * (1.0 + 1e-9))
}

/// How far `q` rounded to `f32`s lies from `q`: 2^-24 of its norm and
/// 2^-150 a dimension (subnormal `f32`s), rounded up; infinite where a
/// coordinate rounds to an infinite `f32`. Its `f32`s go into `q32`.
#[cfg_attr(not(target_arch = "x86_64"), expect(dead_code))]
pub(super) fn query_slack(q: &[f64], q32: &mut Vec<f32>) -> f64 {
    q32.clear();
    q32.extend(q.iter().map(|&v| v as f32));
    if q32.iter().any(|v| v.is_infinite()) {
        return f64::INFINITY;
    }
    let norm = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    (norm * 2f64.powi(-24) + q.len() as f64 * 2f64.powi(-150)) * (1.0 + 1e-9)
}

#[cfg(target_arch = "x86_64")]
impl<F: Fold> Search<'_, F> {
    /// A split leaf's rows `start..end` for a lone query: the `f32` cuts
    /// folded eight rows to an AVX2 vector against the widened limit; a row
    /// that passes is folded again from its whole values
    /// ([`Search::recheck`]) and offered as a whole-row scan would offer it.
    ///
    /// The rechecks wait until the whole leaf is folded, with the passing
    /// rows' low halves asked for as they pass ([`fetch_low`]): those lie
    /// in a plane no cache holds, and a recheck at once stalled on each
    /// (12% faster at 1M x 8, one thread). The offers are the same: the
    /// rows are rechecked in the same order, each against the exact limit
    /// of its turn; the leaf's rows are only tested against the limit
    /// widened at its start, looser than a later one, which lets more rows
    /// through to the exact test, never fewer.
    ///
    /// # Safety
    /// The CPU must support AVX2, and `F` must square (`Search::cuts`).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn leaf_split(&mut self, q: &[f64], start: usize, end: usize) {
        use std::arch::x86_64::*;
        let tree = self.tree;
        let planes = tree.planes(start, end);
        let (hi, n) = (planes.0, end - start);
        let wide = tree.widen(self.limit, self.near);
        let mut passed = std::mem::take(&mut self.passed);
        passed.clear();
        for at in (0..n).step_by(2 * BLOCK) {
            let (a, b) = blocks8(hi, q.len(), at, n);
            let mut acc = _mm256_setzero_ps();
            for (t, &x) in self.q32.iter().enumerate() {
                // SAFETY: the caller's promise; `t < dim`.
                let y = unsafe { cut8(a, b, t) };
                let d = _mm256_sub_ps(_mm256_set1_ps(x), y);
                acc = _mm256_add_ps(acc, _mm256_mul_ps(d, d));
            }
            let rows = (n - at).min(2 * BLOCK);
            let passing = _mm256_cmp_ps::<_CMP_LE_OQ>(acc, _mm256_set1_ps(wide));
            let mut pass = _mm256_movemask_ps(passing) as u32 & ((1 << rows) - 1);
            while pass != 0 {
                let r = at + pass.trailing_zeros() as usize;
                pass &= pass - 1;
                fetch_low(planes.1, q.len(), r);
                passed.push(r as u32);
            }
        }
        for &r in &passed {
            self.recheck(q, planes, (start, r as usize));
        }
        self.passed = passed;
    }

    /// Folds row `r` of the split leaf at stored row `start` (its `planes`)
    /// from its whole values, with the reference's operations in its order
    /// (`q - x`, square, add: the same bits as a whole-row scan), and offers
    /// it if within the limit.
    #[inline(always)]
    pub(super) fn recheck(
        &mut self,
        q: &[f64],
        (hi, lo): (&[u32], &[u32]),
        (start, r): (usize, usize),
    ) {
        let at = first_value(r, q.len());
        let mut e = 0.0;
        for (t, &x) in q.iter().enumerate() {
            let d = x - whole(hi[at + BLOCK * t], lo[at + BLOCK * t]);
            e += d * d;
        }
        if e <= self.limit {
            self.offer(e, self.tree.ids[start + r]);
        }
    }
}

/// Asks the cache for the low halves of row `r` of a split leaf (its
/// plane `lo`), which [`Search::recheck`] reads once the leaf's cuts are
/// folded: a value of every 64-byte line the row's values span.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn fetch_low(lo: &[u32], dim: usize, r: usize) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    let at = first_value(r, dim);
    for t in (0..dim).step_by(16 / BLOCK).chain([dim - 1]) {
        // SAFETY: a prefetch reads nothing; the address lies within `lo`.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(lo.as_ptr().wrapping_add(at + BLOCK * t).cast()) };
    }
}

/// The blocks of cuts of a split leaf's rows `at..at + 8` (`at` a multiple
/// of 8, `n` rows in the leaf): block `at / 4`, then the next one, or the
/// same again past the leaf's last rows (whose lanes the caller masks off).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn blocks8(hi: &[u32], dim: usize, at: usize, n: usize) -> (&[u32], &[u32]) {
    let width = BLOCK * dim;
    let a = &hi[at / BLOCK * width..][..width];
    let b = if at + BLOCK < n {
        &hi[at / BLOCK * width + width..][..width]
    } else {
        a
    };
    (a, b)
}

/// Value `t`'s cuts in the blocks `a` and `b` ([`blocks8`]), as eight
/// `f32`s.
///
/// # Safety
/// The CPU must support AVX2, and `t` must be below the rows' `dim`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn cut8(a: &[u32], b: &[u32], t: usize) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    debug_assert!(BLOCK * (t + 1) <= a.len().min(b.len()));
    // SAFETY: blocks hold `BLOCK * dim` words, and `t < dim`.
    unsafe {
        _mm256_set_m128(
            _mm_loadu_ps(b.as_ptr().add(BLOCK * t).cast()),
            _mm_loadu_ps(a.as_ptr().add(BLOCK * t).cast()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every value an `f32` holds the exponent of comes back bit for
        /// bit from its cut and low half, and its cut lies within 2^-23 of
        /// it, towards zero; a value that does not fit keeps the tree whole.
        #[test]
        fn cuts_and_low_halves_hold_the_values(values in prop::collection::vec(
            prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO, 1..64)) {
            let fitting: Vec<f64> = values.iter().copied().filter(|&v| fits(v)).collect();
            prop_assert_eq!(slack(&values, 1).is_some(), fitting.len() == values.len());
            for &v in &fitting {
                prop_assert_eq!(whole(cut(v), v.to_bits() as u32).to_bits(), v.to_bits());
                let c = f64::from(f32::from_bits(cut(v)));
                prop_assert!(c.abs() <= v.abs() && (v - c).abs() <= v.abs() * 2f64.powi(-23));
            }
        }
    }
}

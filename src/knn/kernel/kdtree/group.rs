//! Four neighbouring queries searched as one, a query per AVX2 lane.
//!
//! Queries are answered in leaf order (see `KdTree::locality_order`), so
//! consecutive ones visit nearly the same nodes. Searched one at a time, each
//! query pays for every box bound and every leaf row on its own. Searched
//! four at a time, one vector operation serves the four: a coordinate of a
//! box or of a row (from its block, see `metric::BLOCK`) is broadcast against
//! the four queries' coordinates, which lie in a vector already. Each lane
//! keeps its own seed, heap and limit, and a node is entered for the lanes
//! whose bound passes their own limit, so what each query admits and prunes
//! is decided as in its own search; per lane the operations are the
//! reference's (`q - x`, square, add, in dimension order, never fused), so
//! every bit of every answer is the same.
//!
//! Where the CPU has AVX-512F, a leaf is folded eight rows (two blocks) a
//! vector, one vector per lane, instead of two rows for the four lanes:
//! the same operations per lane and row, in half the instructions (diamonds
//! 4-5% faster on Zen 4, which runs a 512-bit operation as two 256-bit
//! halves; the box bounds done likewise gained nothing measurable).
//!
//! Lanes part where their queries' neighbourhoods differ, and a lane left on
//! its own in a subtree searches it as a lone query once the group is done
//! ([`Four::alone`]): a row folded for one lane of four costs several lone
//! folds, whose kernel fills its vectors with four rows instead. So groups
//! never cost much more than their queries searched one by one, and every
//! call uses them.

use std::arch::x86_64::*;

use super::{BLOCK, KdTree, LANES, Search, planes};
use crate::knn::kernel::metric::{Fold, Points};
use crate::knn::kernel::select::Neighbors;

pub(super) struct Four<'t, F> {
    tree: &'t KdTree,
    /// Each query's own seed, heap and limit.
    lanes: [Search<'t, F>; LANES],
    /// The group's queries, dimension-major: `q[LANES * t + j]` is query j's
    /// coordinate t.
    q: Vec<f64>,
    /// The same queries row by row, for a lane that goes on alone.
    rows: Vec<f64>,
    /// Whether leaves are folded with AVX-512F ([`Four::leaf_wide`]).
    wide: bool,
    /// The group's queries in `f32`s, laid out as `q`, for a split tree
    /// (see `planes`).
    q32: Vec<f32>,
    /// A split leaf's rows that passed a lane's `f32` fold, as (lane,
    /// row), rechecked once the leaf's cuts are folded (see
    /// `Search::leaf_split`).
    passed: Vec<(u32, u32)>,
}

impl<'t, F: Fold> Four<'t, F> {
    pub(super) fn new(tree: &'t KdTree, f: F, k: usize) -> Self {
        Four::with_width(tree, f, k, std::arch::is_x86_feature_detected!("avx512f"))
    }

    /// `wide` only where the CPU has AVX-512F.
    fn with_width(tree: &'t KdTree, f: F, k: usize, wide: bool) -> Self {
        Four {
            tree,
            lanes: std::array::from_fn(|_| Search::new(tree, f, k)),
            q: vec![0.0; LANES * tree.dim],
            rows: vec![0.0; LANES * tree.dim],
            wide,
            q32: vec![0.0; LANES * tree.dim],
            passed: Vec::new(),
        }
    }

    /// Answers `chunk` (one to four of `queries`' rows) into `out`.
    ///
    /// # Safety
    /// The CPU must support AVX2, and `F` must be the squared Euclidean fold
    /// (`F::SQUARES`), whose operations the lanes reproduce.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn answer(&mut self, queries: Points, chunk: &[usize], out: &mut Neighbors) {
        debug_assert!(F::SQUARES && (1..=LANES).contains(&chunk.len()));
        for (j, lane) in self.lanes.iter_mut().enumerate() {
            // Idle lanes repeat the last query; their mask bit stays clear.
            let row = queries.row(chunk[j.min(chunk.len() - 1)]);
            let dim = row.len();
            self.rows[j * dim..(j + 1) * dim].copy_from_slice(row);
            for (t, &x) in row.iter().enumerate() {
                self.q[LANES * t + j] = x;
                self.q32[LANES * t + j] = x as f32;
            }
            if j < chunk.len() {
                lane.seed(row);
            }
        }
        // SAFETY: the caller's promise, passed on.
        unsafe { self.visit(0, (1 << chunk.len()) - 1) };
        self.alone(chunk.len());
        for (lane, &qi) in self.lanes.iter_mut().zip(chunk) {
            out.store(qi, &mut lane.top);
        }
    }

    /// Searches the subtrees the group left each of its first `lanes`
    /// queries alone, the queries in turn, a leaf each: a lone search waits
    /// on memory at each leaf it reaches (sub-leaf boxes that cut the rows
    /// it folds five times left its time as it was), so each query's next
    /// leaf is asked of the cache while the others scan theirs. Each query
    /// searches its own subtrees depth first, so its answer is its own.
    fn alone(&mut self, lanes: usize) {
        let tree = self.tree;
        let dim = tree.dim;
        let mut next = [None; LANES];
        let mut live = (1u32 << lanes) - 1;
        for lane in &mut self.lanes[..lanes] {
            let deferred = lane.deferred.drain(..).rev();
            lane.stack.extend(deferred.map(|n| (n, f64::NEG_INFINITY)));
        }
        while live != 0 {
            for (j, lane) in self.lanes.iter_mut().enumerate().take(lanes) {
                if live & (1 << j) == 0 {
                    continue;
                }
                let q = &self.rows[j * dim..(j + 1) * dim];
                if let Some(leaf) = next[j].take() {
                    lane.scan(q, leaf);
                }
                next[j] = lane.next_leaf(q);
                match next[j] {
                    Some(leaf) if tree.split() => tree.fetch_leaf(leaf),
                    Some(_) => {}
                    None => live &= !(1 << j),
                }
            }
        }
    }

    /// The lanes' limits, one per lane.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn limits(&self) -> __m256d {
        let l = &self.lanes;
        _mm256_set_pd(l[3].limit, l[2].limit, l[1].limit, l[0].limit)
    }

    /// Searches the subtree at `node` for the lanes set in `mask`.
    #[target_feature(enable = "avx2")]
    unsafe fn visit(&mut self, node: usize, mut mask: u32) {
        let tree = self.tree;
        let n = tree.nodes[node];
        for (j, lane) in self.lanes.iter().enumerate() {
            if mask & (1 << j) != 0 && lane.seeded_over(n) {
                mask &= !(1 << j);
            }
        }
        if mask == 0 {
            return;
        }
        // A lane left on its own searches on as a lone query (see the
        // module's notes): on diamonds, 45% of the rows groups folded had
        // served one lane; on sparse uniform queries, 75%.
        if mask.count_ones() == 1 {
            self.lanes[mask.trailing_zeros() as usize]
                .deferred
                .push(node as u32);
            return;
        }
        if n.right == 0 {
            let (start, end) = (n.start as usize, n.end as usize);
            if tree.split() {
                // SAFETY: the caller's promise, passed on.
                unsafe { self.leaf_split(start, end, mask) };
            } else if self.wide {
                // SAFETY: AVX-512F is present (`wide`, see `with_width`).
                unsafe { self.leaf_wide(start, end, mask) };
            } else {
                // SAFETY: the caller's promise, passed on.
                unsafe { self.leaf(start, end, mask) };
            }
            return;
        }
        let (l, r) = (node + 1, n.right as usize);
        // SAFETY: the caller's promise, passed on.
        let (bl, br) = unsafe { self.bounds(node) };
        // Nearer child first, as most of the lanes see it.
        let right_nearer = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_LT_OQ>(br, bl)) as u32 & mask;
        let ((a, ba), (b, bb)) = if 2 * right_nearer.count_ones() > mask.count_ones() {
            ((r, br), (l, bl))
        } else {
            ((l, bl), (r, br))
        };
        // A lane enters a child whose bound is not above its limit (bounds are
        // never NaN), the second child with the limit the first left.
        let passing = |bound: __m256d, limits: __m256d| {
            mask & !(_mm256_movemask_pd(_mm256_cmp_pd::<_CMP_GT_OQ>(bound, limits)) as u32)
        };
        let first = passing(ba, self.limits());
        if first != 0 {
            // SAFETY: the caller's promise, passed on.
            unsafe { self.visit(a, first) };
        }
        let second = passing(bb, self.limits());
        if second != 0 {
            // SAFETY: the caller's promise, passed on.
            unsafe { self.visit(b, second) };
        }
    }

    /// Each lane's box bounds of an inner node's two children: `box_fold2`'s
    /// values, lane by lane.
    ///
    /// A lane's distance to a box side is `max(lo - x, x - hi, 0)`: where
    /// the reference keeps `x - lo` (below the box) this is its negation,
    /// exactly, so the squares are the same bits. The boxes of two
    /// dimensions come in one load, widened to `f64` at once.
    #[target_feature(enable = "avx2")]
    unsafe fn bounds(&self, node: usize) -> (__m256d, __m256d) {
        let tree = self.tree;
        let dim = tree.dim;
        let at = tree.nodes[node].kids as usize * 4 * dim;
        let (lo, hi) = tree.kids[at..at + 4 * dim].split_at(2 * dim);
        let zero = _mm256_setzero_pd();
        let term = |x: __m256d, lo: __m256d, hi: __m256d| {
            let d = _mm256_max_pd(
                _mm256_max_pd(_mm256_sub_pd(lo, x), _mm256_sub_pd(x, hi)),
                zero,
            );
            _mm256_mul_pd(d, d)
        };
        let q = self.q.as_ptr();
        let (mut left, mut right) = (zero, zero);
        let mut t = 0;
        while t + 2 <= dim {
            // SAFETY: `lo` and `hi` hold `2 * dim` values, `q` holds
            // `LANES * dim`.
            let (lo, hi, x, y) = unsafe {
                (
                    _mm256_cvtps_pd(_mm_loadu_ps(lo.as_ptr().add(2 * t))),
                    _mm256_cvtps_pd(_mm_loadu_ps(hi.as_ptr().add(2 * t))),
                    _mm256_loadu_pd(q.add(LANES * t)),
                    _mm256_loadu_pd(q.add(LANES * (t + 1))),
                )
            };
            // Lanes of `lo` and `hi`: left child's then right child's side,
            // dimension t, then the same for t + 1; each broadcast in turn.
            let (l0, h0) = (
                _mm256_permute4x64_pd::<0b00_00_00_00>(lo),
                _mm256_permute4x64_pd::<0b00_00_00_00>(hi),
            );
            let (l1, h1) = (
                _mm256_permute4x64_pd::<0b01_01_01_01>(lo),
                _mm256_permute4x64_pd::<0b01_01_01_01>(hi),
            );
            let (l2, h2) = (
                _mm256_permute4x64_pd::<0b10_10_10_10>(lo),
                _mm256_permute4x64_pd::<0b10_10_10_10>(hi),
            );
            let (l3, h3) = (
                _mm256_permute4x64_pd::<0b11_11_11_11>(lo),
                _mm256_permute4x64_pd::<0b11_11_11_11>(hi),
            );
            left = _mm256_add_pd(left, term(x, l0, h0));
            right = _mm256_add_pd(right, term(x, l1, h1));
            left = _mm256_add_pd(left, term(y, l2, h2));
            right = _mm256_add_pd(right, term(y, l3, h3));
            t += 2;
        }
        if t < dim {
            // SAFETY: as above.
            let x = unsafe { _mm256_loadu_pd(q.add(LANES * t)) };
            let wide = |v: f32| _mm256_set1_pd(f64::from(v));
            left = _mm256_add_pd(left, term(x, wide(lo[2 * t]), wide(hi[2 * t])));
            right = _mm256_add_pd(right, term(x, wide(lo[2 * t + 1]), wide(hi[2 * t + 1])));
        }
        (left, right)
    }

    /// Folds the stored rows `start..end` for the lanes in `mask`, offering
    /// each lane the rows not above its limit.
    #[target_feature(enable = "avx2")]
    unsafe fn leaf(&mut self, start: usize, end: usize, mask: u32) {
        let dim = self.tree.dim;
        let width = BLOCK * dim;
        let blocks = self.tree.blocks(start, end);
        let ids = &self.tree.ids[start..end];
        let q = self.q.as_ptr();
        let mut limits = self.limits();
        // Two rows at a time, both in one block (`start` is a block's
        // start): their chains of dependent additions overlap.
        let mut at = 0;
        while at < ids.len() {
            let pair = at + 1 < ids.len();
            let block = &blocks[at / BLOCK * width..][..width];
            // Row `at`'s values, then the next row's (or the same again).
            let a = block[at % BLOCK..].as_ptr();
            let b = block[(at + usize::from(pair)) % BLOCK..].as_ptr();
            let (mut fa, mut fb) = (_mm256_setzero_pd(), _mm256_setzero_pd());
            for t in 0..dim {
                // SAFETY: `q` holds `LANES * dim` values; a row's value t
                // lies `BLOCK * t < width` past its first, within `block`.
                let (x, ya, yb) = unsafe {
                    (
                        _mm256_loadu_pd(q.add(LANES * t)),
                        _mm256_broadcast_sd(&*a.add(BLOCK * t)),
                        _mm256_broadcast_sd(&*b.add(BLOCK * t)),
                    )
                };
                let (da, db) = (_mm256_sub_pd(x, ya), _mm256_sub_pd(x, yb));
                fa = _mm256_add_pd(fa, _mm256_mul_pd(da, da));
                fb = _mm256_add_pd(fb, _mm256_mul_pd(db, db));
            }
            let above = |acc| _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_GT_OQ>(acc, limits)) as u32;
            let (oa, ob) = (mask & !above(fa), if pair { mask & !above(fb) } else { 0 });
            if oa | ob != 0 {
                // SAFETY: the caller's promise, passed on. The first row may
                // have lowered a limit that the second then passed: its heap
                // still refuses it.
                unsafe {
                    self.offer(fa, oa, ids[at]);
                    if pair {
                        self.offer(fb, ob, ids[at + 1]);
                    }
                }
                limits = self.limits();
            }
            at += 2;
        }
    }

    /// [`Four::leaf`] eight rows at a time: one AVX-512 vector per lane
    /// holds a lane's folds to two blocks' rows, so a value of the rows is
    /// loaded once for the four lanes and each lane's query coordinate is
    /// broadcast against it.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, and `F` must square (see `answer`).
    #[target_feature(enable = "avx512f")]
    unsafe fn leaf_wide(&mut self, start: usize, end: usize, mask: u32) {
        let dim = self.tree.dim;
        let width = BLOCK * dim;
        let blocks = self.tree.blocks(start, end);
        let n = end - start;
        let q = self.q.as_ptr();
        for at in (0..n).step_by(2 * BLOCK) {
            // Rows `at..at + 8`: block `a`, then block `b`, or `a` again
            // where `a` holds the last rows (its copies are masked off).
            let a = &blocks[at / BLOCK * width..][..width];
            let b = if at + BLOCK < n {
                &blocks[at / BLOCK * width + width..][..width]
            } else {
                a
            };
            let mut acc = [_mm512_setzero_pd(); LANES];
            for t in 0..dim {
                // SAFETY: `a` and `b` hold `width = BLOCK * dim` values, `q`
                // holds `LANES * dim`.
                let (y, x) = unsafe {
                    let y = _mm512_insertf64x4::<1>(
                        _mm512_castpd256_pd512(_mm256_loadu_pd(a.as_ptr().add(BLOCK * t))),
                        _mm256_loadu_pd(b.as_ptr().add(BLOCK * t)),
                    );
                    (y, q.add(LANES * t))
                };
                for (j, acc) in acc.iter_mut().enumerate() {
                    // `y - x` is `-(x - y)` exactly: the same square.
                    // SAFETY: `j < LANES`.
                    let d = _mm512_sub_pd(y, _mm512_set1_pd(unsafe { *x.add(j) }));
                    *acc = _mm512_add_pd(*acc, _mm512_mul_pd(d, d));
                }
            }
            let rows = (n - at).min(2 * BLOCK);
            let valid = ((1u32 << rows) - 1) as u8;
            let mut lanes = mask;
            while lanes != 0 {
                let j = lanes.trailing_zeros() as usize;
                lanes &= lanes - 1;
                let limit = _mm512_set1_pd(self.lanes[j].limit);
                // Not above the limit (folds are never NaN), as in `leaf`.
                let mut pass = _mm512_cmp_pd_mask::<_CMP_LE_OQ>(acc[j], limit) & valid;
                if pass == 0 {
                    continue;
                }
                let mut folds = [0.0; 2 * BLOCK];
                // SAFETY: `folds` holds eight values.
                unsafe { _mm512_storeu_pd(folds.as_mut_ptr(), acc[j]) };
                let ids = &self.tree.ids[start + at..];
                while pass != 0 {
                    let r = pass.trailing_zeros() as usize;
                    pass &= pass - 1;
                    self.lanes[j].offer(folds[r], ids[r]);
                }
            }
        }
    }

    /// [`Four::leaf`] on a split tree's leaf (see `planes`): the `f32` cuts
    /// folded eight rows to a vector for each lane, each lane's passing rows
    /// folded again from their whole values and offered.
    ///
    /// # Safety
    /// The CPU must support AVX2, and `F` must square (see `answer`).
    #[target_feature(enable = "avx2")]
    unsafe fn leaf_split(&mut self, start: usize, end: usize, mask: u32) {
        let tree = self.tree;
        let dim = tree.dim;
        let planes = tree.planes(start, end);
        let (hi, n) = (planes.0, end - start);
        let mut wide = [0.0f32; LANES];
        for (w, lane) in wide.iter_mut().zip(&self.lanes) {
            *w = tree.widen(lane.limit, lane.near);
        }
        let mut passed = std::mem::take(&mut self.passed);
        passed.clear();
        for at in (0..n).step_by(2 * BLOCK) {
            let (a, b) = planes::blocks8(hi, dim, at, n);
            let q = self.q32.as_ptr();
            let mut acc = [_mm256_setzero_ps(); LANES];
            for t in 0..dim {
                // SAFETY: the caller's promise; `t < dim`.
                let y = unsafe { planes::cut8(a, b, t) };
                for (j, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: `q32` holds `LANES * dim` values.
                    let x = unsafe { *q.add(LANES * t + j) };
                    let d = _mm256_sub_ps(_mm256_set1_ps(x), y);
                    *acc = _mm256_add_ps(*acc, _mm256_mul_ps(d, d));
                }
            }
            let rows = (n - at).min(2 * BLOCK);
            let mut lanes = mask;
            while lanes != 0 {
                let j = lanes.trailing_zeros() as usize;
                lanes &= lanes - 1;
                let passing = _mm256_cmp_ps::<_CMP_LE_OQ>(acc[j], _mm256_set1_ps(wide[j]));
                let mut pass = _mm256_movemask_ps(passing) as u32 & ((1 << rows) - 1);
                while pass != 0 {
                    let r = at + pass.trailing_zeros() as usize;
                    pass &= pass - 1;
                    planes::fetch_low(planes.1, dim, r);
                    passed.push((j as u32, r as u32));
                }
            }
        }
        for &(j, r) in &passed {
            let j = j as usize;
            let row = &self.rows[j * dim..(j + 1) * dim];
            self.lanes[j].recheck(row, planes, (start, r as usize));
        }
        self.passed = passed;
    }

    /// Offers row `id`, at the folds `acc`, to the lanes in `offer`.
    #[target_feature(enable = "avx2")]
    unsafe fn offer(&mut self, acc: __m256d, mut offer: u32, id: u32) {
        if offer == 0 {
            return;
        }
        let mut folds = [0.0; LANES];
        // SAFETY: `folds` holds four values.
        unsafe { _mm256_storeu_pd(folds.as_mut_ptr(), acc) };
        while offer != 0 {
            let j = offer.trailing_zeros() as usize;
            offer &= offer - 1;
            self.lanes[j].offer(folds[j], id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knn::kernel::brute::brute_knn;
    use crate::knn::kernel::kdtree::tests::matrix;
    use crate::knn::kernel::metric::{Metric, SqEuclid};
    use proptest::prelude::*;

    proptest! {
        /// Every lane's bounds are the one-query search's, bit for bit, at
        /// every inner node: a bound that came out higher could prune a row
        /// the oracle keeps.
        #[test]
        fn lane_bounds_are_the_searchs(
            (rows, dim, train, queries) in (2usize..120, 1usize..8)
                .prop_flat_map(|(r, d)| (Just(r), Just(d), matrix(r, d), matrix(4, d))),
            leaf in 1usize..8,
        ) {
            prop_assume!(std::arch::is_x86_feature_detected!("avx2"));
            let tree = KdTree::build(train, rows, dim, leaf);
            let mut four = Four::new(&tree, SqEuclid, 1);
            for (j, q) in queries.chunks_exact(dim).enumerate() {
                for (t, &x) in q.iter().enumerate() {
                    four.q[LANES * t + j] = x;
                }
            }
            for node in (0..tree.nodes.len()).filter(|&n| tree.nodes[n].right != 0) {
                // SAFETY: AVX2 is present (assumed above).
                let (l, r) = unsafe { four.bounds(node) };
                let (mut left, mut right) = ([0.0; LANES], [0.0; LANES]);
                // SAFETY: each array holds four values.
                unsafe {
                    _mm256_storeu_pd(left.as_mut_ptr(), l);
                    _mm256_storeu_pd(right.as_mut_ptr(), r);
                }
                for (j, q) in queries.chunks_exact(dim).enumerate() {
                    let [bl, br] = tree.kid_bounds(SqEuclid, q, node);
                    prop_assert_eq!((left[j].to_bits(), right[j].to_bits()), (bl.to_bits(), br.to_bits()));
                }
            }
        }

        /// Whether `run` keeps groups depends on the data, so the lanes are
        /// held to the oracle here directly: full groups in any order of the
        /// queries, and a group of one.
        #[test]
        fn four_lanes_answer_as_the_oracle(
            (rows, dim, train, queries) in (1usize..200, 1usize..8)
                .prop_flat_map(|(r, d)| (Just(r), Just(d), matrix(r, d), matrix(9, d))),
            k in 1usize..150,
            leaf in 1usize..20,
        ) {
            prop_assume!(std::arch::is_x86_feature_detected!("avx2"));
            let k = k.min(rows);
            let (tp, qp) = (Points::new(&train, rows, dim), Points::new(&queries, 9, dim));
            let expected = brute_knn(tp, qp, k, Metric::Euclidean);
            // Leaves folded with AVX2, and with AVX-512F where present, from
            // whole rows and from split ones (see `planes`).
            let wide = std::arch::is_x86_feature_detected!("avx512f");
            for split in [false, true] {
                let tree = KdTree::build_split(train.clone(), rows, dim, leaf, split);
                for wide in [false, wide] {
                    let mut four = Four::with_width(&tree, SqEuclid, k, wide);
                    let mut got = Neighbors::for_call(tp, qp, k);
                    for chunk in [&[3, 1, 4, 0][..], &[2, 8, 6, 5], &[7]] {
                        // SAFETY: AVX2 is present (assumed above), AVX-512F
                        // where `wide`; the fold is SqEuclid.
                        unsafe { four.answer(qp, chunk, &mut got) };
                    }
                    prop_assert_eq!(&got, &expected, "wide: {}, split: {}", wide, split);
                }
            }
        }
    }
}

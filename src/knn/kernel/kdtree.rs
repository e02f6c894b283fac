//! Exact kd-tree k-NN.
//!
//! The tree owns the training rows, stored in leaf order: a leaf is a
//! contiguous run of rows, so scanning it streams memory instead of gathering
//! rows scattered through the matrix. The rows lie in blocks of four,
//! dimension by dimension (see [`BLOCK`]), and every node starts at a block,
//! so a leaf's folds load a dimension of four rows at once. Each stored row
//! keeps its original training index, which is what results report and what
//! ties are broken by, so the layout never shows.
//!
//! Exactness: a node is pruned only when its box bound is strictly above the
//! reduced limit of the current k-th distance. For Euclidean, Manhattan and
//! Chebyshev the bound is computed with the very operations of the reference
//! on per-dimension minimal differences, and IEEE rounding is monotone, so it
//! is a true lower bound of every member's *computed* distance: no epsilon
//! guard is needed. Minkowski's `powf` carries an explicit margin instead
//! (see `Lp::limit`).

use super::brute::Brute;
#[cfg(test)]
use super::brute::brute_knn;
use super::metric::{
    BLOCK, Fold, L1, LInf, Lp, Metric, Points, SqEuclid, box_fold2, fold_block_until, fold_blocks,
};
use super::select::{Neighbors, TopK, entry, order_bits};

#[cfg(target_arch = "x86_64")]
mod group;
mod planes;

/// Above this average share of training rows scanned per query, Euclidean
/// brute force wins: its GEMM-bound cost per pair is far below a tree's exact
/// scan. Checked again after both kernels learnt to seed their top k
/// (2026-11-26, k = 100, 2 threads): King County (d = 18, hands off) tree
/// 0.39 s vs brute force 0.07 s; diamonds (d = 9, keeps the tree) 0.21 s vs
/// 0.26 s. Leaves of 64 rows instead of 30 scan 1.3-2x the rows at a lower
/// cost a row; diamonds then scans 8.2% (6.2% before) and still keeps the
/// tree, as it should (0.107 s against brute force's 0.18 s).
const BRUTE_SHARE: f64 = 0.1;
/// Queries of a call sampled to measure that share: they are answered
/// anyway, unless the tree hands the call off.
const SAMPLE: usize = 16;
/// Training rows the fit asks the tree for, as queries, to measure that
/// share once for all calls ([`KdTree::prefers_brute`]). Diamonds' training
/// rows scan 8.2-8.5% of the rows (4,096 of them asked); 16 rows measured
/// 9.8% and 10.6% (two picks), and sent `Auto` to brute force, 1.7x slower
/// there; 64 rows 7.3% and 8.0%, 256 rows 8.4% and 8.5%. At most a few
/// milliseconds of the fit: a hopeless tree stops at its budget.
const PROBE_QUERIES: usize = 256;
/// How far over [`BRUTE_SHARE`] the first [`SAMPLE`]` / 2` probe rows must
/// scan for the fit to stop asking (see [`KdTree::prefers_brute`]).
const FAR_OVER: f64 = 3.0;
/// A query's heap is seeded from a subtree of at least this many times k
/// rows (see [`Search::answer`]). Counted in instructions (callgrind, one
/// thread, k = 100): 2k and 3k tie (the subtree is the same); k costs 1%
/// more, 4k 5% more on diamonds and 1% more on uniform d = 8. Seeding from
/// the nearest leaves best first, through a priority queue, took as many
/// instructions and more time in branches.
const SEED: usize = 2;
/// The build's median selections finish on keys gathered into one array
/// once at most this many rows are left (see [`split_rows`]).
const KEYED: usize = 1 << 13;
/// Keys sampled for each pivot of a larger range: 127 rows are fetched from
/// anywhere in it, a small price against a pass over it, and the sample's
/// order statistic lands close enough that a few passes narrow 1M rows down
/// to [`KEYED`].
const PIVOT_SAMPLE: usize = 127;
/// Rounds of partitions before a range finishes on keys, whatever its size.
const ROUNDS: usize = 64;
/// Queries searched together where the CPU allows (see `group`): one per
/// lane of an AVX2 vector of `f64`.
const LANES: usize = 4;
#[derive(Clone, Copy, Debug)]
struct Node {
    /// Range of stored rows covered by this node.
    start: u32,
    end: u32,
    /// Index of the right child; the left child is always the next node
    /// (pre-order layout). 0 marks a leaf, as the root is never a child.
    right: u32,
    /// Where an inner node's children's boxes start in `KdTree::kids`, in
    /// units of `4 * dim`.
    kids: u32,
}

#[derive(Clone, Debug)]
pub struct KdTree {
    rows: usize,
    dim: usize,
    /// The training rows in leaf order, in blocks of [`BLOCK`] rows, each
    /// block dimension by dimension: stored row p's value t is at
    /// `BLOCK * dim * (p / BLOCK) + BLOCK * t + p % BLOCK`. The last block is
    /// padded with zeros, which no node covers. In a split tree (`planes`),
    /// the values' `f32` cuts in the same order, in half the buffer.
    data: Vec<f64>,
    /// A split tree's values' low 32 bits, in the same order; else empty.
    lo: Vec<u32>,
    /// The original training index of each stored row.
    ids: Vec<u32>,
    nodes: Vec<Node>,
    /// Per inner node, its two children's boxes, interleaved: `2 * dim`
    /// lower coordinates (left child's, right child's, dimension by
    /// dimension), then `2 * dim` upper ones. A search always bounds both
    /// children of a node, and this way the two come in one load per value.
    /// In `f32` rounded outward ([`outward`]): each stored box holds the true
    /// one, so its bound is never above the true bound and pruning stays
    /// safe, in half the memory (8 MB instead of 17 at 1M rows, d = 8).
    kids: Vec<f32>,
    /// The brute force a call hands over to when the tree would not pay off.
    brute: Brute,
    /// How far a split tree's rows cut to `f32`s may lie from the rows
    /// (`planes::slack`).
    slack: f64,
}

impl KdTree {
    /// Takes the training rows (row-major, `rows x dim`) and reorders them in
    /// place, so building needs no second copy of the data.
    ///
    /// Median split on the widest dimension of each node's tight box keeps
    /// the tree balanced (depth ~log2(n / leaf_size)) even on skewed data.
    /// `leaf_size` around 16..64 suits k ~ 100; 0 is treated as 1.
    pub fn build(data: Vec<f64>, rows: usize, dim: usize, leaf_size: usize) -> KdTree {
        let split = data.len() * 8 > planes::SPLIT_BYTES;
        KdTree::build_split(data, rows, dim, leaf_size, split)
    }

    /// [`KdTree::build`], its rows split as asked where every value allows
    /// it (see `planes`).
    fn build_split(
        mut data: Vec<f64>,
        rows: usize,
        dim: usize,
        leaf_size: usize,
        split: bool,
    ) -> KdTree {
        assert_eq!(data.len(), rows * dim, "train shape");
        assert!(dim >= 1, "dim must be >= 1");
        let n = u32::try_from(rows).expect("training indices must fit u32");
        let mut ids: Vec<u32> = (0..n).collect();
        let mut parts = Parts {
            nodes: Vec::new(),
            kids: Vec::new(),
            keys: Vec::new(),
            left: Vec::new(),
            keyed: KEYED,
        };
        build_node(&mut data, &mut ids, 0, &mut parts, (dim, leaf_size.max(1)));
        let Parts { nodes, kids, .. } = parts;
        let brute = Brute::new(Points::new(&data, rows, dim));
        let slack = if split {
            planes::slack(&data, dim)
        } else {
            None
        };
        to_blocks(&mut data, dim);
        let mut tree = KdTree {
            rows,
            dim,
            data,
            ids,
            nodes,
            kids,
            brute,
            lo: Vec::new(),
            slack: slack.unwrap_or(f64::INFINITY),
        };
        if slack.is_some() {
            tree.split_rows();
        }
        tree
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Bytes held: the rows, their indices, nodes and boxes.
    pub fn byte_size(&self) -> usize {
        self.data.capacity() * 8
            + self.lo.capacity() * 4
            + self.ids.capacity() * 4
            + self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.kids.capacity() * 4
    }

    /// Whether brute force should answer Euclidean k-NN calls instead: the
    /// tree's own test of a call (see [`KdTree::run`]), made on
    /// [`PROBE_QUERIES`] training rows as the queries. They are picked by
    /// their original index, so the choice does not depend on the layout.
    pub fn prefers_brute(&self, k: usize) -> bool {
        let stride = (self.rows / PROBE_QUERIES).max(1);
        let picked = |pos: &usize| {
            let id = self.ids[*pos] as usize;
            id.is_multiple_of(stride) && id / stride < PROBE_QUERIES
        };
        let probe: Vec<f64> = (0..self.rows)
            .filter(picked)
            .flat_map(|pos| self.row(pos))
            .collect();
        let probe = Points::new(&probe, probe.len() / self.dim, self.dim);
        let mut out = Neighbors::for_rows(self.rows, self.dim, probe, k);
        let mut search = Search::new(self, SqEuclid, k);
        let budget = BRUTE_SHARE * (probe.rows * self.rows) as f64;
        for qi in 0..probe.rows {
            search.answer(probe.row(qi));
            out.store(qi, &mut search.top);
            // A tree far over the share says so within a few rows: the whole
            // budget of a tree that prunes nothing is 26 rows' full scans,
            // half King County's fit.
            let far_over = qi + 1 >= SAMPLE / 2
                && search.scanned as f64 > FAR_OVER * BRUTE_SHARE * ((qi + 1) * self.rows) as f64;
            if search.scanned as f64 > budget || far_over {
                return true;
            }
        }
        false
    }

    /// The training rows in their original order, moved back in place.
    pub fn into_rows(mut self) -> Vec<f64> {
        if self.split() {
            self.join_rows();
        }
        let mut back = vec![0; self.rows];
        for (pos, &id) in self.ids.iter().enumerate() {
            back[id as usize] = pos as u32;
        }
        let mut data = row_major(self.data, self.rows, self.dim);
        permute_rows(&mut data, self.dim, &back);
        data
    }

    /// The training rows back in their original order (for saving a model).
    pub fn original_rows(&self) -> Vec<f64> {
        let dim = self.dim;
        let mut out = vec![0.0; self.rows * dim];
        for (pos, &id) in self.ids.iter().enumerate() {
            let id = id as usize;
            for (o, v) in out[id * dim..(id + 1) * dim].iter_mut().zip(self.row(pos)) {
                *o = v;
            }
        }
        out
    }

    /// Stored row `pos`'s values.
    fn row(&self, pos: usize) -> impl Iterator<Item = f64> + '_ {
        let at = first_value(pos, self.dim);
        (0..self.dim).map(move |t| self.value(at + BLOCK * t))
    }

    /// The blocks that hold stored rows `start..end`, `start` at a block's
    /// start (every node's is), of a tree that is not split.
    fn blocks(&self, start: usize, end: usize) -> &[f64] {
        debug_assert!(!self.split());
        &self.data[self.block_range(start, end)]
    }

    fn block_range(&self, start: usize, end: usize) -> std::ops::Range<usize> {
        let width = BLOCK * self.dim;
        start / BLOCK * width..end.div_ceil(BLOCK) * width
    }

    /// `metric`: Euclidean, Manhattan, Chebyshev or Minkowski. Cosine has no
    /// coordinate-wise box bound, so it is answered by exact brute force, as
    /// is a Euclidean call on which the tree is measured not to pay off.
    pub fn knn(&self, queries: Points, k: usize, metric: Metric) -> Neighbors {
        let mut out = Neighbors::for_rows(self.rows, self.dim, queries, k);
        let tree_paid_off = match metric {
            Metric::Euclidean => self.run(SqEuclid, queries, &mut out, BRUTE_SHARE),
            Metric::Manhattan => self.run(L1, queries, &mut out, f64::INFINITY),
            Metric::Chebyshev => self.run(LInf, queries, &mut out, f64::INFINITY),
            Metric::Minkowski(p) => self.run(Lp(p), queries, &mut out, f64::INFINITY),
            Metric::Cosine => false,
        };
        if tree_paid_off {
            return out;
        }
        // Brute force takes rows one after the other: a copy for the call,
        // made only where the tree does not pay off, which `Auto` settles at
        // the fit.
        let mut rows = Vec::new();
        self.join(self.block_range(0, self.rows), &mut rows);
        let rows = row_major(rows, self.rows, self.dim);
        let rows = Points::new(&rows, self.rows, self.dim);
        self.brute.knn(rows, Some(&self.ids), queries, k, metric)
    }

    /// Answers the queries, or returns `false` early once an evenly spread
    /// sample shows queries scanning more than `max_share` of the training
    /// rows: with high intrinsic dimension a kd-tree visits most leaves, and
    /// then the GEMM brute force is several times cheaper per pair. Both are
    /// exact, so the choice never changes a result.
    fn run<F: Fold>(&self, f: F, queries: Points, out: &mut Neighbors, max_share: f64) -> bool {
        let mut search = Search::new(self, f, out.k);
        let answer = |qi: usize, search: &mut Search<F>, out: &mut Neighbors| {
            search.answer(queries.row(qi));
            out.store(qi, &mut search.top);
        };
        let order = self.locality_order(f, queries);
        let stride = (order.len() / SAMPLE).max(1);
        let sample: Vec<usize> = order.iter().copied().step_by(stride).collect();
        // Give up as soon as the sample's budget is spent, so a hopeless tree
        // costs only a few queries' worth of scanning.
        let budget = max_share * (sample.len() * self.rows) as f64;
        for &qi in &sample {
            answer(qi, &mut search, out);
            if search.scanned as f64 > budget {
                return false;
            }
        }
        let rest = order
            .iter()
            .enumerate()
            .filter(|(pos, _)| pos % stride != 0);
        let rest: Vec<usize> = rest.map(|(_, &qi)| qi).collect();
        #[cfg(target_arch = "x86_64")]
        if F::SQUARES && std::arch::is_x86_feature_detected!("avx2") {
            let mut four = group::Four::new(self, f, out.k);
            for chunk in rest.chunks(LANES) {
                // SAFETY: AVX2 is present, checked just above; F squares.
                unsafe { four.answer(queries, chunk, out) };
            }
            return true;
        }
        for &qi in &rest {
            answer(qi, &mut search, out);
        }
        true
    }

    /// Queries sorted by the leaf they fall in: consecutive queries then
    /// sweep nearly the same leaves, so those leaves' rows stay in cache.
    /// Each query is still answered on its own, so the order cannot change
    /// any result.
    fn locality_order<F: Fold>(&self, f: F, queries: Points) -> Vec<usize> {
        let mut keyed: Vec<(u32, usize)> = (0..queries.rows)
            .map(|qi| {
                let leaf = self.descend(f, queries.row(qi), 1);
                (leaf as u32, qi)
            })
            .collect();
        keyed.sort_unstable();
        keyed.into_iter().map(|(_, qi)| qi).collect()
    }

    /// The node reached from the root by always taking the child whose box is
    /// nearer `q` (the left one on a tie), stopping at a leaf or where that
    /// child would hold fewer than `min_rows` rows.
    fn descend<F: Fold>(&self, f: F, q: &[f64], min_rows: usize) -> usize {
        let mut node = 0;
        while self.nodes[node].right != 0 {
            let [bl, br] = self.kid_bounds(f, q, node);
            let next = if br < bl {
                self.nodes[node].right as usize
            } else {
                node + 1
            };
            let m = self.nodes[next];
            if ((m.end - m.start) as usize) < min_rows {
                break;
            }
            node = next;
        }
        node
    }

    /// The box bounds of an inner node's left and right child.
    #[inline(always)]
    fn kid_bounds<F: Fold>(&self, f: F, q: &[f64], node: usize) -> [f64; 2] {
        let at = self.nodes[node].kids as usize * 4 * self.dim;
        let (lo, hi) = self.kids[at..at + 4 * self.dim].split_at(2 * self.dim);
        box_fold2(f, q, lo, hi)
    }
}

/// What [`build_node`] fills in.
struct Parts {
    nodes: Vec<Node>,
    kids: Vec<f32>,
    /// A range of at most `keyed` rows' coordinates on the split axis,
    /// each with its place, for the median's selection (see [`split_rows`]).
    keys: Vec<u128>,
    /// Whether each of those rows goes to the left child.
    left: Vec<bool>,
    /// [`KEYED`], less in tests of the partitions.
    keyed: usize,
}

/// Builds the subtree over `rows` (row-major, the stored rows from `start`
/// on) in pre-order, moving the rows and their `ids` into its leaves' order,
/// and returns its node and its tight box. The parent stores that box in its
/// pair in `KdTree::kids`, so no box of every node is kept: at 1M rows those
/// would be another 17 MB at the fit's peak.
///
/// Each node's rows are moved into place as it splits, so every step reads
/// one contiguous run of rows: gathered through `ids` from all over the
/// matrix instead, they cost a cache miss a row a level (1M x 8: the fit
/// took 0.7 s, mostly waiting on those).
fn build_node(
    rows: &mut [f64],
    ids: &mut [u32],
    start: usize,
    parts: &mut Parts,
    (dim, leaf): (usize, usize),
) -> (u32, Vec<f64>, Vec<f64>) {
    let id = parts.nodes.len();
    let n = ids.len();
    parts.nodes.push(Node {
        start: start as u32,
        end: (start + n) as u32,
        right: 0,
        kids: 0,
    });
    let (lo, hi) = tight_box(rows, dim);
    if n > leaf.max(BLOCK) {
        let mut axis = 0;
        for t in 1..dim {
            if hi[t] - lo[t] > hi[axis] - lo[axis] {
                axis = t;
            }
        }
        // The median's place rounded to a block's start (`start` is one):
        // between `BLOCK` and `n - 1`, as `n > BLOCK`.
        let mid = (n / 2 + BLOCK / 2) / BLOCK * BLOCK;
        split_rows(rows, ids, mid, axis, parts, dim);
        let pair = parts.kids.len() / (4 * dim);
        parts.kids.resize((pair + 1) * 4 * dim, 0.0);
        parts.nodes[id].kids = pair as u32;
        let (rows_l, rows_r) = rows.split_at_mut(mid * dim);
        let (ids_l, ids_r) = ids.split_at_mut(mid);
        let (_, lo_l, hi_l) = build_node(rows_l, ids_l, start, parts, (dim, leaf));
        let (right, lo_r, hi_r) = build_node(rows_r, ids_r, start + mid, parts, (dim, leaf));
        parts.nodes[id].right = right;
        let at = pair * 4 * dim;
        for (side, (lo, hi)) in [(lo_l, hi_l), (lo_r, hi_r)].into_iter().enumerate() {
            for t in 0..dim {
                let (l, h) = outward(lo[t], hi[t]);
                parts.kids[at + 2 * t + side] = l;
                parts.kids[at + 2 * dim + 2 * t + side] = h;
            }
        }
    }
    (id as u32, lo, hi)
}

/// Moves the `mid` rows least on `axis` (in `total_cmp` order) to the front
/// of `rows`, with their `ids`. Which of equal values go left only has to be
/// a pure function of the data: the layout then is too, and the answers
/// never depend on it.
///
/// A large node narrows the range that holds its median with a few in-place
/// partitions around sampled pivots (each a pass of streamed rows); the last
/// [`KEYED`] rows or fewer select on keys gathered into one array. Keys for
/// every row would add 16 MB at the fit's peak at 1M rows, and glibc then
/// keeps that much more for the rest of the run.
fn split_rows(
    rows: &mut [f64],
    ids: &mut [u32],
    mid: usize,
    axis: usize,
    parts: &mut Parts,
    dim: usize,
) {
    let key = |row: &[f64]| order_bits(row[axis]);
    let (mut lo, mut hi) = (0, ids.len());
    // Each round takes at least the pivot's own rows out of the range; data
    // that beat the sampled pivots this often finish on keys regardless.
    for _ in 0..ROUNDS {
        if hi - lo <= parts.keyed {
            break;
        }
        let pivot = sampled_pivot(&rows[lo * dim..hi * dim], dim, mid - lo, key);
        let (r, i) = (&mut rows[lo * dim..hi * dim], &mut ids[lo..hi]);
        let less = lo + partition_rows(r, i, dim, |_, row| key(row) < pivot);
        if mid < less {
            hi = less;
            continue;
        }
        let (r, i) = (&mut rows[less * dim..hi * dim], &mut ids[less..hi]);
        let equal = less + partition_rows(r, i, dim, |_, row| key(row) == pivot);
        if mid <= equal {
            return;
        }
        lo = equal;
    }
    if lo == mid {
        return;
    }
    let keys = &mut parts.keys;
    keys.clear();
    let range = lo * dim..hi * dim;
    keys.extend(
        rows[range.clone()]
            .chunks_exact(dim)
            .zip(0..)
            .map(|(row, pos)| entry(row[axis], pos)),
    );
    keys.select_nth_unstable(mid - lo);
    let left = &mut parts.left;
    left.clear();
    left.resize(hi - lo, false);
    for &k in &keys[..mid - lo] {
        left[k as u32 as usize] = true;
    }
    partition_rows(&mut rows[range], &mut ids[lo..hi], dim, |pos, _| left[pos]);
}

/// A key of `rows` near rank `rank`: the matching one of a sorted sample.
fn sampled_pivot(rows: &[f64], dim: usize, rank: usize, key: impl Fn(&[f64]) -> u64) -> u64 {
    let n = rows.len() / dim;
    let mut sample: Vec<u64> = (0..PIVOT_SAMPLE)
        .map(|j| {
            let at = (2 * j + 1) * n / (2 * PIVOT_SAMPLE);
            key(&rows[at * dim..(at + 1) * dim])
        })
        .collect();
    sample.sort_unstable();
    sample[(rank * PIVOT_SAMPLE / n).min(PIVOT_SAMPLE - 1)]
}

/// Moves the rows for which `goes_left(place, row)` holds to the front, with
/// their `ids`, and returns how many there are; `place` is the row's place
/// before the call, each row asked once.
fn partition_rows(
    rows: &mut [f64],
    ids: &mut [u32],
    dim: usize,
    mut goes_left: impl FnMut(usize, &[f64]) -> bool,
) -> usize {
    let (mut i, mut j) = (0, ids.len());
    loop {
        while i < j && goes_left(i, &rows[i * dim..(i + 1) * dim]) {
            i += 1;
        }
        while i < j && !goes_left(j - 1, &rows[(j - 1) * dim..j * dim]) {
            j -= 1;
        }
        if i == j {
            return i;
        }
        // Row i goes right and row j - 1 left, so i < j - 1.
        j -= 1;
        ids.swap(i, j);
        let (front, back) = rows.split_at_mut(j * dim);
        front[i * dim..(i + 1) * dim].swap_with_slice(&mut back[..dim]);
        i += 1;
    }
}

/// The least and greatest value of each dimension over `rows` (row-major).
///
/// Four rows are merged before each update of the box, whose values stay in
/// memory for any `dim`: one row at a time, each update waited for the
/// previous row's store (the fit of King County spent most of its tree
/// build here).
fn tight_box(rows: &[f64], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut lo, mut hi) = (vec![f64::INFINITY; dim], vec![f64::NEG_INFINITY; dim]);
    // The values are finite (checked at fit), so these are min and max.
    let least = |a: f64, b: f64| if b < a { b } else { a };
    let most = |a: f64, b: f64| if b > a { b } else { a };
    let mut quads = rows.chunks_exact(4 * dim);
    for quad in &mut quads {
        let (a, rest) = quad.split_at(dim);
        let (b, rest) = rest.split_at(dim);
        let (c, d) = rest.split_at(dim);
        for t in 0..dim {
            lo[t] = least(lo[t], least(least(a[t], b[t]), least(c[t], d[t])));
            hi[t] = most(hi[t], most(most(a[t], b[t]), most(c[t], d[t])));
        }
    }
    for row in quads.remainder().chunks_exact(dim) {
        for ((l, h), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(row) {
            *l = least(*l, v);
            *h = most(*h, v);
        }
    }
    (lo, hi)
}

/// `[lo, hi]` in `f32`, rounded outward: the nearest `f32`s at most `lo` and
/// at least `hi` (beyond `f32`'s range, its largest finite value or infinity).
fn outward(lo: f64, hi: f64) -> (f32, f32) {
    let (mut l, mut h) = (lo as f32, hi as f32);
    if f64::from(l) > lo {
        l = l.next_down();
    }
    if f64::from(h) < hi {
        h = h.next_up();
    }
    (l, h)
}

/// Where stored row `pos`'s first value lies in the blocks (of rows with
/// `dim` values); its value t lies `BLOCK * t` further (see `KdTree::data`).
fn first_value(pos: usize, dim: usize) -> usize {
    pos / BLOCK * BLOCK * dim + pos % BLOCK
}

/// Reorders rows in place so that row `pos` becomes the old row `order[pos]`,
/// following each cycle of the permutation with one spare row.
fn permute_rows(data: &mut [f64], dim: usize, order: &[u32]) {
    let mut done = vec![false; order.len()];
    let mut spare = vec![0.0; dim];
    for start in 0..order.len() {
        if done[start] || order[start] as usize == start {
            continue;
        }
        spare.copy_from_slice(&data[start * dim..(start + 1) * dim]);
        let mut pos = start;
        loop {
            done[pos] = true;
            let from = order[pos] as usize;
            if from == start {
                data[pos * dim..(pos + 1) * dim].copy_from_slice(&spare);
                break;
            }
            data.copy_within(from * dim..(from + 1) * dim, pos * dim);
            pos = from;
        }
    }
}

/// `rows` (row-major, `dim` wide, padded with zeros to whole blocks) in
/// blocks (see [`BLOCK`]), in place: each block is transposed on its own.
fn to_blocks(data: &mut Vec<f64>, dim: usize) {
    let width = BLOCK * dim;
    let padded = data.len().div_ceil(width) * width;
    // Exact: `resize` alone would double the capacity.
    data.reserve_exact(padded - data.len());
    data.resize(padded, 0.0);
    let mut spare = vec![0.0; width];
    for block in data.chunks_exact_mut(width) {
        spare.copy_from_slice(block);
        for (j, row) in spare.chunks_exact(dim).enumerate() {
            for (t, &v) in row.iter().enumerate() {
                block[BLOCK * t + j] = v;
            }
        }
    }
}

/// [`to_blocks`] undone, in place: the first `rows` rows, row-major.
fn row_major(mut data: Vec<f64>, rows: usize, dim: usize) -> Vec<f64> {
    let width = BLOCK * dim;
    let mut spare = vec![0.0; width];
    for block in data.chunks_exact_mut(width) {
        spare.copy_from_slice(block);
        for (j, row) in block.chunks_exact_mut(dim).enumerate() {
            for (t, v) in row.iter_mut().enumerate() {
                *v = spare[BLOCK * t + j];
            }
        }
    }
    data.truncate(rows * dim);
    data
}

/// Calls `each(i, fold)` for each of the first `n` rows of `blocks` (whole
/// blocks, see [`BLOCK`]), in order, with the reduced fold from `q` to it:
/// the complete reference fold or, for a metric whose scans stop early,
/// possibly a partial one above `limit`.
#[inline(always)]
fn leaf_folds<F: Fold>(
    f: F,
    q: &[f64],
    (blocks, n): (&[f64], usize),
    limit: f64,
    mut each: impl FnMut(usize, f64),
) {
    if F::EARLY_EXIT {
        let width = BLOCK * q.len();
        for at in 0..n {
            let block = &blocks[at / BLOCK * width..][..width];
            each(at, fold_block_until(f, q, block, at % BLOCK, limit));
        }
    } else {
        fold_blocks(f, q, blocks, n, each);
    }
}

/// Per-query traversal state, reused across queries to avoid allocation.
struct Search<'t, F> {
    tree: &'t KdTree,
    f: F,
    top: TopK,
    /// Reduced-space limit of the current k-th distance.
    limit: f64,
    /// Training rows scanned so far, to judge whether the tree pays off.
    scanned: usize,
    /// The stored rows that seeded the current query's heap (see
    /// [`Search::answer`]): nodes within them are skipped.
    seeded: (u32, u32),
    /// Seed distances on their way into the heap.
    seeds: Vec<(f64, u32)>,
    /// Rows joined from a split tree's planes.
    scratch: Vec<f64>,
    /// Whether a split tree's leaves are scanned by their `f32` cuts, with
    /// AVX2 (`planes`).
    #[cfg(target_arch = "x86_64")]
    cuts: bool,
    /// The query in `f32`s, and how far they lie from it
    /// (`planes::query_slack`), for a split tree's scans.
    q32: Vec<f32>,
    near: f64,
    /// A split leaf's rows that passed the `f32` fold, rechecked once the
    /// leaf's cuts are all folded, so that the reads of their low halves
    /// overlap (see `Search::leaf_split`).
    passed: Vec<u32>,
    /// Nodes waiting to be searched, with their bounds (see
    /// [`Search::next_leaf`]).
    stack: Vec<(u32, f64)>,
    /// Subtrees a group left this query to search alone (see `group`).
    deferred: Vec<u32>,
}

impl<'t, F: Fold> Search<'t, F> {
    fn new(tree: &'t KdTree, f: F, k: usize) -> Self {
        Search {
            tree,
            f,
            top: TopK::new(k),
            limit: f64::INFINITY,
            scanned: 0,
            seeded: (0, 0),
            seeds: Vec::new(),
            scratch: Vec::new(),
            #[cfg(target_arch = "x86_64")]
            cuts: F::SQUARES && std::arch::is_x86_feature_detected!("avx2"),
            q32: Vec::new(),
            near: f64::INFINITY,
            passed: Vec::new(),
            stack: Vec::new(),
            deferred: Vec::new(),
        }
    }

    /// The k nearest rows of `q`, left in `top`.
    ///
    /// A depth-first search that starts with an empty heap admits every row
    /// that beats the k-th of those seen so far: 355 pushes per query for
    /// k = 100 on diamonds, a quarter of the time. So the smallest subtree on
    /// the query's own path that holds [`SEED`] x k rows is scanned first (its
    /// rows are contiguous: one streaming pass, no bounds), the best k of them
    /// fill the heap at once, and the depth-first search then starts with a
    /// k-th distance near the final one, skipping that subtree. Every row is
    /// still either scanned or in a pruned box, so the answer is the same.
    fn answer(&mut self, q: &[f64]) {
        self.seed(q);
        self.visit(q, 0);
    }

    /// Fills the heap from the query's seed subtree (see [`Search::answer`]).
    fn seed(&mut self, q: &[f64]) {
        let tree = self.tree;
        if tree.split() {
            self.near = planes::query_slack(q, &mut self.q32);
        }
        let want = (SEED * self.top.k()).min(tree.rows);
        let node = tree.descend(self.f, q, want);
        let n = tree.nodes[node];
        self.seeded = (n.start, n.end);
        let (start, end) = (n.start as usize, n.end as usize);
        let dim = tree.dim;
        let ids = &tree.ids[start..end];
        let f = self.f;
        let seeds = &mut self.seeds;
        let blocks = tree.node_blocks(node, &mut self.scratch);
        leaf_folds(f, q, (blocks, end - start), f64::INFINITY, |at, r| {
            seeds.push((f.finish(r), ids[at]))
        });
        self.scanned += end - start;
        self.top.fill_best(self.seeds.drain(..));
        self.limit = self.f.limit(self.top.kth(), dim);
    }

    /// Offers the row `id` at the reduced fold `r`; an admission tightens
    /// the limit.
    #[inline(always)]
    fn offer(&mut self, r: f64, id: u32) {
        if self.top.push(self.f.finish(r), id) {
            self.limit = self.f.limit(self.top.kth(), self.tree.dim);
        }
    }

    /// Whether this query's seed subtree holds the whole of node `n`.
    #[inline(always)]
    fn seeded_over(&self, n: Node) -> bool {
        self.seeded.0 <= n.start && n.end <= self.seeded.1
    }

    /// Searches the subtree at `node`, depth first.
    fn visit(&mut self, q: &[f64], node: usize) {
        self.stack.push((node as u32, f64::NEG_INFINITY));
        while let Some(leaf) = self.next_leaf(q) {
            self.scan(q, leaf);
        }
    }

    /// The next leaf of the depth-first search whose nodes wait on `stack`,
    /// each with its bound: a node is entered if its bound is not above the
    /// limit when it comes off, the very moment the recursive search
    /// (nearer child, then the other with the limit the first left) would
    /// judge it. A search held on a stack can pause at each leaf while
    /// other queries scan theirs (`group::Four::alone`).
    fn next_leaf(&mut self, q: &[f64]) -> Option<usize> {
        let tree = self.tree;
        while let Some((node, bound)) = self.stack.pop() {
            let node = node as usize;
            let n = tree.nodes[node];
            // Bounds are never NaN.
            if bound > self.limit || self.seeded_over(n) {
                continue;
            }
            if n.right == 0 {
                return Some(node);
            }
            let (l, r) = (node + 1, n.right as usize);
            let [bl, br] = self.bounds(q, node);
            // Nearer child first: it tightens the limit that may prune the
            // other.
            let ((a, ba), (b, bb)) = if br < bl {
                ((r, br), (l, bl))
            } else {
                ((l, bl), (r, br))
            };
            self.stack.push((b as u32, bb));
            self.stack.push((a as u32, ba));
        }
        None
    }

    /// Scans the leaf `node`, offering its rows within the limit.
    fn scan(&mut self, q: &[f64], node: usize) {
        let tree = self.tree;
        let n = tree.nodes[node];
        let (start, end) = (n.start as usize, n.end as usize);
        self.scanned += end - start;
        #[cfg(target_arch = "x86_64")]
        if tree.split() && self.cuts {
            // SAFETY: AVX2 is present and `F` squares (`cuts`).
            unsafe { self.leaf_split(q, start, end) };
            return;
        }
        let ids = &tree.ids[start..end];
        let mut scratch = std::mem::take(&mut self.scratch);
        let blocks = tree.node_blocks(node, &mut scratch);
        // The limit only falls, so a fold that stopped above the leaf's
        // starting limit is above the current one too.
        leaf_folds(self.f, q, (blocks, end - start), self.limit, |at, r| {
            if r <= self.limit {
                self.offer(r, ids[at]);
            }
        });
        self.scratch = scratch;
    }

    fn bounds(&self, q: &[f64], node: usize) -> [f64; 2] {
        self.tree.kid_bounds(self.f, q, node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The tree's own Euclidean path (the hand-off disabled) and `knn` with
    /// each of `others` answer as brute force does; `k` is capped at the rows.
    fn tree_path_matches_brute(
        train: &[f64],
        queries: &[f64],
        dim: usize,
        (k, leaf, split): (usize, usize, bool),
        others: &[Metric],
    ) -> Result<(), TestCaseError> {
        let (rows, m) = (train.len() / dim, queries.len() / dim);
        let k = k.min(rows);
        let (tp, qp) = (Points::new(train, rows, dim), Points::new(queries, m, dim));
        let tree = KdTree::build_split(train.to_vec(), rows, dim, leaf, split);
        let mut out = Neighbors::for_call(tp, qp, k);
        prop_assert!(tree.run(SqEuclid, qp, &mut out, f64::INFINITY));
        prop_assert_eq!(
            out,
            brute_knn(tp, qp, k, Metric::Euclidean),
            "split: {}",
            split
        );
        for &metric in others {
            prop_assert_eq!(
                tree.knn(qp, k, metric),
                brute_knn(tp, qp, k, metric),
                "{:?}",
                metric
            );
        }
        Ok(())
    }

    /// Small integers (ties, duplicate rows, queries on box faces) and reals.
    pub(super) fn matrix(rows: usize, dim: usize) -> impl Strategy<Value = Vec<f64>> {
        let v = prop_oneof![3 => (0i32..3).prop_map(f64::from), 1 => 0.0f64..3.0];
        prop::collection::vec(v, rows * dim)
    }

    /// [`matrix`]'s values, values of every sign and of magnitudes an `f32`
    /// holds the exponent of, and values that share their `f32` cuts and
    /// differ in their low bits (see `planes`), whose order only the whole
    /// values settle.
    fn spread(rows: usize, dim: usize) -> impl Strategy<Value = Vec<f64>> {
        let twins = (0i32..3, 0i32..4)
            .prop_map(|(b, j)| f64::from(b) + 0.5 + f64::from(j) * 2f64.powi(-40));
        let v = prop_oneof![
            3 => twins,
            2 => (0i32..3).prop_map(f64::from),
            1 => 0.0f64..3.0,
            1 => -1e30f64..1e30,
            1 => -1e-30f64..1e-30,
            1 => (0.0f64..3.0).prop_map(|v| v + 1e-9),
        ];
        prop::collection::vec(v, rows * dim)
    }

    proptest! {
        /// `knn` may hand a Euclidean call to brute force, so the tree's own
        /// Euclidean path is checked here with the hand-off disabled. Past
        /// [`SAMPLE`] queries, groups of four answer some (see `run`).
        #[test]
        fn euclidean_tree_path_matches_brute(
            (dim, train, queries) in (1usize..150, 1usize..8, 1usize..90)
                .prop_flat_map(|(r, d, m)| (Just(d), matrix(r, d), matrix(m, d))),
            k in 1usize..150,
            leaf in 1usize..20,
        ) {
            for split in [false, true] {
                tree_path_matches_brute(&train, &queries, dim, (k, leaf, split), &[])?;
            }
        }

        /// A split tree (see `planes`) answers as the oracle does, on values
        /// of every magnitude it takes: the cuts' margin grows with the
        /// largest, and rows of tiny values lie within it of each other.
        /// Euclidean scans the cuts; the other metrics fold rows joined from
        /// the planes.
        #[test]
        fn split_trees_answer_as_the_oracle(
            (dim, train, queries) in (1usize..120, 1usize..7, 1usize..40)
                .prop_flat_map(|(r, d, m)| (Just(d), spread(r, d), spread(m, d))),
            k in 1usize..60,
            leaf in 1usize..12,
        ) {
            let others = [Metric::Manhattan, Metric::Chebyshev, Metric::Minkowski(3.0)];
            tree_path_matches_brute(&train, &queries, dim, (k, leaf, true), &others)?;
        }

        /// Any number of rows (whole groups of four or not): each
        /// dimension's least and greatest value.
        #[test]
        fn tight_boxes_hold_the_rows_extremes(
            (rows, dim, train) in (1usize..40, 1usize..7)
                .prop_flat_map(|(r, d)| (Just(r), Just(d), matrix(r, d))),
        ) {
            let (lo, hi) = tight_box(&train, dim);
            for t in 0..dim {
                let column = (0..rows).map(|i| train[i * dim + t]);
                prop_assert_eq!(lo[t], column.clone().fold(f64::INFINITY, f64::min));
                prop_assert_eq!(hi[t], column.fold(f64::NEG_INFINITY, f64::max));
            }
        }

        /// The front holds rows no greater on the axis than any in the back,
        /// each with its id, whether the range narrows by partitions
        /// (`keyed` small) or selects on keys at once.
        #[test]
        fn splits_move_the_least_rows_to_the_front(
            (rows, dim, train) in (2usize..300, 1usize..4)
                .prop_flat_map(|(r, d)| (Just(r), Just(d), prop::collection::vec(-3i8..4, r * d))),
            at in any::<prop::sample::Index>(),
            axis in any::<prop::sample::Index>(),
            keyed in 0usize..400,
        ) {
            let (mid, axis) = (1 + at.index(rows - 1), axis.index(dim));
            let mut values: Vec<f64> = train.iter().map(|&v| f64::from(v) * 0.5).collect();
            values[axis] = -0.0;
            let before = values.clone();
            let mut ids: Vec<u32> = (0..rows as u32).collect();
            let mut parts = Parts { nodes: Vec::new(), kids: Vec::new(), keys: Vec::new(), left: Vec::new(), keyed };
            split_rows(&mut values, &mut ids, mid, axis, &mut parts, dim);
            let key = |pos: usize| order_bits(values[pos * dim + axis]);
            let front = (0..mid).map(key).max();
            let back = (mid..rows).map(key).min();
            prop_assert!(front <= back, "{:?} > {:?}", front, back);
            for (pos, &id) in ids.iter().enumerate() {
                let id = id as usize;
                prop_assert_eq!(&values[pos * dim..(pos + 1) * dim], &before[id * dim..(id + 1) * dim]);
            }
            ids.sort_unstable();
            prop_assert!(ids.iter().zip(0..).all(|(&id, want)| id == want));
        }

        /// The stored corners hold every value, as tightly as `f32` allows.
        #[test]
        fn boxes_round_outward(v in prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO) {
            let (l, h) = outward(v, v);
            prop_assert!(f64::from(l) <= v && v <= f64::from(h), "{} {} {}", l, v, h);
            if v.abs() < f64::from(f32::MAX) {
                prop_assert!(f64::from(l.next_up()) > v && f64::from(h.next_down()) < v);
            }
        }
    }

    /// Rows tied at a k-th Minkowski distance near 1e99 (the 2 in y is
    /// absorbed by z's cube): the limit must cover the error of the root's
    /// rounded `1/p`, or the tree prunes the box of rows 1, 3 and 6 and
    /// answers with higher training indices than the oracle.
    #[test]
    fn minkowski_ties_at_large_distances() {
        let mut train = vec![0.0; 28 * 3];
        for (row, y) in [(1, 2.0), (3, 2.0), (6, 2.0)] {
            train[row * 3 + 1] = y;
        }
        for (at, z) in [
            (29, -7.340926696409213e99),
            (46, -9.459498615961085e99),
            (52, 6.97439490459128e99),
        ] {
            train[at] = z;
        }
        let queries = [0.0, 1.4846764214742717e-308, -2.0981021490462562e99];
        let (tp, qp) = (Points::new(&train, 28, 3), Points::new(&queries, 1, 3));
        let tree = KdTree::build(train.clone(), 28, 3, 2);
        let metric = Metric::Minkowski(3.0);
        assert_eq!(tree.knn(qp, 8, metric), brute_knn(tp, qp, 8, metric));
    }

    #[test]
    fn rows_come_back_in_their_order() {
        // 501 rows: the last block is padded.
        let data: Vec<f64> = (0..501 * 3).map(|i| ((i * 7919) % 1009) as f64).collect();
        let whole = KdTree::build(data.clone(), 501, 3, 7);
        let split = KdTree::build_split(data.clone(), 501, 3, 7, true);
        for pos in 0..501 {
            assert!(split.row(pos).eq(whole.row(pos)));
        }
        for tree in [whole, split] {
            assert_eq!(tree.original_rows(), data);
            assert_eq!(tree.into_rows(), data);
        }
    }

    /// Every node starts at a block, so leaves and seed subtrees are whole
    /// blocks but for the rows' end.
    #[test]
    fn nodes_start_at_blocks() {
        let data: Vec<f64> = (0..1001 * 2).map(|i| ((i * 7919) % 1009) as f64).collect();
        for leaf in [1, 5, 30] {
            let tree = KdTree::build(data.clone(), 1001, 2, leaf);
            for n in &tree.nodes {
                assert!((n.start as usize).is_multiple_of(BLOCK), "{n:?}");
                assert!(
                    (n.end as usize).is_multiple_of(BLOCK) || n.end == 1001,
                    "{n:?}"
                );
                if n.right == 0 {
                    assert!((n.end - n.start) as usize <= leaf.max(BLOCK), "{n:?}");
                }
            }
        }
    }

    /// Low dimension prunes, uniform d = 32 at k = 100 does not: the choice
    /// `Auto` makes at fit.
    #[test]
    fn prefers_brute_where_it_cannot_prune() {
        let mut rng = super::super::tests::Rng(7);
        let low: Vec<f64> = (0..20_000 * 2).map(|_| rng.unit()).collect();
        assert!(!KdTree::build(low, 20_000, 2, 30).prefers_brute(100));
        let high: Vec<f64> = (0..4000 * 32).map(|_| rng.unit()).collect();
        assert!(KdTree::build(high, 4000, 32, 30).prefers_brute(100));
    }

    #[test]
    fn hands_off_only_when_the_tree_scans_too_much() {
        let data: Vec<f64> = (0..4000 * 2).map(|i| ((i * 7919) % 1000) as f64).collect();
        let tp = Points::new(&data, 4000, 2);
        let tree = KdTree::build(data.clone(), 4000, 2, 16);
        let mut out = Neighbors::for_call(tp, tp, 5);
        assert!(
            tree.run(SqEuclid, tp, &mut out, BRUTE_SHARE),
            "2-d, k=5 must use the tree"
        );
        let mut out = Neighbors::for_call(tp, tp, 4000);
        assert!(
            !tree.run(SqEuclid, tp, &mut out, BRUTE_SHARE),
            "k=n must hand off"
        );
    }
}

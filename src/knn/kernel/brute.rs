//! Exact brute-force k-NN.
//!
//! Euclidean uses a GEMM only as a *prefilter*: `|x|^2 + |y|^2 - 2x.y`
//! suffers catastrophic cancellation, so it decides nothing by itself. A
//! training row is skipped only when a rigorous error bound proves it farther
//! than the current k-th neighbour; every survivor gets its exact
//! [`distance`](super::metric::distance). Memory stays at a few block
//! buffers regardless of the number of queries or training rows.

use std::cell::Cell;
use std::sync::OnceLock;
use std::thread::LocalKey;

use super::bf16::{self, Rows, Tiles};
use super::metric::{
    CosineDist, Exact, Fold, L1, LInf, Lp, Metric, Points, SqEuclid, distance, fold4,
};
use super::select::{Neighbors, TopK, prefetch};
use seed::{SeedRows, SeedTiles, Seeding};

mod seed;
#[cfg(target_arch = "x86_64")]
mod sgemm;

/// Queries per GEMM block (and per block of the direct loops). With
/// [`TRAIN_BLOCK`] this makes a product of 512 KiB (f32), which the 1 MiB L2
/// of an AVX-512 core holds while it is scanned; without AVX-512 the main
/// scan writes no products (see [`Lane::survivors_in_place`]).
const QUERY_BLOCK: usize = 512;
/// The most queries that share one packing of each training block (see
/// [`query_group`]).
const QUERY_GROUP: usize = 4 * QUERY_BLOCK;

/// Queries that share one packing of each training block, for rows `width`
/// values wide. The whole training matrix is streamed and packed once per
/// group: at 1M x 20k, d = 32 that was 15% of the time with groups of 512,
/// and groups of 2048 were 7-10% faster. But a group's top k heaps (1.6 KiB
/// each at k = 100) are all touched by every training block, and at d = 8,
/// where packing is cheap, 2048 was 5-10% slower than 512. So the group
/// widens with the rows.
fn query_group(width: usize) -> usize {
    QUERY_BLOCK * (width / 8).clamp(1, QUERY_GROUP / QUERY_BLOCK)
}
/// Training rows per GEMM block.
const TRAIN_BLOCK: usize = 256;
/// Padding added to the strides of the feature-by-feature packs: one cache
/// line, so that a value's neighbours in the next features fall in other cache
/// sets. At strides of a multiple of 4 KiB (1,024 queries, 16,384 seed rows)
/// every feature of a column mapped to one set of L1 and of L2, and the 19
/// lines of a King County column evicted each other.
pub(super) const PAD: usize = 16;
/// Training block size, in bytes, for the direct (non-GEMM) loops: the block
/// stays in L1/L2 while every query of the query block sweeps it.
const DIRECT_BLOCK_BYTES: usize = 32 * 1024;

/// What the Euclidean prefilter needs to know of a training set: its column
/// means and largest centered squared norm. Each costs a pass over the training
/// rows, which a call per small partition would otherwise repeat every time, so
/// an index computes them once.
#[derive(Clone, Debug)]
pub(crate) struct Brute {
    mu: Vec<f64>,
    train_max_sq: f64,
    /// The mean centered squared norm: with a query's, the scale of the
    /// margin a bf16 product needs (see [`tiles_pay`]).
    train_mean_sq: f64,
    /// The seed rows packed for each precision (see [`SeedRows`]), and as
    /// bf16 tiles, on first use: a call per partition would otherwise pack
    /// them again. King County in 64 partitions (16 threads' split, run on 2
    /// cores): 0.152 -> 0.099 s.
    seeds32: OnceLock<SeedRows<f32>>,
    seeds64: OnceLock<SeedRows<f64>>,
    seeds16: OnceLock<SeedTiles>,
}

impl Brute {
    pub(crate) fn new(train: Points) -> Brute {
        let mu = column_means(train);
        let (train_max_sq, train_mean_sq) = centered_sq(train, &mu);
        Brute {
            mu,
            train_max_sq,
            train_mean_sq,
            seeds32: OnceLock::new(),
            seeds64: OnceLock::new(),
            seeds16: OnceLock::new(),
        }
    }

    /// The exact k nearest training rows of every query. `train` must be the
    /// matrix `self` was built from; `ids`, when given, is the original training
    /// index of each of its rows (a tree stores them reordered): results report
    /// those, and ties go to the lower one.
    pub(crate) fn knn(
        &self,
        train: Points,
        ids: Option<&[u32]>,
        queries: Points,
        k: usize,
        metric: Metric,
    ) -> Neighbors {
        debug_assert_eq!(self.mu.len(), train.dim, "Brute::knn: another training set");
        let mut out = Neighbors::for_call(train, queries, k);
        match metric {
            Metric::Euclidean => {
                if !self.euclidean_gemm(train, ids, queries, &mut out) {
                    direct(SqEuclid, train, ids, queries, &mut out);
                }
            }
            Metric::Manhattan => direct(L1, train, ids, queries, &mut out),
            Metric::Chebyshev => direct(LInf, train, ids, queries, &mut out),
            Metric::Minkowski(p) => direct(Lp(p), train, ids, queries, &mut out),
            Metric::Cosine => direct(CosineDist, train, ids, queries, &mut out),
        }
        out
    }

    /// f32 while every centered squared norm stays far from f32's overflow, f64
    /// up to f64's, none beyond (the direct path answers then).
    fn precision(&self, queries: Points) -> Option<Precision> {
        let largest = self.train_max_sq.max(centered_sq(queries, &self.mu).0);
        if largest <= f32::NORM_CAP {
            Some(Precision::F32)
        } else if largest <= f64::NORM_CAP {
            Some(Precision::F64)
        } else {
            None
        }
    }

    /// Blocked GEMM prefilter plus exact rerank. Returns `false`, doing nothing,
    /// when norms are too large for any error bound to be meaningful.
    fn euclidean_gemm(
        &self,
        train: Points,
        ids: Option<&[u32]>,
        queries: Points,
        out: &mut Neighbors,
    ) -> bool {
        let dim = train.dim;
        match self.precision(queries) {
            Some(Precision::F32) => {
                let seed = self.seeds::<f32>(train);
                let halves = if dim >= bf16::MIN_DIM && bf16::available() {
                    Bf16::WhereItPays
                } else {
                    Bf16::Never
                };
                let tiles = (halves != Bf16::Never).then(|| self.seed_tiles(train));
                prefilter::<f32>(train, ids, queries, self, (seed, tiles), halves, out);
            }
            Some(Precision::F64) => {
                let seed = self.seeds::<f64>(train);
                prefilter::<f64>(train, ids, queries, self, (seed, None), Bf16::Never, out);
            }
            None => return false,
        }
        true
    }
}

impl Brute {
    /// The packed seed rows for `T`'s prefilter.
    fn seeds<T: Lane>(&self, train: Points) -> &SeedRows<T> {
        T::seeds(self).get_or_init(|| SeedRows::new(train, &self.mu))
    }

    /// The f32 seed rows as bf16 tiles.
    fn seed_tiles(&self, train: Points) -> &SeedTiles {
        self.seeds16.get_or_init(|| SeedTiles::new(train, &self.mu))
    }
}

/// Exact brute force in one call, its training statistics computed on the spot.
#[cfg(test)]
pub(crate) fn brute_knn(train: Points, queries: Points, k: usize, metric: Metric) -> Neighbors {
    Brute::new(train).knn(train, None, queries, k, metric)
}

/// Exact distances for every pair, blocked so a training block is reused by a
/// whole block of queries from cache. A distance above the query's current
/// k-th never touches its heap (and a Minkowski fold stops early).
fn direct<E: Exact>(
    e: E,
    train: Points,
    ids: Option<&[u32]>,
    queries: Points,
    out: &mut Neighbors,
) {
    let id = |j: usize| ids.map_or(j as u32, |ids| ids[j]);
    let dim = train.dim;
    let train_block = (DIRECT_BLOCK_BYTES / (8 * dim)).max(1);
    let mut tops: Vec<TopK> = (0..QUERY_BLOCK).map(|_| TopK::new(out.k)).collect();
    let mut limits = [f64::INFINITY; QUERY_BLOCK];
    for q0 in (0..queries.rows).step_by(QUERY_BLOCK) {
        let q1 = (q0 + QUERY_BLOCK).min(queries.rows);
        limits.fill(f64::INFINITY);
        for t0 in (0..train.rows).step_by(train_block) {
            let t1 = (t0 + train_block).min(train.rows);
            for (qi, (top, limit)) in (q0..q1).zip(tops.iter_mut().zip(&mut limits)) {
                let q = queries.row(qi);
                for j in t0..t1 {
                    if let Some(d) = e.within(q, train.row(j), *limit)
                        && top.push(d, id(j))
                    {
                        *limit = e.limit_for(top.kth(), dim);
                    }
                }
            }
        }
        for (qi, top) in (q0..q1).zip(&mut tops) {
            out.store(qi, top);
        }
    }
}

/// The precision the GEMM prefilter runs in. Its products only decide which
/// pairs to skip, so f32 (twice the flops and half the memory traffic of f64)
/// serves whenever its error bound stays meaningful; f64 takes the rest.
trait Lane: Copy + PartialOrd + Default + 'static {
    /// Unit roundoff doubled (the type's `EPSILON`).
    const EPS: f64;
    /// Above this centered squared norm the GEMM terms could overflow.
    const NORM_CAP: f64;
    /// Absolute error a subnormal product or sum can add, per term.
    const TINY: f64;
    fn from_f64(v: f64) -> Self;
    /// An integer that orders as the value's f32 rounding compares (`-0`
    /// as `+0`; NaN never arises), for selecting among products with
    /// integer compares: `a <= b` implies `a.order_key() <= b.order_key()`.
    fn order_key(self) -> u32;
    /// [`at_most`] of a full chunk.
    fn at_most_64(chunk: &[Self; 64], t: Self) -> u64 {
        at_most_any(chunk, t)
    }
    /// [`at_most`] of a full chunk with AVX2's eight f32 or four f64 lanes.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    unsafe fn at_most_64_avx2(chunk: &[Self; 64], t: Self) -> u64;
    /// The least value of this type that is `>= v`, so a threshold never
    /// tightens when it is narrowed.
    fn at_least(v: f64) -> Self;
    /// matrixmultiply's GEMM for this type.
    const GEMM: GemmFn<Self>;
    /// [`gemm_packed`]'s products (see [`sgemm`]), where this type and the
    /// CPU allow; `false`, doing nothing, elsewhere.
    fn products_in_place(
        _shape: (usize, usize, usize),
        _a: (&[Self], usize),
        _b: (&[Self], usize),
        _c: &mut [Self],
    ) -> bool {
        false
    }
    /// The main scan's products for `block`, fused with its compares (see
    /// [`Block`]), where this type and the CPU allow; `false`, doing nothing,
    /// elsewhere.
    fn survivors_in_place(
        _shape: (usize, usize, usize),
        _a: (&[Self], usize),
        _b: (&[Self], usize),
        _block: &mut Block<'_, '_, Self>,
    ) -> bool {
        false
    }
    /// `v` as this type's values, where it is `f32`: products in bf16
    /// (see [`bf16`]) serve only an f32 prefilter, whose margin is
    /// widened for their bf16 inputs.
    fn from_tiles(v: &[f32]) -> Option<&[Self]>;
    fn to_f32(self) -> f32;
    /// Where a [`Brute`] keeps the seed rows packed in this type.
    fn seeds(brute: &Brute) -> &OnceLock<SeedRows<Self>>;
    /// This thread's buffers for [`prefilter`] in this precision.
    fn scratch() -> &'static LocalKey<Cell<Scratch<Self>>>;
}

/// The signature matrixmultiply's `sgemm` and `dgemm` share.
type GemmFn<T> = unsafe fn(
    usize,
    usize,
    usize,
    T,
    *const T,
    isize,
    isize,
    *const T,
    isize,
    isize,
    T,
    *mut T,
    isize,
    isize,
);

impl Lane for f64 {
    const EPS: f64 = f64::EPSILON;
    const NORM_CAP: f64 = 1e300;
    const TINY: f64 = 0.0; // covered by the `MIN_POSITIVE` inside the limit
    const GEMM: GemmFn<f64> = matrixmultiply::dgemm;
    fn from_f64(v: f64) -> Self {
        v
    }
    fn from_tiles(_: &[f32]) -> Option<&[f64]> {
        None
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn scratch() -> &'static LocalKey<Cell<Scratch<f64>>> {
        thread_local! {
            static SCRATCH: Cell<Scratch<f64>> = Cell::default();
        }
        &SCRATCH
    }
    fn seeds(brute: &Brute) -> &OnceLock<SeedRows<f64>> {
        &brute.seeds64
    }
    fn order_key(self) -> u32 {
        (self as f32).order_key()
    }
    #[cfg(target_arch = "x86_64")]
    fn at_most_64(chunk: &[f64; 64], t: f64) -> u64 {
        sse2::at_most_f64(chunk, t)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn at_most_64_avx2(chunk: &[f64; 64], t: f64) -> u64 {
        // SAFETY: the caller's promise, passed on.
        unsafe { avx2::at_most_f64(chunk, t) }
    }
    fn at_least(v: f64) -> Self {
        v
    }
}

impl Lane for f32 {
    const EPS: f64 = f32::EPSILON as f64;
    const NORM_CAP: f64 = 1e30;
    const TINY: f64 = f32::MIN_POSITIVE as f64;
    const GEMM: GemmFn<f32> = matrixmultiply::sgemm;
    #[cfg(target_arch = "x86_64")]
    fn products_in_place(
        shape: (usize, usize, usize),
        a: (&[f32], usize),
        b: (&[f32], usize),
        c: &mut [f32],
    ) -> bool {
        if !sgemm::available() {
            return false;
        }
        // SAFETY: AVX2 and FMA are present, checked just above.
        unsafe { sgemm::products(shape, a, b, c) };
        true
    }
    /// Not where matrixmultiply has AVX-512: its kernel blocks 512 queries
    /// better than [`sgemm`]'s (d = 32 on 16 AVX-512 cores: 1.387 against
    /// 1.445 s, products written out and scanned), and the scan keeps it.
    #[cfg(target_arch = "x86_64")]
    fn survivors_in_place(
        shape: (usize, usize, usize),
        a: (&[f32], usize),
        b: (&[f32], usize),
        block: &mut Block<'_, '_, f32>,
    ) -> bool {
        if !sgemm::available() || std::arch::is_x86_feature_detected!("avx512f") {
            return false;
        }
        // SAFETY: AVX2 and FMA are present, checked just above.
        unsafe { sgemm::survivors(shape, a, b, block) };
        true
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn from_tiles(v: &[f32]) -> Option<&[f32]> {
        Some(v)
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn scratch() -> &'static LocalKey<Cell<Scratch<f32>>> {
        thread_local! {
            static SCRATCH: Cell<Scratch<f32>> = Cell::default();
        }
        &SCRATCH
    }
    fn seeds(brute: &Brute) -> &OnceLock<SeedRows<f32>> {
        &brute.seeds32
    }
    fn order_key(self) -> u32 {
        let b = (self + 0.0).to_bits(); // -0 + 0 = +0
        if b & (1 << 31) != 0 {
            !b
        } else {
            b | (1 << 31)
        }
    }
    #[cfg(target_arch = "x86_64")]
    fn at_most_64(chunk: &[f32; 64], t: f32) -> u64 {
        sse2::at_most_f32(chunk, t)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn at_most_64_avx2(chunk: &[f32; 64], t: f32) -> u64 {
        // SAFETY: the caller's promise, passed on.
        unsafe { avx2::at_most_f32(chunk, t) }
    }
    fn at_least(v: f64) -> Self {
        let r = v as f32; // round to nearest: at most one step below v
        if f64::from(r) >= v || r.is_nan() || r == f32::INFINITY {
            r
        } else if r == 0.0 {
            f32::from_bits(1) // the smallest positive subnormal
        } else if r > 0.0 {
            f32::from_bits(r.to_bits() + 1)
        } else {
            f32::from_bits(r.to_bits() - 1)
        }
    }
}

/// [`gemm`] for a `b` packed once per index (the seed rows): where the CPU
/// and type allow, the products come from [`sgemm`], without the copy of `b`
/// that matrixmultiply makes on every call (a tenth of King County's time).
/// Calls whose `b` is packed for them keep matrixmultiply, which blocks 512
/// queries better (with the kernel there too, d = 32 on 16 AVX-512 cores ran 4%
/// slower).
fn gemm_packed<T: Lane>(
    shape: (usize, usize, usize),
    a: (&[T], usize),
    b: (&[T], usize),
    c: &mut [T],
) {
    if !T::products_in_place(shape, a, b, c) {
        gemm(shape, a, b, c);
    }
}

/// `C = A B` into `c[i*n + j]`, with both operands stored feature by feature:
/// `A[i][p] = a[p*lda + i]` (`m x k`) and `B[p][j] = b[p*ldb + j]` (`k x n`).
/// That layout lets the GEMM's own packing copy contiguous runs; with rows
/// stored whole (stride k) its strided gathers took a quarter of the time.
fn gemm<T: Lane>(
    (m, k, n): (usize, usize, usize),
    (a, lda): (&[T], usize),
    (b, ldb): (&[T], usize),
    c: &mut [T],
) {
    check_shape((m, k, n), (a, lda), (b, ldb), c);
    // SAFETY: matrixmultiply only exposes a raw-pointer API. With the strides
    // below it reads a[p*lda + i] for i < m, p < k; b[p*ldb + j] for j < n,
    // p < k; and writes c[i*n + j] for i < m, j < n: all in bounds by `check_shape`.
    // beta = 0 means c is written without being read. The slices are
    // distinct borrows, so c aliases neither input.
    unsafe {
        T::GEMM(
            m,
            k,
            n,
            T::from_f64(1.0),
            a.as_ptr(),
            1,
            lda as isize,
            b.as_ptr(),
            ldb as isize,
            1,
            T::from_f64(0.0),
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Panics unless `a` (`m x k`, stride `lda`), `b` (`k x n`, stride `ldb`) and
/// `c` (`m x n`) hold what [`gemm`] reads and writes: the raw-pointer GEMMs
/// rely on it.
fn check_shape<T>(
    (m, k, n): (usize, usize, usize),
    (a, lda): (&[T], usize),
    (b, ldb): (&[T], usize),
    c: &[T],
) {
    check_operands((m, k, n), (a, lda), (b, ldb));
    assert!(c.len() >= m * n);
}

/// [`check_shape`] of the operands alone, for a product that writes no `c`
/// (`sgemm::survivors`).
fn check_operands<T>(
    (m, k, n): (usize, usize, usize),
    (a, lda): (&[T], usize),
    (b, ldb): (&[T], usize),
) {
    assert!(k >= 1 && lda >= m && ldb >= n);
    assert!(a.len() >= (k - 1) * lda + m && b.len() >= (k - 1) * ldb + n);
}

/// Squared-norm slack factor `c` of the prefilter (see [`prefilter`]).
/// In f32 the inputs are also rounded to f32 once, an error of the same size as
/// the shift's; `6` instead of `4` covers it with the same 1.5x reserve.
fn slack<T: Lane>(dim: usize) -> f64 {
    let factor = if T::EPS > f64::EPSILON { 6.0 } else { 4.0 };
    factor * (dim as f64 + 4.0) * T::EPS
}

/// The precision [`Brute::euclidean_gemm`] prefilters in.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Precision {
    F32,
    F64,
}

/// The largest and the mean squared norm of the rows shifted by `mu`.
fn centered_sq(p: Points, mu: &[f64]) -> (f64, f64) {
    let (max, sum) = (0..p.rows)
        .map(|i| {
            p.row(i)
                .iter()
                .zip(mu)
                .map(|(x, c)| (x - c) * (x - c))
                .sum::<f64>()
        })
        .fold((0.0, 0.0), |(max, sum), sq| (f64::max(max, sq), sum + sq));
    (max, sum / p.rows.max(1) as f64)
}

/// # Why skipping is exact
/// Both sides are shifted by the training mean `mu` (any shift is valid; this
/// one keeps norms, hence the bound, small for off-origin data). Let
/// `u = eps/2` (of the lane type `T`), `gamma_n = n u / (1 - n u)`,
/// `x' = fl(x - mu)`, `y' = fl(y - mu)` (then rounded to `T`),
/// `N = |x'|^2 + |y'|^2`, `S` = the reference fold
/// `sum_t fl((x_t - y_t)^2)` and `L` = `SqEuclid::limit(kth)`, so `S > L`
/// implies `distance > kth` strictly. Computed:
/// `nx = fl|x'|^2`, `ny = fl|y'|^2` (error `<= gamma_d N` each);
/// `G = [-2x', 1] . [y', fl((1-c) ny)]` from the GEMM, in any summation order
/// or with FMA (error `<= gamma_{d+1} (N + ny)`);
/// `thr = fl(L - fl((1-c) nx))`, raised to the next `T` value; the pair is
/// skipped iff `G > thr`.
/// Exactly, `D' = |x' - y'|^2` and `D = |x - y|^2` differ by `<= 2 eps N`
/// (each shifted coordinate moved by `<= u|.|`), and `|S - D| <= gamma_{d+2} D
/// <= 2 gamma_{d+2} N`. A skip needs `L < G + nx <~ 2N`, so rounding `thr`
/// costs `<= 2uN`. Collecting terms, `G > thr` implies
/// `S > L + c N - (2.5 d + 6.5) eps N (1 + O(eps))`, and with
/// `c = 4 (d + 4) eps` (over 1.5x that loss) `S > L`. Underflow adds absolute
/// errors below `d * 2^-1074` in f64, covered by the `MIN_POSITIVE` inside `L`,
/// and below `(d + 2) * 2^-149` in f32, covered by `T::TINY` per term.
///
/// # Why the first rows are seeded
/// Scanned in order, the j-th training row enters a query's top k with
/// probability k / j, so a plain scan computes `k (1 + ln(n / k))` exact
/// distances and heap pushes (608 per query on King County, where they were
/// 85% of the time, against 7% for the GEMM). The first `seed` rows are
/// instead taken all at once: the k rows with the smallest products become
/// the query's first top k, whose exact k-th distance is then nearly the final
/// one, and only the rows whose products might still beat it are offered
/// (see [`seed`]). Which k rows seed the heap is a matter of speed alone:
/// every row is either pushed or skipped by the bound above.
///
/// # Products in bf16
/// Where `halves` allows (f32 only), products may come from bf16 copies of
/// the packed values (see [`bf16`]), the margin widened by [`bf16::SLACK`]:
/// the seed's from a group's first batch on, back to f32 after it where
/// that batch's margins exceed [`SEED_TILE_MARGIN_SHARE`], and a group's
/// products after the seed where [`TILE_MARGIN_SHARE`] says so. Thresholds
/// are derived again whenever the margin changes.
fn prefilter<T: Lane>(
    train: Points,
    ids: Option<&[u32]>,
    queries: Points,
    stats: &Brute,
    (seeds, seed_tiles): (&SeedRows<T>, Option<&SeedTiles>),
    halves: Bf16,
    out: &mut Neighbors,
) {
    let (n, m, dim) = (train.rows, queries.rows, train.dim);
    let mu = &stats.mu[..];
    let width = dim + 1;
    let group = query_group(width);
    let halves = if T::from_tiles(&[]).is_some() {
        halves
    } else {
        Bf16::Never
    };
    let shrink = 1.0 - slack::<T>(dim);
    let mut seeding = Seeding::new(out.k, seeds, seed_tiles.filter(|_| halves != Bf16::Never));
    let seed = seeding.rows();
    let mut tiles = (halves != Bf16::Never).then(|| {
        let cols = TRAIN_BLOCK.max(seed::MOST_ROWS);
        (
            Tiles::new(dim, group.min(m), cols),
            Rows::new(dim, TRAIN_BLOCK),
        )
    });
    let mut scratch = T::scratch().take();
    let mut tops = std::mem::take(&mut scratch.tops);
    tops.truncate(group.min(m));
    for top in &mut tops {
        top.reset(out.k);
    }
    tops.resize_with(group.min(m), || TopK::new(out.k));
    let mut scan = Scan {
        train,
        ids,
        limits: [f64::INFINITY; QUERY_GROUP],
        thr: [T::from_f64(f64::INFINITY); QUERY_GROUP],
        qnorm: [0.0; QUERY_GROUP],
        tops,
        fresh: Vec::with_capacity(out.k),
        shrink,
        tiny: 4.0 * (dim as f64 + 2.0) * T::TINY,
    };

    // Whether the first `n` queries of a group, seeded, take tile products
    // under `share`.
    let pays = |scan: &Scan<T>, n: usize, share: f64| match halves {
        Bf16::Never => false,
        Bf16::WhereItPays => {
            let (qnorm, limits) = (&scan.qnorm[..n], &scan.limits[..n]);
            tiles_pay(qnorm, limits, stats.train_mean_sq, share)
        }
        #[cfg(test)]
        Bf16::Always => true,
        #[cfg(test)]
        Bf16::FirstBatch => false,
    };

    let qstride = group + PAD;
    let tstride = TRAIN_BLOCK + PAD;
    let Scratch {
        qpack, tpack, prod, ..
    } = &mut scratch;
    let qpack = sized(qpack, qstride * width);
    let tpack = sized(tpack, tstride * width);
    let prod = sized(prod, QUERY_BLOCK * TRAIN_BLOCK);

    for q0 in (0..m).step_by(group) {
        let qn = group.min(m - q0);
        for i in 0..qn {
            scan.qnorm[i] = pack_row(queries.row(q0 + i), mu, &mut qpack[i..], qstride, -2.0);
            qpack[dim * qstride + i] = T::from_f64(1.0);
        }
        if let Some((tiles, _)) = &mut tiles {
            for i in 0..qn {
                tiles.pack_query(i, dim, |t| qpack[t * qstride + i].to_f32());
            }
        }
        scan.limits.fill(f64::INFINITY);
        scan.thr.fill(T::from_f64(f64::INFINITY));
        scan.shrink = shrink;
        let seed_tiles = tiles
            .as_mut()
            .map(|(tiles, _)| (tiles, shrink - bf16::SLACK));
        seeding.run(
            &mut scan,
            queries,
            (q0, qn),
            (qpack, qstride),
            seed_tiles,
            |scan, n| pays(scan, n, SEED_TILE_MARGIN_SHARE),
        );
        let on_tiles = pays(&scan, qn, TILE_MARGIN_SHARE);
        if on_tiles {
            scan.shrink = shrink - bf16::SLACK;
        }
        // The seed may have left thresholds in either margin.
        for i in 0..qn {
            scan.tighten(i);
        }

        for t0 in (seed..n).step_by(TRAIN_BLOCK) {
            let tn = TRAIN_BLOCK.min(n - t0);
            if let Some((tiles, rows)) = tiles.as_mut().filter(|_| on_tiles) {
                for j in 0..tn {
                    rows.pack(j, train.row(t0 + j), mu, scan.shrink);
                }
                for i0 in (0..qn).step_by(bf16::STRIP) {
                    let (prod, stride) = tiles.products(rows, i0, (0, tn));
                    // Some: `tiles` is on only for f32.
                    if let Some(prod) = T::from_tiles(prod) {
                        for b in 0..bf16::STRIP.min(qn - i0) {
                            let (i, g) = (i0 + b, &prod[b * stride..][..tn]);
                            scan.pass(i, queries.row(q0 + i), g, t0, None);
                        }
                    }
                }
                continue;
            }
            for j in 0..tn {
                let ny = pack_row(train.row(t0 + j), mu, &mut tpack[j..], tstride, 1.0);
                tpack[dim * tstride + j] = T::from_f64(shrink * ny);
            }
            let (a, b) = ((&qpack[..], qstride), (&tpack[..], tstride));
            let block = &mut Block {
                scan: &mut scan,
                queries,
                q0,
                t0,
            };
            if T::survivors_in_place((qn, width, tn), a, b, block) {
                continue;
            }
            for b0 in (0..qn).step_by(QUERY_BLOCK) {
                let bn = QUERY_BLOCK.min(qn - b0);
                gemm(
                    (bn, width, tn),
                    (&qpack[b0..], qstride),
                    (tpack, tstride),
                    prod,
                );
                for (b, g) in prod.chunks_exact(tn).take(bn).enumerate() {
                    let i = b0 + b;
                    scan.pass(i, queries.row(q0 + i), g, t0, None);
                }
            }
        }
        for (i, top) in scan.tops.iter_mut().take(qn).enumerate() {
            out.store(q0 + i, top);
        }
    }
    scratch.tops = scan.tops;
    if scratch.bytes() <= SCRATCH_KEPT_BYTES {
        T::scratch().set(scratch);
    }
}

/// A [`prefilter`] call's buffers, which each thread keeps for its next call.
/// Allocated afresh, the buffers of a King County partition's call (432
/// queries: 1.7 MB) came back from the kernel page by page, ~3,200 page faults
/// a predict and 7% of its CPU time.
#[derive(Default)]
struct Scratch<T> {
    qpack: Vec<T>,
    tpack: Vec<T>,
    prod: Vec<T>,
    tops: Vec<TopK>,
}

/// The most a thread keeps in its [`Scratch`]: the buffers of partitions of
/// a thousand or so queries at k = 100, not the megabytes of large groups or
/// large k, whose calls are long enough to pay for their allocation.
const SCRATCH_KEPT_BYTES: usize = 2 << 20;

impl<T> Scratch<T> {
    fn bytes(&self) -> usize {
        let values = self.qpack.capacity() + self.tpack.capacity() + self.prod.capacity();
        let tops: usize = self.tops.iter().map(TopK::bytes).sum();
        values * std::mem::size_of::<T>() + tops
    }
}

/// The first `len` values of `v`, grown to hold them: what a previous call
/// left there stays, and is written before it is read.
fn sized<T: Default + Clone>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    if v.len() < len {
        v.resize(len, T::default());
    }
    &mut v[..len]
}

/// Whether a call's products may come from bf16 copies (see [`bf16`]).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Bf16 {
    Never,
    /// Per query group, where [`tiles_pay`] says so.
    WhereItPays,
    /// Every group: how the tests reach the tiles on any data.
    #[cfg(test)]
    Always,
    /// A group's first seed batch only, as where its margins say tiles do
    /// not pay: how the tests reach the switch to f32.
    #[cfg(test)]
    FirstBatch,
}

/// The most of a query's k-th squared distance that the bf16 margin may
/// take for tiles to pay. The margin lets through every row within
/// `bf16::SLACK (|x'|^2 + |y'|^2)` of the k-th squared distance, each costing
/// an exact distance: uniform d = 32, 1M rows (margin ~2% of it: 0.064 of
/// 2.93) took 1.35x the exact distances of f32 products and ran 1.7x
/// faster; King County's last 906 rows after the seed (d = 18, ~9%: 0.33 of
/// 3.6) ran 1.1x slower on tiles.
const TILE_MARGIN_SHARE: f64 = 0.05;

/// [`TILE_MARGIN_SHARE`] for the seed's products, judged on a group's first
/// batch (its limits are exact whatever the products' precision, so that
/// batch is seeded on tiles too: in f32 it was 7% of King County's time,
/// one batch of 27 at ten times a tile batch's cost). The seed takes a
/// product with every one of its rows for every query (16k at most), the
/// tiles' chief saving, while the wider margin adds only the rows in a thin
/// shell around the k-th distance: King County (margin ~5% of it) offered
/// 24% more rows and ran 11% faster on tiles (2 threads, 0.083 -> 0.075 s).
/// 0.25 is a judgement, not a measured break-even: at a quarter of the k-th
/// distance the shell holds about as many rows as the top k once the data
/// fill 8 or more dimensions.
const SEED_TILE_MARGIN_SHARE: f64 = 0.25;

/// Whether most of seeded queries' margins stay within `share` of their
/// k-th squared distances (judged with the mean training norm). Speed only:
/// either way every row is offered or provably out.
fn tiles_pay(qnorm: &[f64], limits: &[f64], train_mean_sq: f64, share: f64) -> bool {
    let narrow = qnorm
        .iter()
        .zip(limits)
        .filter(|&(q, l)| bf16::SLACK * (q + train_mean_sq) <= share * l)
        .count();
    2 * narrow > qnorm.len()
}

/// A query group's running top k and the thresholds derived from them.
struct Scan<'a, T> {
    train: Points<'a>,
    ids: Option<&'a [u32]>,
    /// `SqEuclid::limit` of each query's current k-th distance.
    limits: [f64; QUERY_GROUP],
    /// The product above which a training row is provably out (see [`prefilter`]).
    thr: [T; QUERY_GROUP],
    /// `fl|x' |^2` of each query.
    qnorm: [f64; QUERY_GROUP],
    tops: Vec<TopK>,
    /// Seed distances on their way into a heap.
    fresh: Vec<(f64, u32)>,
    shrink: f64,
    tiny: f64,
}

/// A query group's products with training rows `t0..`, judged as they come
/// (see [`Lane::survivors_in_place`]): the rows that pass are offered as
/// [`Scan::pass`] offers them.
struct Block<'s, 'a, T> {
    scan: &'s mut Scan<'a, T>,
    queries: Points<'a>,
    /// The group's first query.
    q0: usize,
    t0: usize,
}

#[cfg(target_arch = "x86_64")]
impl sgemm::Sieve for Block<'_, '_, f32> {
    fn threshold(&self, i: usize) -> f32 {
        self.scan.thr[i]
    }

    fn pass(&mut self, i: usize, j: usize, product: f32) {
        // The threshold may have tightened since the tile was compared.
        if product <= self.scan.thr[i] {
            let q = self.queries.row(self.q0 + i);
            self.scan.offer(i, q, self.t0 + j);
        }
    }
}

impl<T: Lane> Scan<'_, T> {
    /// Offers training row `j` to query `i` with its exact distance.
    #[inline]
    fn offer(&mut self, i: usize, q: &[f64], j: usize) {
        self.tops[i].prefetch();
        if let Some(d) = SqEuclid.within(q, self.train.row(j), self.limits[i]) {
            let id = self.ids.map_or(j as u32, |ids| ids[j]);
            if self.tops[i].push(d, id) {
                self.tighten(i);
            }
        }
    }

    /// [`Scan::offer`] of every row of `rows`, each asked of the memory
    /// [`PREFETCH_ROWS`] offers ahead: they are scattered over the training rows.
    fn offer_each(&mut self, i: usize, q: &[f64], rows: &[usize]) {
        for &j in rows.iter().take(PREFETCH_ROWS) {
            prefetch(self.train.row(j));
        }
        for (n, &j) in rows.iter().enumerate() {
            if let Some(&ahead) = rows.get(n + PREFETCH_ROWS) {
                prefetch(self.train.row(ahead));
            }
            self.offer(i, q, j);
        }
    }

    /// Derives query `i`'s limit and threshold from its current k-th distance.
    fn tighten(&mut self, i: usize) {
        self.limits[i] = SqEuclid.limit(self.tops[i].kth(), self.train.dim);
        self.thr[i] = T::at_least(self.limits[i] - self.shrink * self.qnorm[i] + self.tiny);
    }

    /// Makes the rows of `seeds` (keyed, exactly k of them) query `i`'s top
    /// k: their distances are independent, so they are computed four at a time
    /// apart from the heap, which is then built in one go.
    fn seed(&mut self, i: usize, q: &[f64], seeds: &[u64]) {
        let (train, ids) = (self.train, self.ids);
        let id = |j: usize| ids.map_or(j as u32, |ids| ids[j]);
        self.fresh.clear();
        let quads = seeds.chunks_exact(4);
        for &e in quads.remainder() {
            let j = e as u32 as usize;
            let d = distance(Metric::Euclidean, q, train.row(j));
            self.fresh.push((d, id(j)));
        }
        let ahead = seeds.len() - seeds.len() % 4;
        for &e in &seeds[..ahead.min(PREFETCH_ROWS)] {
            prefetch(train.row(e as u32 as usize));
        }
        for (c, quad) in quads.enumerate() {
            for &e in seeds[..ahead].iter().skip(PREFETCH_ROWS + 4 * c).take(4) {
                prefetch(train.row(e as u32 as usize));
            }
            let j: [usize; 4] = std::array::from_fn(|r| quad[r] as u32 as usize);
            let d = fold4(SqEuclid, q, j.map(|j| train.row(j)));
            self.fresh
                .extend((0..4).map(|r| (SqEuclid.finish(d[r]), id(j[r]))));
        }
        self.tops[i].fill_best(self.fresh.drain(..));
        self.tighten(i);
    }

    /// Offers every row of `g` (the products of query `i` with training rows
    /// `t0..`) that its threshold does not rule out, except those marked in
    /// `skip`.
    fn pass(&mut self, i: usize, q: &[f64], g: &[T], t0: usize, skip: Option<&[u64]>) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present, checked just above.
            unsafe { self.pass_avx2(i, q, g, t0, skip) };
            return;
        }
        self.pass_with::<false>(i, q, g, t0, skip);
    }

    /// [`Scan::pass`] with AVX2 compares: the whole loop is compiled for
    /// AVX2 (the x86-64 baseline stops at SSE2), so the mask of each chunk
    /// is computed inline rather than through a call.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn pass_avx2(&mut self, i: usize, q: &[f64], g: &[T], t0: usize, skip: Option<&[u64]>) {
        self.pass_with::<true>(i, q, g, t0, skip);
    }

    /// `AVX2` must be true only where the CPU supports AVX2.
    #[inline(always)]
    fn pass_with<const AVX2: bool>(
        &mut self,
        i: usize,
        q: &[f64],
        g: &[T],
        t0: usize,
        skip: Option<&[u64]>,
    ) {
        for (c, chunk) in g.chunks(64).enumerate() {
            let mut bits = at_most::<T, AVX2>(chunk, self.thr[i]);
            if let Some(skip) = skip {
                bits &= !skip[c];
            }
            while bits != 0 {
                let o = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                // The threshold may have tightened since the mask was taken.
                if chunk[o] <= self.thr[i] {
                    self.offer(i, q, t0 + c * 64 + o);
                }
            }
        }
    }
}

/// Bit `o` set iff `chunk[o] <= t`, for a chunk of at most 64 values.
/// `AVX2` must be true only where the CPU supports AVX2.
#[inline(always)]
fn at_most<T: Lane, const AVX2: bool>(chunk: &[T], t: T) -> u64 {
    match <&[T; 64]>::try_from(chunk) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `AVX2` is true only where AVX2 was detected.
        Ok(full) if AVX2 => unsafe { T::at_most_64_avx2(full, t) },
        Ok(full) => T::at_most_64(full, t),
        Err(_) => at_most_any(chunk, t),
    }
}

#[inline]
fn at_most_any<T: Lane>(chunk: &[T], t: T) -> u64 {
    chunk
        .iter()
        .enumerate()
        .fold(0, |bits, (o, &v)| bits | (u64::from(v <= t) << o))
}

/// SSE2 (every x86-64 has it) masks of 4 f32 or 2 f64 compares at a time.
/// The compiler's own mask for [`at_most_any`] is built from shuffles and
/// shifts, and made King County's brute force 1.4x slower. Most chunks hold
/// no survivor, so their compares are OR-ed and tested once before any bit is
/// assembled.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128, __m128d, _mm_cmple_pd, _mm_cmple_ps, _mm_loadu_pd, _mm_loadu_ps, _mm_movemask_pd,
        _mm_movemask_ps, _mm_or_pd, _mm_or_ps, _mm_set1_pd, _mm_set1_ps, _mm_setzero_pd,
        _mm_setzero_ps,
    };

    #[inline]
    pub(super) fn at_most_f32(v: &[f32; 64], t: f32) -> u64 {
        // SAFETY: SSE2 is part of every x86-64 target, and the loads read
        // lanes 4g..4g + 4 < 64 of the array.
        unsafe {
            let mut cmp: [__m128; 16] = [_mm_setzero_ps(); 16];
            let mut any = _mm_setzero_ps();
            let tv = _mm_set1_ps(t);
            for (g, c) in cmp.iter_mut().enumerate() {
                *c = _mm_cmple_ps(_mm_loadu_ps(v.as_ptr().add(4 * g)), tv);
                any = _mm_or_ps(any, *c);
            }
            if _mm_movemask_ps(any) == 0 {
                return 0;
            }
            let mut bits = 0;
            for (g, &c) in cmp.iter().enumerate() {
                bits |= (_mm_movemask_ps(c) as u64) << (4 * g);
            }
            bits
        }
    }

    #[inline]
    pub(super) fn at_most_f64(v: &[f64; 64], t: f64) -> u64 {
        // SAFETY: as above, lanes 2g..2g + 2 < 64.
        unsafe {
            let mut cmp: [__m128d; 32] = [_mm_setzero_pd(); 32];
            let mut any = _mm_setzero_pd();
            let tv = _mm_set1_pd(t);
            for (g, c) in cmp.iter_mut().enumerate() {
                *c = _mm_cmple_pd(_mm_loadu_pd(v.as_ptr().add(2 * g)), tv);
                any = _mm_or_pd(any, *c);
            }
            if _mm_movemask_pd(any) == 0 {
                return 0;
            }
            let mut bits = 0;
            for (g, &c) in cmp.iter().enumerate() {
                bits |= (_mm_movemask_pd(c) as u64) << (2 * g);
            }
            bits
        }
    }
}

/// [`sse2`]'s masks eight f32 or four f64 compares at a time. The compares
/// are ordered, as SSE2's `cmple` is: false for NaN, as `<=` is.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256, __m256d, _CMP_LE_OQ, _mm256_cmp_pd, _mm256_cmp_ps, _mm256_loadu_pd,
        _mm256_loadu_ps, _mm256_movemask_pd, _mm256_movemask_ps, _mm256_or_pd, _mm256_or_ps,
        _mm256_set1_pd, _mm256_set1_ps, _mm256_setzero_pd, _mm256_setzero_ps,
    };

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn at_most_f32(v: &[f32; 64], t: f32) -> u64 {
        let mut cmp: [__m256; 8] = [_mm256_setzero_ps(); 8];
        let mut any = _mm256_setzero_ps();
        let tv = _mm256_set1_ps(t);
        for (g, c) in cmp.iter_mut().enumerate() {
            // SAFETY: lanes 8g..8g + 8 < 64 of the array.
            let lanes = unsafe { _mm256_loadu_ps(v.as_ptr().add(8 * g)) };
            *c = _mm256_cmp_ps::<_CMP_LE_OQ>(lanes, tv);
            any = _mm256_or_ps(any, *c);
        }
        if _mm256_movemask_ps(any) == 0 {
            return 0;
        }
        let mut bits = 0;
        for (g, &c) in cmp.iter().enumerate() {
            bits |= (_mm256_movemask_ps(c) as u32 as u64) << (8 * g);
        }
        bits
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn at_most_f64(v: &[f64; 64], t: f64) -> u64 {
        let mut cmp: [__m256d; 16] = [_mm256_setzero_pd(); 16];
        let mut any = _mm256_setzero_pd();
        let tv = _mm256_set1_pd(t);
        for (g, c) in cmp.iter_mut().enumerate() {
            // SAFETY: lanes 4g..4g + 4 < 64 of the array.
            let lanes = unsafe { _mm256_loadu_pd(v.as_ptr().add(4 * g)) };
            *c = _mm256_cmp_pd::<_CMP_LE_OQ>(lanes, tv);
            any = _mm256_or_pd(any, *c);
        }
        if _mm256_movemask_pd(any) == 0 {
            return 0;
        }
        let mut bits = 0;
        for (g, &c) in cmp.iter().enumerate() {
            bits |= (_mm256_movemask_pd(c) as u32 as u64) << (4 * g);
        }
        bits
    }
}

/// Rows [`Scan::seed`] and [`Scan::offer_each`] ask the memory for ahead of
/// their distances: the rows are scattered over the training set, and four
/// at a time left most of each row's wait in the seed's time.
const PREFETCH_ROWS: usize = 16;

/// Writes `scale * fl(x - mu)` (scale is a power of two, so exact) and
/// returns `fl|x - mu|^2`, the quantities the error bound is stated for.
fn pack_row<T: Lane>(x: &[f64], mu: &[f64], dst: &mut [T], stride: usize, scale: f64) -> f64 {
    let mut sq = 0.0;
    for ((d, &v), &c) in dst.iter_mut().step_by(stride).zip(x).zip(mu) {
        let s = v - c;
        sq += s * s;
        *d = T::from_f64(scale * s);
    }
    sq
}

fn column_means(p: Points) -> Vec<f64> {
    let mut mu = vec![0.0; p.dim];
    for i in 0..p.rows {
        for (m, &v) in mu.iter_mut().zip(p.row(i)) {
            *m += v;
        }
    }
    let inv = 1.0 / p.rows as f64;
    mu.iter_mut().for_each(|m| *m *= inv);
    mu
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Products near a threshold: ties, neighbours one step away, zeros of
    /// both signs, infinities and NaN.
    fn chunk_and_threshold() -> impl Strategy<Value = (Vec<f64>, f64)> {
        let v = prop_oneof![
            (-4i32..5).prop_map(f64::from),
            Just(0.5f64.next_up()),
            Just(-0.0),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::NAN),
            -1e3f64..1e3,
        ];
        (
            prop::collection::vec(v, 64),
            prop_oneof![(-4i32..5).prop_map(f64::from), Just(0.5)],
        )
    }

    proptest! {
        /// Every way of taking a full chunk's mask (SSE2, AVX2 where the CPU
        /// has it) is the plain one, in f32 and f64.
        #[test]
        fn chunk_masks_are_the_plain_compares((v, t) in chunk_and_threshold()) {
            let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            let (c64, c32) = (<&[f64; 64]>::try_from(&v[..]).unwrap(), <&[f32; 64]>::try_from(&v32[..]).unwrap());
            prop_assert_eq!(f64::at_most_64(c64, t), at_most_any(&v, t));
            prop_assert_eq!(f32::at_most_64(c32, t as f32), at_most_any(&v32, t as f32));
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present, checked just above.
                prop_assert_eq!(unsafe { f64::at_most_64_avx2(c64, t) }, at_most_any(&v, t));
                // SAFETY: as above.
                prop_assert_eq!(unsafe { f32::at_most_64_avx2(c32, t as f32) }, at_most_any(&v32, t as f32));
            }
        }

        /// Keys order as the values compare (f32; `-0` and `+0` alike), and
        /// never against them (f64, through its f32 rounding): the seed
        /// offers a row by its key alone.
        #[test]
        fn order_keys_follow_the_compares(a in any::<u64>(), b in any::<u64>(), zeros in any::<bool>()) {
            let (a, b) = if zeros { (0.0, -0.0) } else { (f64::from_bits(a), f64::from_bits(b)) };
            prop_assume!(!a.is_nan() && !b.is_nan());
            let (a32, b32) = (a as f32, b as f32);
            prop_assert_eq!(a32 <= b32, a32.order_key() <= b32.order_key(), "{} vs {}", a32, b32);
            if a <= b {
                prop_assert!(a.order_key() <= b.order_key(), "{} vs {}", a, b);
            }
        }

        /// The narrowed threshold is the least f32 at or above the f64 one.
        #[test]
        fn at_least_is_the_least_f32_not_below(bits in any::<u64>()) {
            let v = f64::from_bits(bits);
            prop_assume!(v.is_finite() && v.abs() < f64::from(f32::MAX));
            let r = f32::at_least(v);
            prop_assert!(f64::from(r) >= v);
            let below = if r > 0.0 {
                f32::from_bits(r.to_bits() - 1)
            } else if r == 0.0 {
                -f32::from_bits(1)
            } else {
                f32::from_bits(r.to_bits() + 1)
            };
            prop_assert!(f64::from(below) < v, "{below} is not below {v}");
        }
    }

    /// Training rows on a sphere around the query, their radii 1e-10 apart: f32
    /// rounding alone would misorder them, so only the error margin keeps the
    /// f32 prefilter from skipping a true neighbour (this fails with `slack` 0).
    #[test]
    fn f32_prefilter_keeps_near_ties_on_a_sphere() {
        let (n, dim, k) = (2000, 32, 50);
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut unit = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let centre: Vec<f64> = (0..dim).map(|t| 0.3 + t as f64 * 0.01).collect();
        let mut train = Vec::with_capacity(n * dim);
        for i in 0..n {
            let dir: Vec<f64> = (0..dim).map(|_| unit()).collect();
            let norm = dir.iter().map(|v| v * v).sum::<f64>().sqrt();
            // Radii in a scrambled order, so the heap fills with far rows first.
            let radius = 1.0 + ((i * 7919) % n) as f64 * 1e-10;
            // Every other row moves 2 per coordinate away: out of the running, but
            // it pulls the training mean off the query, so the GEMM's products
            // (and their f32 rounding) are large next to the radii's spread.
            let shift = if i % 2 == 1 { 2.0 } else { 0.0 };
            train.extend(
                dir.iter()
                    .zip(&centre)
                    .map(|(v, c)| c + shift + v / norm * radius),
            );
        }
        let (tp, qp) = (Points::new(&train, n, dim), Points::new(&centre, 1, dim));
        assert_eq!(Brute::new(tp).precision(qp), Some(Precision::F32));
        let mut all: Vec<(f64, u32)> = (0..n)
            .map(|j| {
                (
                    super::super::distance(Metric::Euclidean, &centre, tp.row(j)),
                    j as u32,
                )
            })
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let want: Vec<u32> = all[..k].iter().map(|e| e.1).collect();
        assert_eq!(brute_knn(tp, qp, k, Metric::Euclidean).indices, want);
    }

    /// However many rows seed the top k (none, exactly k, some, all), and in
    /// either precision, the answer is the sort-everything one, the rows after
    /// the seed going through the plain scan. (Calls through `Brute::knn` seed
    /// from all rows below 16k, so this is where the mixed case is checked.)
    #[test]
    fn any_seed_size_gives_the_oracle() {
        let (n, m, dim) = (700, 40, 5);
        let value = |i: usize, t: usize| match (i * 7 + t * 3) % 5 {
            0 => ((i * 13 + t) % 3) as f64,
            _ => ((i * 7919 + t * 104_729) % 1000) as f64 / 250.0,
        };
        let train: Vec<f64> = (0..n * dim).map(|x| value(x / dim, x % dim)).collect();
        let queries: Vec<f64> = (0..m * dim)
            .map(|x| value(x / dim * 31 + 5, x % dim))
            .collect();
        let (tp, qp) = (Points::new(&train, n, dim), Points::new(&queries, m, dim));
        let stats = Brute::new(tp);
        for k in [1, 10, 100] {
            let want = sort_everything(tp, qp, k);
            for seed in [0, k, k + 1, 130, n - 1, n] {
                every_prefilter(
                    tp,
                    qp,
                    &stats,
                    seed,
                    &want,
                    &format!("k = {k}, seed = {seed}"),
                );
            }
        }
    }

    /// A sample that misleads: the sampled seed rows (every fourth) lie
    /// near the queries and the rest far, so fewer than k rows fall under
    /// the sample's bound and the seed must collect every row.
    #[test]
    fn a_misleading_sample_gives_the_oracle() {
        let (n, m, dim, k) = (2048, 20, 3, 100);
        let value = |x: usize| ((x * 7919 + x / 3 * 104_729) % 1000) as f64 / 1000.0;
        let train: Vec<f64> = (0..n * dim)
            .map(|x| value(x) + if x / dim % 4 == 0 { 0.0 } else { 5.0 })
            .collect();
        let queries: Vec<f64> = (0..m * dim).map(|x| value(x + 17)).collect();
        let (tp, qp) = (Points::new(&train, n, dim), Points::new(&queries, m, dim));
        let stats = Brute::new(tp);
        let want = sort_everything(tp, qp, k);
        every_prefilter(tp, qp, &stats, n, &want, "every fourth row near");
    }

    /// The group decisions quoted at [`TILE_MARGIN_SHARE`]: uniform d = 32
    /// (centered squared norms 2.67, seeded limits 2.93) takes tiles, King
    /// County's (18, 3.6) keeps f32, and a group takes them only when most of
    /// its queries would.
    #[test]
    fn tiles_go_where_the_margin_is_narrow() {
        let pays = |q: &[f64], l: &[f64], t| tiles_pay(q, l, t, TILE_MARGIN_SHARE);
        assert!(pays(&[2.67; 4], &[2.93; 4], 2.67));
        assert!(!pays(&[18.0; 4], &[3.6; 4], 18.0));
        assert!(!pays(
            &[2.67, 2.67, 18.0, 18.0],
            &[2.93, 2.93, 3.6, 3.6],
            2.67
        ));
        assert!(pays(
            &[2.67, 2.67, 2.67, 18.0],
            &[2.93, 2.93, 2.93, 3.6],
            2.67
        ));
    }

    /// The prefilter seeded from `seed` rows gives `want` in f32 with the
    /// GEMM, in f32 on tiles for every group and for each group's first
    /// seed batch (where the CPU has them), and in f64.
    fn every_prefilter(
        tp: Points,
        qp: Points,
        stats: &Brute,
        seed: usize,
        want: &Neighbors,
        what: &str,
    ) {
        let mut ways = vec![Bf16::Never];
        if bf16::available() {
            ways.extend([Bf16::Always, Bf16::FirstBatch]);
        }
        for how in ways {
            let mut got = Neighbors::for_call(tp, qp, want.k);
            let seeds = SeedRows::<f32>::first(tp, &stats.mu, seed);
            let tiles = SeedTiles::first(tp, &stats.mu, seed);
            prefilter(tp, None, qp, stats, (&seeds, Some(&tiles)), how, &mut got);
            assert_eq!(&got, want, "f32, {what}, {how:?}");
        }
        let mut got = Neighbors::for_call(tp, qp, want.k);
        let seeds = SeedRows::<f64>::first(tp, &stats.mu, seed);
        prefilter(tp, None, qp, stats, (&seeds, None), Bf16::Never, &mut got);
        assert_eq!(&got, want, "f64, {what}");
    }

    /// The Euclidean k nearest of every query by sorting all training rows.
    fn sort_everything(tp: Points, qp: Points, k: usize) -> Neighbors {
        let mut want = Neighbors::for_call(tp, qp, k);
        for qi in 0..qp.rows {
            let mut all: Vec<(f64, u32)> = (0..tp.rows)
                .map(|j| (distance(Metric::Euclidean, qp.row(qi), tp.row(j)), j as u32))
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for (r, &(d, j)) in all[..k].iter().enumerate() {
                want.distances[qi * k + r] = d;
                want.indices[qi * k + r] = j;
            }
        }
        want
    }

    /// Queries past one group (and past GEMM blocks within it, the last one
    /// short) keep their own top k, thresholds and norms.
    #[test]
    fn queries_across_groups_give_the_oracle() {
        let (n, m, k) = (600, QUERY_GROUP + QUERY_BLOCK + 37, 10);
        let value = |x: usize| ((x * 7919 + x / 3 * 104_729) % 1000) as f64 / 100.0;
        // Groups of one GEMM block (d = 3) and of four (d = 31).
        for dim in [3, 31] {
            assert_eq!(
                query_group(dim + 1) / QUERY_BLOCK,
                if dim < 7 { 1 } else { 4 }
            );
            let train: Vec<f64> = (0..n * dim).map(value).collect();
            let queries: Vec<f64> = (0..m * dim).map(|x| value(x * 31 + 5)).collect();
            let (tp, qp) = (Points::new(&train, n, dim), Points::new(&queries, m, dim));
            let (stats, want) = (Brute::new(tp), sort_everything(tp, qp, k));
            for seed in [0, 2 * k] {
                every_prefilter(
                    tp,
                    qp,
                    &stats,
                    seed,
                    &want,
                    &format!("d = {dim}, seed = {seed}"),
                );
            }
        }
    }

    /// A thread's calls share its buffers ([`Scratch`]): a call after a larger
    /// one (more queries, wider rows, greater k, its values left in the
    /// buffers) and after a smaller one still gives the oracle.
    #[test]
    fn calls_on_one_thread_leave_nothing_to_the_next() {
        let value = |x: usize| ((x * 7919 + x / 5 * 104_729) % 1000) as f64 / 100.0;
        let calls = [
            (500, 700, 9, 40),
            (300, 20, 3, 5),
            (500, 700, 9, 40),
            (800, 90, 12, 60),
        ];
        for (c, &(n, m, dim, k)) in calls.iter().enumerate() {
            let train: Vec<f64> = (0..n * dim).map(|x| value(x + c)).collect();
            let queries: Vec<f64> = (0..m * dim).map(|x| value(x * 31 + 5 + c)).collect();
            let (tp, qp) = (Points::new(&train, n, dim), Points::new(&queries, m, dim));
            let got = Brute::new(tp).knn(tp, None, qp, k, Metric::Euclidean);
            assert_eq!(
                got,
                sort_everything(tp, qp, k),
                "call {c}: n, m, d, k = {n}, {m}, {dim}, {k}"
            );
        }
    }

    /// Each scale of data takes the precision meant for it, and every one equals
    /// the sort-everything answer, including rows f32 cannot tell apart.
    #[test]
    fn each_precision_stays_exact() {
        let (n, m, dim, k) = (600, 30, 32, 20);
        for (scale, want) in [
            (1.0, Some(Precision::F32)),
            (1e16, Some(Precision::F64)),
            (1e160, None),
        ] {
            // Rows of 0..3 plus offsets of 1e-9: distinct in f64, equal in f32.
            let value = |i: usize, t: usize| {
                scale * (((i * 7 + t * 13) % 3) as f64 + ((i * 31 + t) % 5) as f64 * 1e-9)
            };
            let train: Vec<f64> = (0..n * dim).map(|x| value(x / dim, x % dim)).collect();
            let queries: Vec<f64> = (0..m * dim)
                .map(|x| value(x / dim * 17 + 3, x % dim))
                .collect();
            let (tp, qp) = (Points::new(&train, n, dim), Points::new(&queries, m, dim));
            assert_eq!(Brute::new(tp).precision(qp), want, "scale {scale}");
            let got = brute_knn(tp, qp, k, Metric::Euclidean);
            for qi in 0..m {
                let mut all: Vec<(f64, u32)> = (0..n)
                    .map(|j| {
                        (
                            super::super::distance(Metric::Euclidean, qp.row(qi), tp.row(j)),
                            j as u32,
                        )
                    })
                    .collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let idx: Vec<u32> = all[..k].iter().map(|e| e.1).collect();
                assert_eq!(
                    &got.indices[qi * k..(qi + 1) * k],
                    &idx[..],
                    "scale {scale} query {qi}"
                );
            }
        }
    }
}

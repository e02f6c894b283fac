//! Each query's top k seeded from the first training rows at once (see
//! "Why the first rows are seeded" at [`prefilter`](super::prefilter)).
//!
//! A batch of queries first takes its products with a strided sample of the
//! seed rows, which guesses for each query a bound that about 2k rows'
//! products stay under. It then takes its products with the seed rows a
//! chunk at a time, collecting each query's rows under its bound while the
//! chunk is still in cache: with every product of a batch stored first (16
//! queries x 16k rows, 1 MiB), reading them again for the sample and the
//! collection was a third of King County's time. The k least products of
//! those rows seed the query's top k; the rest are offered where their
//! products stay under the threshold that the exact k-th distance gives,
//! and where that threshold lies above the bound, every seed row is.
//! Where the guess falls short of k rows, the query collects every row.

use std::collections::BinaryHeap;

use super::super::bf16::{self, Rows, Tiles};
use super::super::metric::Points;
use super::{Lane, PAD, Scan, at_most, gemm_packed, pack_row, slack};

/// Training rows that seed each query's top k at most: past a few thousand
/// the saving flattens (`k ln(n / seed)` pushes are left).
const MAX_ROWS: usize = 16 * 1024;
/// Bytes the packed seed rows may take: wide rows seed from fewer of them.
const MAX_BYTES: usize = 2 << 20;
/// Queries seeded together: one strip of bf16 products.
const BATCH: usize = bf16::STRIP;
/// Seed rows whose products a batch takes at once from [`gemm_packed`]: `BATCH x
/// CHUNK` f32 fill 32 KiB, which stay in L1 while they are collected. King
/// County's seed ran 10% faster than with 1,024 rows (128 KiB, in L2).
const CHUNK: usize = 256;
/// [`CHUNK`] for the bf16 products, which took 1,024 rows a call 5-10% faster
/// than 256 (d = 32 on 16 cores).
const TILE_CHUNK: usize = 1024;
/// Products sampled per query to guess its bound.
const SAMPLE: usize = 512;
/// The most rows whose products [`Seeding::run`] takes from the tiles at once:
/// a chunk, or a sample (fewer than `2 * SAMPLE`).
pub(super) const MOST_ROWS: usize = max(TILE_CHUNK, 2 * SAMPLE);

/// The larger of `a` and `b`, for constants.
const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// Every how many seed rows one is sampled, of `rows`.
fn sample_step(rows: usize) -> usize {
    (rows / SAMPLE).max(1)
}

/// How many of `rows` training rows of `dim` values seed the top k in `T`.
fn seed_rows<T>(rows: usize, dim: usize) -> usize {
    let fit = MAX_BYTES / ((dim + 1) * std::mem::size_of::<T>());
    rows.min(MAX_ROWS).min(fit)
}

/// The seed rows, packed once per index for one precision: `fl(y - mu)`,
/// then `shrink fl|y - mu|^2`, as in [`prefilter`](super::prefilter).
#[derive(Clone, Debug)]
pub(in crate::knn::kernel) struct SeedRows<T> {
    rows: usize,
    /// Values per packed row: the features and the norm term.
    width: usize,
    /// Rows `0, step, 2 step, ...` are the sample.
    step: usize,
    /// The rows feature by feature (value `t` of row `j` at
    /// `t * (rows + PAD) + j`), as [`gemm_packed`] takes them.
    pack: Vec<T>,
    /// The sampled rows, likewise.
    sample: Vec<T>,
}

impl<T: Lane> SeedRows<T> {
    /// The first [`seed_rows`] rows of `train`, shifted by `mu`.
    pub(super) fn new(train: Points, mu: &[f64]) -> SeedRows<T> {
        let rows = seed_rows::<T>(train.rows, train.dim);
        SeedRows::first(train, mu, rows)
    }

    /// The first `rows` rows of `train`.
    pub(super) fn first(train: Points, mu: &[f64], rows: usize) -> SeedRows<T> {
        let shrink = 1.0 - slack::<T>(train.dim);
        let step = sample_step(rows);
        let pack = |rows: &[usize]| {
            let (stride, dim) = (rows.len() + PAD, train.dim);
            let mut pack = vec![T::default(); stride * (dim + 1)];
            for (c, &j) in rows.iter().enumerate() {
                let ny = pack_row(train.row(j), mu, &mut pack[c..], stride, 1.0);
                pack[dim * stride + c] = T::from_f64(shrink * ny);
            }
            pack
        };
        SeedRows {
            rows,
            width: train.dim + 1,
            step,
            pack: pack(&(0..rows).collect::<Vec<_>>()),
            sample: pack(&(0..rows).step_by(step).collect::<Vec<_>>()),
        }
    }
}

/// The seed rows in bf16 for the bf16 products, with the bf16 margin's shrink
/// (f32 prefilter only).
#[derive(Clone, Debug)]
pub(in crate::knn::kernel) struct SeedTiles {
    rows: Rows,
    sample: Rows,
}

impl SeedTiles {
    /// [`SeedRows::new`]'s rows for f32.
    pub(super) fn new(train: Points, mu: &[f64]) -> SeedTiles {
        SeedTiles::first(train, mu, seed_rows::<f32>(train.rows, train.dim))
    }

    /// The first `rows` rows of `train`.
    pub(super) fn first(train: Points, mu: &[f64], rows: usize) -> SeedTiles {
        let shrink = 1.0 - slack::<f32>(train.dim) - bf16::SLACK;
        let step = sample_step(rows);
        let pack = |rows: &[usize]| {
            let mut tiles = Rows::new(train.dim, rows.len());
            for (c, &j) in rows.iter().enumerate() {
                tiles.pack(c, train.row(j), mu, shrink);
            }
            tiles
        };
        SeedTiles {
            rows: pack(&(0..rows).collect::<Vec<_>>()),
            sample: pack(&(0..rows).step_by(step).collect::<Vec<_>>()),
        }
    }
}

/// Where a batch's products come from.
enum Source<'a, T> {
    /// [`gemm_packed`], with rows packed feature by feature.
    Gemm(&'a SeedRows<T>),
    /// bf16 products, the group's queries packed in the [`Tiles`].
    Tiles(&'a mut Tiles, &'a SeedTiles),
}

impl<T: Lane> Source<'_, T> {
    /// Calls `f(b, g)` with the products `g` of query `b0 + b` of the group
    /// (`b < bn`) with rows `j0..j0 + n` of the seed rows, or of the sample.
    /// `qpack` holds the group's queries as [`gemm_packed`] takes them.
    fn products(
        &mut self,
        (qpack, stride): (&[T], usize),
        (b0, bn): (usize, usize),
        (sample, j0, n): (bool, usize, usize),
        buf: &mut [T],
        mut f: impl FnMut(usize, &[T]),
    ) {
        match self {
            Source::Gemm(seeds) => {
                let pack = if sample { &seeds.sample } else { &seeds.pack };
                let rows = pack.len() / seeds.width;
                gemm_packed(
                    (bn, seeds.width, n),
                    (&qpack[b0..], stride),
                    (&pack[j0..], rows),
                    buf,
                );
                for b in 0..bn {
                    f(b, &buf[b * n..(b + 1) * n]);
                }
            }
            Source::Tiles(tiles, seeds) => {
                let rows = if sample { &seeds.sample } else { &seeds.rows };
                let (prod, pitch) = tiles.products(rows, b0, (j0, n));
                // Some: tiles serve only f32.
                if let Some(prod) = T::from_tiles(prod) {
                    for b in 0..bn {
                        f(b, &prod[b * pitch..][..n]);
                    }
                }
            }
        }
    }

    /// [`Source::products`] with every seed row, [`CHUNK`] or [`TILE_CHUNK`]
    /// rows at a time: `f(b, j0, g)` for the chunk from row `j0`.
    fn chunks(
        &mut self,
        qpack: (&[T], usize),
        batch: (usize, usize),
        rows: usize,
        buf: &mut [T],
        mut f: impl FnMut(usize, usize, &[T]),
    ) {
        let step = match self {
            Source::Gemm(_) => CHUNK,
            Source::Tiles(..) => TILE_CHUNK,
        };
        for j0 in (0..rows).step_by(step) {
            let chunk = (false, j0, step.min(rows - j0));
            self.products(qpack, batch, chunk, buf, |b, g| f(b, j0, g));
        }
    }
}

/// A product and its row in one integer, the product's order first.
#[inline]
fn keyed<T: Lane>(v: T, row: usize) -> u64 {
    u64::from(v.order_key()) << 32 | row as u64
}

/// The buffers that seed each query's top k from [`SeedRows`].
pub(super) struct Seeding<'a, T> {
    k: usize,
    /// Rows seeded: all of the [`SeedRows`], or none where they are fewer
    /// than k.
    rows: usize,
    seeds: &'a SeedRows<T>,
    tiles: Option<&'a SeedTiles>,
    /// One chunk's products for a batch, or its sample's.
    buf: Vec<T>,
    /// Per query of a batch: the bound, and `(key, row)` of the rows under it.
    bounds: [T; BATCH],
    cands: Vec<Vec<u64>>,
    /// The `rank + 1` least keys of a sample, largest on top: most sampled
    /// rows then cost one compare, where a selection over the whole sample
    /// partitioned it two or three times.
    least: BinaryHeap<u64>,
    /// The seeded rows, so a full second look does not offer them twice.
    seeded: Vec<u64>,
    /// The rows of a query's candidates that its threshold lets through.
    through: Vec<usize>,
}

impl<'a, T: Lane> Seeding<'a, T> {
    /// Seeds from `seeds`, and from `tiles` where given and they pay (see
    /// [`Seeding::run`]).
    pub(super) fn new(k: usize, seeds: &'a SeedRows<T>, tiles: Option<&'a SeedTiles>) -> Self {
        let rows = if seeds.rows >= k { seeds.rows } else { 0 };
        let sampled = seeds.sample.len() / seeds.width;
        Seeding {
            k,
            rows,
            seeds,
            tiles,
            buf: vec![T::default(); BATCH * CHUNK.max(sampled)],
            bounds: [T::from_f64(f64::INFINITY); BATCH],
            cands: (0..BATCH).map(|_| Vec::with_capacity(4 * k)).collect(),
            least: BinaryHeap::new(),
            seeded: vec![0; rows.div_ceil(64)],
            through: Vec::with_capacity(4 * k),
        }
    }

    /// Rows seeded: the plain scan starts after them.
    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// Seeds queries `q0..q0 + qn`, whose packed form is `qpack` (query `i`'s
    /// value `t` at `t * stride + i`). Where `tiles` is given (the group's
    /// queries packed there) and [`SeedTiles`] are, the batches take bf16
    /// products, `scan`'s margin widened to `bf16_shrink` for them, unless
    /// the first one's margins say they do not pay (`pays`): the rest then
    /// take f32 products. Leaves `scan.shrink` as it found it; thresholds
    /// may be in either margin.
    pub(super) fn run(
        &mut self,
        scan: &mut Scan<T>,
        queries: Points,
        (q0, qn): (usize, usize),
        qpack: (&[T], usize),
        tiles: Option<(&mut Tiles, f64)>,
        pays: impl Fn(&Scan<T>, usize) -> bool,
    ) {
        let (s, k, step) = (self.rows, self.k, self.seeds.step);
        if s == 0 {
            return;
        }
        let rank = (2 * k).div_ceil(step) + 4;
        let sampled = s.div_ceil(step);
        let shrink = scan.shrink;
        let mut gemm = Source::Gemm(self.seeds);
        let mut bf16 = None;
        if let Some(((tiles, bf16_shrink), seeds)) = tiles.zip(self.tiles) {
            bf16 = Some(Source::Tiles(tiles, seeds));
            scan.shrink = bf16_shrink;
        }
        for b0 in (0..qn).step_by(BATCH) {
            let bn = BATCH.min(qn - b0);
            let batch = (b0, bn);
            let src = bf16.as_mut().unwrap_or(&mut gemm);
            let Seeding {
                buf,
                bounds,
                cands,
                least,
                seeded,
                through,
                ..
            } = &mut *self;
            src.products(qpack, batch, (true, 0, sampled), buf, |b, g| {
                bounds[b] = least_bound(least, g, rank);
                cands[b].clear();
            });
            src.chunks(qpack, batch, s, buf, |b, j0, g| {
                collect(&mut cands[b], g, bounds[b], j0);
            });
            for b in 0..bn {
                let i = b0 + b;
                let q = queries.row(q0 + i);
                if cands[b].len() < k {
                    // The guess fell short: every row is a candidate.
                    bounds[b] = T::from_f64(f64::INFINITY);
                    cands[b].clear();
                    src.chunks(qpack, batch, s, buf, |c, j0, g| {
                        if c == b {
                            collect(&mut cands[b], g, bounds[b], j0);
                        }
                    });
                }
                let cand = &mut cands[b];
                if cand.len() > k {
                    cand.select_nth_unstable(k - 1);
                }
                let (first, rest) = cand.split_at(k);
                scan.seed(i, q, first);
                if scan.thr[i] <= bounds[b] {
                    // Every row the threshold lets through was collected.
                    // Keys order as the products compare, or (f64) as their
                    // f32 roundings, which lets a few more rows through.
                    let top = scan.thr[i].order_key();
                    through.clear();
                    through.extend(
                        rest.iter()
                            .filter(|&&e| (e >> 32) as u32 <= top)
                            .map(|&e| e as u32 as usize),
                    );
                    scan.offer_each(i, q, through);
                    continue;
                }
                for &e in first {
                    let j = e as u32 as usize;
                    seeded[j / 64] |= 1 << (j % 64);
                }
                src.chunks(qpack, batch, s, buf, |c, j0, g| {
                    if c == b {
                        scan.pass(i, q, g, j0, Some(&seeded[j0 / 64..]));
                    }
                });
                for &e in first {
                    seeded[e as u32 as usize / 64] = 0;
                }
            }
            if b0 == 0 && bf16.is_some() && !pays(scan, bn) {
                bf16 = None;
                scan.shrink = shrink;
            }
        }
        scan.shrink = shrink;
    }
}

/// The bound that `rank + 1` of the sampled products `g` stay under (its
/// `rank`-th least, from 0), or infinity where the sample has no more.
fn least_bound<T: Lane>(least: &mut BinaryHeap<u64>, g: &[T], rank: usize) -> T {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present, checked just above.
        return unsafe { least_bound_avx2(least, g, rank) };
    }
    least_bound_with::<T, false>(least, g, rank)
}

/// [`least_bound`] with AVX2 compares, as [`collect_avx2`].
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn least_bound_avx2<T: Lane>(least: &mut BinaryHeap<u64>, g: &[T], rank: usize) -> T {
    least_bound_with::<T, true>(least, g, rank)
}

/// Once the heap is full, only products at most its top's value can enter
/// it: a greater one has a key at least the top's (keys order as the values
/// compare) and a later row, so it is checked 64 at a time by vector compares
/// before any key is made. `AVX2` must be true only where the CPU supports AVX2.
#[inline(always)]
fn least_bound_with<T: Lane, const AVX2: bool>(
    least: &mut BinaryHeap<u64>,
    g: &[T],
    rank: usize,
) -> T {
    least.clear();
    if g.len() <= rank {
        return T::from_f64(f64::INFINITY);
    }
    least.extend(g[..=rank].iter().enumerate().map(|(j, &v)| keyed(v, j)));
    let value = |least: &BinaryHeap<u64>| {
        least
            .peek()
            .map_or(T::from_f64(f64::INFINITY), |&top| g[top as u32 as usize])
    };
    let mut top = value(least);
    for (c, chunk) in g[rank + 1..].chunks(64).enumerate() {
        let mut bits = at_most::<T, AVX2>(chunk, top);
        while bits != 0 {
            let o = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let key = keyed(chunk[o], rank + 1 + c * 64 + o);
            if let Some(mut least) = least.peek_mut().filter(|least| key < **least) {
                *least = key;
            }
        }
        top = value(least);
    }
    top
}

/// Appends to `cand` the key of every product of `g` (rows `j0..`) that is at
/// most `t`.
fn collect<T: Lane>(cand: &mut Vec<u64>, g: &[T], t: T, j0: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present, checked just above.
        unsafe { collect_avx2(cand, g, t, j0) };
        return;
    }
    collect_with::<T, false>(cand, g, t, j0);
}

/// [`collect`] with AVX2 compares, as `Scan::pass_avx2`.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn collect_avx2<T: Lane>(cand: &mut Vec<u64>, g: &[T], t: T, j0: usize) {
    collect_with::<T, true>(cand, g, t, j0);
}

/// The keys go to `cand`'s spare room, counted in a register: through
/// `push`, each key loaded and stored the vector's length again (the key's
/// store may alias it). King County on one thread: the collection 19% -> 17%
/// of the time (perf), the predict 0.124 -> 0.114 s (means of four alternated
/// medians of 15).
///
/// `AVX2` must be true only where the CPU supports AVX2.
#[inline(always)]
fn collect_with<T: Lane, const AVX2: bool>(cand: &mut Vec<u64>, g: &[T], t: T, j0: usize) {
    cand.reserve(g.len());
    let spare = cand.spare_capacity_mut();
    let mut n = 0;
    for (c, chunk) in g.chunks(64).enumerate() {
        let mut bits = at_most::<T, AVX2>(chunk, t);
        while bits != 0 {
            let o = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            spare[n].write(keyed(chunk[o], j0 + c * 64 + o));
            n += 1;
        }
    }
    let len = cand.len() + n;
    // SAFETY: the `n` keys after the old length were written just above
    // (`n <= g.len()`, the room reserved, as `spare[n]` checks).
    unsafe { cand.set_len(len) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample's bound is its `rank`-th least product (ties and zeros of
    /// both signs included), or infinity where the sample holds no more.
    #[test]
    fn the_bound_is_the_ranked_product() {
        let mut rng = super::super::super::tests::Rng(11);
        for n in [1, 12, 100, 512, 700] {
            let g: Vec<f64> = (0..n)
                .map(|j| match j % 7 {
                    0 => 0.0,
                    1 => -0.0,
                    2 => 1.5,
                    3 => 1.5 + 1e-12, // the same f32, hence the same key, as 1.5
                    _ => rng.unit() * 8.0 - 4.0,
                })
                .collect();
            let single: Vec<f32> = g.iter().map(|&v| v as f32).collect();
            for rank in [0, 1, 11, 99, 511] {
                ranked(&g, rank, &format!("f64, n {n}, rank {rank}"));
                ranked(&single, rank, &format!("f32, n {n}, rank {rank}"));
            }
        }
    }

    /// Both versions of [`least_bound`] against the `rank`-th of all keys
    /// sorted (ties by row, as the keys order them).
    fn ranked<T: Lane + std::fmt::Debug>(g: &[T], rank: usize, what: &str) {
        let mut keys: Vec<u64> = g.iter().enumerate().map(|(j, &v)| keyed(v, j)).collect();
        keys.sort_unstable();
        let want = keys
            .get(rank)
            .map_or(T::from_f64(f64::INFINITY), |&k| g[k as u32 as usize]);
        let mut least = BinaryHeap::new();
        assert_eq!(least_bound(&mut least, g, rank), want, "{what}");
        let portable = least_bound_with::<T, false>(&mut least, g, rank);
        assert_eq!(portable, want, "{what}, portable");
    }
}

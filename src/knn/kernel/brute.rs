//! Exact brute-force k-NN.
//!
//! Euclidean uses a GEMM only as a *prefilter*: `|x|^2 + |y|^2 - 2x.y`
//! suffers catastrophic cancellation, so it decides nothing by itself. A
//! training row is skipped only when a rigorous error bound proves it farther
//! than the current k-th neighbour; every survivor gets its exact
//! [`distance`](super::metric::distance). Memory stays at a few block
//! buffers regardless of the number of queries or training rows.

use super::metric::{CosineDist, Exact, Fold, L1, LInf, Lp, Metric, Points, SqEuclid};
use super::select::{Neighbors, TopK};

/// Queries per block. With [`TRAIN_BLOCK`] this makes a 512 KiB product that
/// stays in L2 while it is scanned; a wide query block amortises packing each
/// training block and the per-call GEMM overhead (256 x 256 measured fastest
/// of 64..512 x 128..1024 at d = 9 and 32).
const QUERY_BLOCK: usize = 256;
/// Training rows per GEMM block.
const TRAIN_BLOCK: usize = 256;
/// Training block size, in bytes, for the direct (non-GEMM) loops: the block
/// stays in L1/L2 while every query of the query block sweeps it.
const DIRECT_BLOCK_BYTES: usize = 32 * 1024;
/// Above this centered squared norm the GEMM terms could overflow and void
/// the error bound, so such calls take the direct path.
const NORM_CAP: f64 = 1e300;

pub fn brute_knn(train: Points, queries: Points, k: usize, metric: Metric) -> Neighbors {
    let mut out = Neighbors::for_call(train, queries, k);
    match metric {
        Metric::Euclidean => {
            if !euclidean_gemm(train, queries, &mut out) {
                direct(SqEuclid, train, queries, &mut out);
            }
        }
        Metric::Manhattan => direct(L1, train, queries, &mut out),
        Metric::Chebyshev => direct(LInf, train, queries, &mut out),
        Metric::Minkowski(p) => direct(Lp(p), train, queries, &mut out),
        Metric::Cosine => direct(CosineDist, train, queries, &mut out),
    }
    out
}

/// Exact distances for every pair, blocked so a training block is reused by a
/// whole block of queries from cache. A distance above the query's current
/// k-th never touches its heap (and a Minkowski fold stops early).
fn direct<E: Exact>(e: E, train: Points, queries: Points, out: &mut Neighbors) {
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
                    if let Some(d) = e.within(q, train.row(j), *limit) {
                        if top.push(d, j as u32) {
                            *limit = e.limit_for(top.kth(), dim);
                        }
                    }
                }
            }
        }
        for (qi, top) in (q0..q1).zip(&mut tops) {
            out.store(qi, top);
        }
    }
}

/// Squared-norm slack factor `c` of the prefilter (see [`euclidean_gemm`]).
fn slack(dim: usize) -> f64 {
    4.0 * (dim as f64 + 4.0) * f64::EPSILON
}

/// Blocked GEMM prefilter plus exact rerank. Returns `false`, doing nothing,
/// when norms are too large for the error bound to be meaningful.
///
/// # Why skipping is exact
/// Both sides are shifted by the training mean `mu` (any shift is valid; this
/// one keeps norms, hence the bound, small for off-origin data). Let
/// `u = eps/2`, `gamma_n = n u / (1 - n u)`, `x' = fl(x - mu)`,
/// `y' = fl(y - mu)`, `N = |x'|^2 + |y'|^2`, `S` = the reference fold
/// `sum_t fl((x_t - y_t)^2)` and `L` = `SqEuclid::limit(kth)`, so `S > L`
/// implies `distance > kth` strictly. Computed:
/// `nx = fl|x'|^2`, `ny = fl|y'|^2` (error `<= gamma_d N` each);
/// `G = [-2x', 1] . [y', fl((1-c) ny)]` from the GEMM, in any summation order
/// or with FMA (error `<= gamma_{d+1} (N + ny)`);
/// `thr = fl(L - fl((1-c) nx))`; the pair is skipped iff `G > thr`.
/// Exactly, `D' = |x' - y'|^2` and `D = |x - y|^2` differ by `<= 2 eps N`
/// (each shifted coordinate moved by `<= u|.|`), and `|S - D| <= gamma_{d+2} D
/// <= 2 gamma_{d+2} N`. A skip needs `L < G + nx <~ 2N`, so rounding `thr`
/// costs `<= 2uN`. Collecting terms, `G > thr` implies
/// `S > L + c N - (2.5 d + 6.5) eps N (1 + O(eps))`, and with
/// `c = 4 (d + 4) eps` (over 1.5x that loss) `S > L`. Underflow adds absolute
/// errors below `d * 2^-1074`, covered by the `MIN_POSITIVE` inside `L`.
fn euclidean_gemm(train: Points, queries: Points, out: &mut Neighbors) -> bool {
    let (n, m, dim) = (train.rows, queries.rows, train.dim);
    let width = dim + 1;
    let mu = column_means(train);
    let centered_sq =
        |row: &[f64]| -> f64 { row.iter().zip(&mu).map(|(x, c)| (x - c) * (x - c)).sum() };
    let fits = |p: Points| (0..p.rows).all(|i| centered_sq(p.row(i)) <= NORM_CAP);
    if !fits(train) || !fits(queries) {
        return false;
    }
    let shrink = 1.0 - slack(dim);

    let mut qpack = vec![0.0; QUERY_BLOCK * width];
    let mut tpack = vec![0.0; TRAIN_BLOCK * width];
    let mut prod = vec![0.0; QUERY_BLOCK * TRAIN_BLOCK];
    let mut qnorm = [0.0; QUERY_BLOCK];
    let mut limits = [f64::INFINITY; QUERY_BLOCK];
    let mut thr = [f64::INFINITY; QUERY_BLOCK];
    let mut tops: Vec<TopK> = (0..QUERY_BLOCK).map(|_| TopK::new(out.k)).collect();

    for q0 in (0..m).step_by(QUERY_BLOCK) {
        let qn = QUERY_BLOCK.min(m - q0);
        for i in 0..qn {
            let dst = &mut qpack[i * width..(i + 1) * width];
            qnorm[i] = pack_row(queries.row(q0 + i), &mu, &mut dst[..dim], -2.0);
            dst[dim] = 1.0;
        }
        limits.fill(f64::INFINITY);
        thr.fill(f64::INFINITY);

        for t0 in (0..n).step_by(TRAIN_BLOCK) {
            let tn = TRAIN_BLOCK.min(n - t0);
            for j in 0..tn {
                let dst = &mut tpack[j * width..(j + 1) * width];
                let ny = pack_row(train.row(t0 + j), &mu, &mut dst[..dim], 1.0);
                dst[dim] = shrink * ny;
            }
            gemm_abt(qn, width, tn, &qpack, &tpack, &mut prod);

            for i in 0..qn {
                let q = queries.row(q0 + i);
                let g = &prod[i * tn..(i + 1) * tn];
                for (c, chunk) in g.chunks(8).enumerate() {
                    // Branch-free test of a whole chunk so the common case
                    // (nothing passes) vectorises. NORM_CAP keeps every
                    // product finite, so `<=` is exactly "not provably out".
                    let t = thr[i];
                    if !chunk.iter().fold(false, |any, &v| any | (v <= t)) {
                        continue;
                    }
                    for (o, &v) in chunk.iter().enumerate() {
                        if v > thr[i] {
                            continue;
                        }
                        let j = t0 + c * 8 + o;
                        if let Some(d) = SqEuclid.within(q, train.row(j), limits[i]) {
                            if tops[i].push(d, j as u32) {
                                limits[i] = SqEuclid.limit(tops[i].kth(), dim);
                                thr[i] = limits[i] - shrink * qnorm[i];
                            }
                        }
                    }
                }
            }
        }
        for (i, top) in tops.iter_mut().take(qn).enumerate() {
            out.store(q0 + i, top);
        }
    }
    true
}

/// Writes `scale * fl(x - mu)` (scale is a power of two, so exact) and
/// returns `fl|x - mu|^2`, the quantities the error bound is stated for.
fn pack_row(x: &[f64], mu: &[f64], dst: &mut [f64], scale: f64) -> f64 {
    let mut sq = 0.0;
    for ((d, &v), &c) in dst.iter_mut().zip(x).zip(mu) {
        let s = v - c;
        sq += s * s;
        *d = scale * s;
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

/// `c[..m*n] = a * b^T` with `a` as `m x k` and `b` as `n x k`, both
/// row-major: the training block is packed row-wise and read transposed
/// through strides, so no transpose copy is made.
fn gemm_abt(m: usize, k: usize, n: usize, a: &[f64], b: &[f64], c: &mut [f64]) {
    assert!(a.len() >= m * k && b.len() >= n * k && c.len() >= m * n);
    // SAFETY: matrixmultiply only exposes a raw-pointer API. With the strides
    // below it reads a[i*k + p] for i < m, p < k; b[j*k + p] for j < n, p < k;
    // and writes c[i*n + j] for i < m, j < n: all in bounds by the assert.
    // beta = 0 means c is written without being read. The slices are
    // distinct borrows, so c aliases neither input.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            1,
            k as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

//! Every kernel must equal, bit for bit, the oracle that sorts all reference
//! distances by (distance, index). Integer-valued and duplicated rows force
//! exact ties, which is where a sloppy bound or tie rule shows.

use super::{KdTree, Metric, Neighbors, Points, brute_knn, distance};
use proptest::prelude::*;

const METRICS: [Metric; 8] = [
    Metric::Euclidean,
    Metric::Manhattan,
    Metric::Chebyshev,
    Metric::Minkowski(1.0),
    Metric::Minkowski(1.5),
    Metric::Minkowski(2.0),
    Metric::Minkowski(3.0),
    Metric::Cosine,
];

/// xorshift64*: deterministic data without a rand dependency (the seed must
/// not be zero).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Cosine needs nonzero rows; forcing them for every metric keeps one data set.
fn nonzero_rows(data: &mut [f64], dim: usize) {
    for row in data.chunks_mut(dim) {
        if row.iter().all(|&v| v == 0.0) {
            row[0] = 1.0;
        }
    }
}

/// `rows` rows of integers in `0..levels`, about a third of them copies of
/// earlier rows.
fn tied_data(rng: &mut Rng, rows: usize, dim: usize, levels: usize) -> Vec<f64> {
    let mut data = Vec::with_capacity(rows * dim);
    for i in 0..rows {
        if i > 0 && rng.below(3) == 0 {
            let src = rng.below(i) * dim;
            data.extend_from_within(src..src + dim);
        } else {
            data.extend((0..dim).map(|_| rng.below(levels) as f64));
        }
    }
    nonzero_rows(&mut data, dim);
    data
}

fn oracle(train: Points, queries: Points, k: usize, metric: Metric) -> Neighbors {
    let mut out = Neighbors {
        k,
        distances: Vec::new(),
        indices: Vec::new(),
    };
    for qi in 0..queries.rows {
        let mut all: Vec<(f64, u32)> = (0..train.rows)
            .map(|j| (distance(metric, queries.row(qi), train.row(j)), j as u32))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        out.distances.extend(all[..k].iter().map(|e| e.0));
        out.indices.extend(all[..k].iter().map(|e| e.1));
    }
    out
}

fn assert_same(got: &Neighbors, want: &Neighbors, ctx: &str) {
    assert_eq!(got.k, want.k, "{ctx}: k");
    assert_eq!(got.indices, want.indices, "{ctx}: indices");
    let bits = |v: &[f64]| v.iter().map(|d| d.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&got.distances),
        bits(&want.distances),
        "{ctx}: distance bits"
    );
}

/// Both algorithms (kd-tree at several leaf sizes) against the oracle.
fn check_all(train: Points, queries: Points, k: usize, metric: Metric, ctx: &str) {
    let want = oracle(train, queries, k, metric);
    assert_same(
        &brute_knn(train, queries, k, metric),
        &want,
        &format!("{ctx} brute"),
    );
    for leaf in [1, 7, 40] {
        let tree = KdTree::build(train.data.to_vec(), train.rows, train.dim, leaf);
        let got = tree.knn(queries, k, metric);
        assert_same(&got, &want, &format!("{ctx} kdtree leaf={leaf}"));
    }
}

#[test]
fn oracle_with_ties_every_metric() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for dim in [1, 3, 9] {
        let (n, m) = (300, 40);
        let train = tied_data(&mut rng, n, dim, 4);
        // Half the queries are copies of training rows: zero-distance ties.
        let mut qdata = tied_data(&mut rng, m, dim, 4);
        for qi in 0..m / 2 {
            let src = rng.below(n) * dim;
            qdata[qi * dim..(qi + 1) * dim].copy_from_slice(&train[src..src + dim]);
        }
        let (tp, qp) = (Points::new(&train, n, dim), Points::new(&qdata, m, dim));
        for metric in METRICS {
            for k in [1, 5, n] {
                check_all(tp, qp, k, metric, &format!("dim={dim} k={k} {metric:?}"));
            }
        }
    }
}

/// Enough rows and queries to cross every block boundary of the kernels,
/// with k = 100 as in production.
#[test]
fn oracle_across_blocks() {
    let mut rng = Rng(42);
    for (dim, levels) in [(9, 4), (16, 0)] {
        let (n, m) = (2600, 150);
        let rows_of = |rng: &mut Rng, rows| {
            if levels > 0 {
                tied_data(rng, rows, dim, levels)
            } else {
                (0..rows * dim).map(|_| rng.unit()).collect()
            }
        };
        let train = rows_of(&mut rng, n);
        let queries = rows_of(&mut rng, m);
        let (tp, qp) = (Points::new(&train, n, dim), Points::new(&queries, m, dim));
        for metric in METRICS {
            check_all(tp, qp, 100, metric, &format!("dim={dim} {metric:?}"));
        }
    }
}

#[test]
fn query_chunking_is_invisible() {
    let mut rng = Rng(7);
    let (n, m, dim) = (1500, 230, 5);
    let train = tied_data(&mut rng, n, dim, 5);
    let queries = tied_data(&mut rng, m, dim, 5);
    let (tp, qp) = (Points::new(&train, n, dim), Points::new(&queries, m, dim));
    let tree = KdTree::build(tp.data.to_vec(), tp.rows, tp.dim, 16);
    for metric in METRICS {
        let k = 37;
        let full = brute_knn(tp, qp, k, metric);
        assert_same(
            &tree.knn(qp, k, metric),
            &full,
            &format!("{metric:?} kd vs brute"),
        );
        let (mut b, mut t) = (Vec::new(), Vec::new());
        let mut start = 0;
        while start < m {
            let end = (start + 1 + rng.below(80)).min(m);
            let chunk = Points::new(&queries[start * dim..end * dim], end - start, dim);
            b.push(brute_knn(tp, chunk, k, metric));
            t.push(tree.knn(chunk, k, metric));
            start = end;
        }
        let concat = |parts: Vec<Neighbors>| Neighbors {
            k,
            distances: parts.iter().flat_map(|p| p.distances.clone()).collect(),
            indices: parts.iter().flat_map(|p| p.indices.clone()).collect(),
        };
        assert_same(&concat(b), &full, &format!("{metric:?} brute chunks"));
        assert_same(&concat(t), &full, &format!("{metric:?} kd chunks"));
    }
}

/// Top-k by the naive `|x|^2 + |y|^2 - 2 x.y`, the expression a GEMM-only
/// kernel would rank by.
fn naive_indices(train: Points, queries: Points, k: usize) -> Vec<u32> {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut out = Vec::new();
    for qi in 0..queries.rows {
        let q = queries.row(qi);
        let mut all: Vec<(f64, u32)> = (0..train.rows)
            .map(|j| {
                let y = train.row(j);
                (dot(q, q) + dot(y, y) - 2.0 * dot(q, y), j as u32)
            })
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        out.extend(all[..k].iter().map(|e| e.1));
    }
    out
}

/// Coordinates near 1e8 differing by ~1e-3: the naive expression loses every
/// significant digit. One layout sits around +1e8 (the training-mean shift
/// rescues precision); the other splits into clusters at +-1e8 so the mean is
/// near 0 and only the error bound keeps the kernel exact.
#[test]
fn cancellation_with_huge_norms() {
    let mut rng = Rng(2024);
    let (n, m, dim, k) = (2000, 60, 4, 10);
    for split in [false, true] {
        let point = |rng: &mut Rng| {
            let sign = if split && rng.below(2) == 0 {
                -1.0
            } else {
                1.0
            };
            (0..dim)
                .map(|_| sign * 1e8 + rng.below(50) as f64 * 1e-3)
                .collect::<Vec<_>>()
        };
        let train: Vec<f64> = (0..n).flat_map(|_| point(&mut rng)).collect();
        let queries: Vec<f64> = (0..m).flat_map(|_| point(&mut rng)).collect();
        let (tp, qp) = (Points::new(&train, n, dim), Points::new(&queries, m, dim));
        let want = oracle(tp, qp, k, Metric::Euclidean);
        assert_ne!(
            naive_indices(tp, qp, k),
            want.indices,
            "test data must defeat the naive GEMM"
        );
        check_all(tp, qp, k, Metric::Euclidean, &format!("split={split}"));
    }
}

/// Squared norms beyond what the GEMM bound tolerates take the direct path.
#[test]
fn huge_coordinates_stay_exact() {
    let mut rng = Rng(5);
    let (n, m, dim) = (400, 20, 3);
    let mut rows_of = |rows| {
        (0..rows * dim)
            .map(|_| rng.below(5) as f64 * 1e151)
            .collect::<Vec<_>>()
    };
    let (train, queries) = (rows_of(n), rows_of(m));
    let (tp, qp) = (Points::new(&train, n, dim), Points::new(&queries, m, dim));
    check_all(tp, qp, 25, Metric::Euclidean, "1e151");
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => (-2i32..3).prop_map(f64::from),
        1 => -10.0f64..10.0,
    ]
}

fn metric() -> impl Strategy<Value = Metric> {
    prop::sample::select(METRICS.to_vec())
}

#[derive(Debug, Clone)]
struct Case {
    train: Vec<f64>,
    queries: Vec<f64>,
    rows: usize,
    dim: usize,
    k: usize,
    leaf: usize,
    metric: Metric,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..200, 1usize..12, 1usize..20).prop_flat_map(|(rows, dim, m)| {
        (
            prop::collection::vec(value(), rows * dim),
            prop::collection::vec(value(), m * dim),
            1..=rows,
            1usize..50,
            metric(),
        )
            .prop_map(move |(mut train, mut queries, k, leaf, metric)| {
                nonzero_rows(&mut train, dim);
                nonzero_rows(&mut queries, dim);
                Case {
                    train,
                    queries,
                    rows,
                    dim,
                    k,
                    leaf,
                    metric,
                }
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn random_matrices_match_oracle(c in case()) {
        let tp = Points::new(&c.train, c.rows, c.dim);
        let qp = Points::new(&c.queries, c.queries.len() / c.dim, c.dim);
        let want = oracle(tp, qp, c.k, c.metric);
        assert_same(&brute_knn(tp, qp, c.k, c.metric), &want, "brute");
        let tree = KdTree::build(tp.data.to_vec(), tp.rows, tp.dim, c.leaf);
        assert_same(&tree.knn(qp, c.k, c.metric), &want, "kdtree");
    }
}

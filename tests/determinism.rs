//! Determinism: outputs are identical, bit for bit, for partitions 1..64 and
//! threads 1..8, and equal to a sequential oracle computed without sparkbook.

use polars::prelude::*;
use proptest::prelude::*;
use sparkbook::prelude::*;

fn session(threads: usize) -> Session {
    Session::builder()
        .threads(threads)
        .progress(false)
        .build()
        .expect("session")
}

/// A row-wise transform with enough floating-point work that any reordering or
/// re-association would show in the bits.
fn transform(x: f64, k: i64) -> f64 {
    (x * 1.000_000_1 + (k as f64).sqrt()).sin() / (1.0 + x.abs())
}

fn frame(xs: &[f64], ks: &[i64]) -> DataFrame {
    df!("x" => xs, "k" => ks).expect("frame")
}

fn bits(df: &DataFrame, name: &str) -> Vec<u64> {
    df.column(name)
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .map(f64::to_bits)
        .collect()
}

fn values() -> impl Strategy<Value = (Vec<f64>, Vec<i64>)> {
    prop::collection::vec((-1e6f64..1e6, 0i64..1_000), 0..400)
        .prop_map(|rows| rows.into_iter().unzip())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn frame_jobs_equal_the_sequential_oracle(
        (xs, ks) in values(),
        partitions in 1usize..=64,
        threads in 1usize..=8,
    ) {
        let sc = session(threads);
        let out = sc
            .parallelize(&frame(&xs, &ks), partitions)?
            .zip_with_index()?
            .map_partitions(|part| -> sparkbook::Result<DataFrame> {
                let x = part.column("x")?.f64()?;
                let k = part.column("k")?.i64()?;
                let y: Vec<f64> = x
                    .into_no_null_iter()
                    .zip(k.into_no_null_iter())
                    .map(|(x, k)| transform(x, k))
                    .collect();
                let row = part.column("row")?.clone();
                Ok(DataFrame::new(part.height(), vec![row, Column::new("y".into(), y)])?)
            })?
            .collect()?;

        let want: Vec<u64> = xs.iter().zip(&ks).map(|(&x, &k)| transform(x, k).to_bits()).collect();
        prop_assert_eq!(bits(&out, "y"), want);
        let rows: Vec<u64> = out.column("row")?.u64()?.into_no_null_iter().collect();
        prop_assert_eq!(rows, (0..xs.len() as u64).collect::<Vec<_>>());
    }

    #[test]
    fn rdd_verbs_equal_the_sequential_oracle(
        (xs, ks) in values(),
        partitions in 1usize..=64,
        threads in 1usize..=8,
    ) {
        let sc = session(threads);
        let pairs: Vec<(f64, i64)> = xs.iter().copied().zip(ks.iter().copied()).collect();
        let rdd = sc.parallelize(&pairs, partitions)?;

        let mapped = rdd.map(|&(x, k)| transform(x, k))?.collect();
        let want: Vec<f64> = pairs.iter().map(|&(x, k)| transform(x, k)).collect();
        prop_assert_eq!(
            mapped.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );

        let kept = rdd.filter(|&(_, k)| k % 3 == 0)?.collect();
        prop_assert_eq!(kept, pairs.iter().copied().filter(|(_, k)| k % 3 == 0).collect::<Vec<_>>());

        let spread = rdd.flat_map(|&(_, k)| 0..k % 4)?.collect();
        prop_assert_eq!(spread, pairs.iter().flat_map(|&(_, k)| 0..k % 4).collect::<Vec<_>>());

        // Integer sums are associative: equal to the oracle at any partition count.
        prop_assert_eq!(rdd.map(|p| p.1)?.fold(0, |a, b| a + b)?, ks.iter().sum::<i64>());
        prop_assert_eq!(rdd.map(|p| p.1)?.reduce(i64::max)?, ks.iter().copied().max());
        let indexed = rdd.zip_with_index().collect();
        prop_assert!(indexed.iter().enumerate().all(|(i, (p, j))| *j == i as u64 && *p == pairs[i]));
    }

    #[test]
    fn float_reductions_do_not_depend_on_threads(
        (xs, _) in values(),
        partitions in 1usize..=64,
        threads in 2usize..8,
    ) {
        // Floating-point sums depend on how elements are grouped into partitions
        // (as in Spark), but for a given partitioning never on the thread count.
        let one = session(1);
        let many = session(threads);
        let sum = |sc: &Session| -> sparkbook::Result<(u64, u64, u64)> {
            let rdd = sc.parallelize(&xs, partitions)?;
            let acc = sc.accumulator(0.0_f64);
            rdd.foreach(|x| acc.add(*x))?;
            let reduced = rdd.reduce(|a, b| a + b)?.unwrap_or(0.0);
            let folded = rdd.fold(0.0, |a, b| a + b)?;
            Ok((acc.value().to_bits(), reduced.to_bits(), folded.to_bits()))
        };
        prop_assert_eq!(sum(&one)?, sum(&many)?);
    }
}

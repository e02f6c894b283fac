//! The engine's behaviour: failures, recovery, sharing, concurrency.

use std::sync::Arc;

use polars::prelude::*;
use sparkbook::prelude::*;

fn session(threads: usize) -> Session {
    Session::builder()
        .threads(threads)
        .progress(false)
        .build()
        .expect("session")
}

fn numbers(n: usize) -> DataFrame {
    df!(
        "x" => (0..n).map(|i| i as f64 * 0.5).collect::<Vec<_>>(),
        "label" => (0..n).map(|i| format!("r{i}")).collect::<Vec<_>>()
    )
    .expect("frame")
}

#[test]
fn frame_round_trip_keeps_rows_in_order() {
    let sc = session(2);
    let df = numbers(1_003);
    for parts in [1, 2, 7, 10, 1_003, 2_000] {
        let back = sc.parallelize(&df, parts).unwrap().collect().unwrap();
        assert_eq!(back, df, "{parts} partitions");
    }
}

#[test]
fn frame_partitions_are_zero_copy_slices() {
    let sc = session(2);
    let df = numbers(100);
    let base = df
        .column("x")
        .unwrap()
        .f64()
        .unwrap()
        .cont_slice()
        .unwrap()
        .as_ptr();
    let parts = sc.parallelize(&df, 4).unwrap();
    for (part, offset) in parts.glom().iter().zip(parts.offsets()) {
        let ptr = part
            .column("x")
            .unwrap()
            .f64()
            .unwrap()
            .cont_slice()
            .unwrap()
            .as_ptr();
        assert_eq!(
            ptr,
            base.wrapping_add(offset),
            "partition at row {offset} was copied"
        );
    }
}

#[test]
fn more_partitions_than_rows_gives_empty_partitions() {
    let sc = session(2);
    let df = numbers(3);
    let parts = sc.parallelize(&df, 5).unwrap();
    assert_eq!(parts.partition_sizes(), vec![0, 1, 0, 1, 1]);
    let doubled = parts
        .map_partitions(|p| p.lazy_free_double())
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(doubled.height(), 3);
}

trait Double {
    fn lazy_free_double(self) -> PolarsResult<DataFrame>;
}

impl Double for DataFrame {
    fn lazy_free_double(mut self) -> PolarsResult<DataFrame> {
        let x = self.column("x")?.as_materialized_series() * 2.0;
        self.with_column(x.into())?;
        Ok(self)
    }
}

#[test]
fn panic_in_partition_is_an_error_and_session_survives() {
    let sc = session(2);
    let df = numbers(40);
    let err = sc
        .parallelize(&df, 4)
        .unwrap()
        .map_partitions_with_index(|i, p| {
            if i == 2 {
                panic!("bad row in partition two");
            }
            p
        })
        .unwrap_err();
    match err {
        Error::Partition {
            index,
            rows,
            message,
        } => {
            assert_eq!((index, rows), (2, 10));
            assert!(message.contains("bad row in partition two"), "{message}");
        }
        other => panic!("expected Error::Partition, got {other:?}"),
    }
    assert!(sc.last_job().unwrap().failed);
    // The same session, and its pool, run the next job.
    let out = sc
        .parallelize(&df, 4)
        .unwrap()
        .map_partitions(|p| p)
        .unwrap();
    assert_eq!(out.collect().unwrap(), df);
    assert!(!sc.last_job().unwrap().failed);
}

#[test]
fn panics_with_string_payloads_keep_their_message() {
    let sc = session(2);
    let err = sc
        .parallelize(vec![1, 2, 3], 3)
        .unwrap()
        .map(|x| {
            if *x == 3 {
                panic!("{}", format!("value {x} not allowed"));
            }
            *x
        })
        .unwrap_err();
    assert!(err.to_string().contains("value 3 not allowed"), "{err}");
    assert!(err.to_string().contains("partition 2"), "{err}");
}

#[test]
fn returned_error_names_lowest_failing_partition_at_any_thread_count() {
    for threads in 1..=4 {
        let sc = session(threads);
        let err = sc
            .parallelize(0..64_i32, 16)
            .unwrap()
            .map_partitions_with_index(|i, xs| {
                if i == 5 || i == 11 {
                    Err(format!("partition {i} refused"))
                } else {
                    Ok(xs.to_vec())
                }
            })
            .unwrap_err();
        match err {
            Error::PartitionFailed {
                index,
                rows,
                source,
            } => {
                assert_eq!((index, rows), (5, 4), "threads {threads}");
                assert_eq!(source.to_string(), "partition 5 refused");
            }
            other => panic!("expected PartitionFailed, got {other:?}"),
        }
    }
}

#[test]
fn polars_errors_in_closures_are_reported_with_their_partition() {
    let sc = session(2);
    let err = sc
        .parallelize(&numbers(10), 2)
        .unwrap()
        .map_partitions(|p| p.select(["no_such_column"]))
        .unwrap_err();
    match &err {
        Error::PartitionFailed {
            index: 0, source, ..
        } => {
            assert!(matches!(**source, Error::Polars(_)));
            assert!(source.to_string().contains("no_such_column"), "{source}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn bad_parameters_are_rejected_by_name() {
    let sc = session(1);
    let check = |err: Error, name: &str| match err {
        Error::InvalidParameter { name: got, .. } => assert_eq!(got, name),
        other => panic!("expected InvalidParameter({name}), got {other:?}"),
    };
    check(sc.parallelize(&numbers(3), 0).unwrap_err(), "partitions");
    check(sc.parallelize(vec![1], 0).unwrap_err(), "partitions");
    check(
        Session::builder().threads(0).build().unwrap_err(),
        "threads",
    );
    check(
        Session::builder()
            .default_partitions(0)
            .build()
            .unwrap_err(),
        "default_partitions",
    );
    check(
        sc.parallelize(vec![1, 2], 1)
            .unwrap()
            .repartition(0)
            .unwrap_err(),
        "partitions",
    );
}

#[test]
fn collect_rejects_partitions_with_different_schemas() {
    let sc = session(2);
    let err = sc
        .parallelize(&numbers(9), 3)
        .unwrap()
        .map_partitions_with_index(|i, p| {
            if i == 2 {
                p.lazy_free_double().and_then(|p| p.select(["label", "x"]))
            } else {
                Ok(p)
            }
        })
        .unwrap()
        .collect()
        .unwrap_err();
    match err {
        Error::SchemaMismatch {
            index,
            expected,
            found,
        } => {
            assert_eq!(index, 2);
            assert!(expected.starts_with("[x: f64"), "{expected}");
            assert!(found.starts_with("[label: str"), "{found}");
        }
        other => panic!("expected SchemaMismatch, got {other:?}"),
    }
}

#[test]
fn zip_with_index_numbers_rows_globally_and_refuses_to_overwrite() {
    let sc = session(3);
    let df = numbers(10);
    let indexed = sc.parallelize(&df, 4).unwrap().zip_with_index().unwrap();
    let rows: Vec<u64> = indexed
        .collect()
        .unwrap()
        .column("row")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(rows, (0..10).collect::<Vec<u64>>());
    let err = indexed.zip_with_index().unwrap_err();
    assert!(
        matches!(err, Error::DuplicateColumn { ref name } if name == "row"),
        "{err}"
    );
}

#[test]
fn broadcast_is_one_copy_shared_by_every_partition() {
    let sc = session(4);
    let table = sc.broadcast(vec![1.5_f64; 100_000]);
    let driver_ptr = table.value().unwrap().as_ptr() as usize;
    let seen = sc
        .parallelize(0..32_u32, 32)
        .unwrap()
        .try_map(|_| table.value().map(|v| v.as_ptr() as usize))
        .unwrap()
        .collect();
    assert!(seen.iter().all(|&p| p == driver_ptr));
    assert_eq!(
        table.size_bytes(),
        100_000 * 8 + std::mem::size_of::<Vec<f64>>()
    );
    // Only the handle's slot and our temporary hold the value: nothing was cloned per partition.
    let value = table.value().unwrap();
    assert_eq!(Arc::strong_count(&value), 2);
}

#[test]
fn destroyed_broadcast_is_an_error_inside_and_outside_jobs() {
    let sc = session(2);
    let b = sc.broadcast(String::from("model"));
    b.destroy();
    assert!(matches!(b.value(), Err(Error::BroadcastDestroyed { id }) if id == b.id()));
    let err = sc
        .parallelize(vec![1, 2], 2)
        .unwrap()
        .try_map(|_| b.value().map(|s| s.len()))
        .unwrap_err();
    match err {
        Error::PartitionFailed {
            index: 0, source, ..
        } => {
            assert!(matches!(*source, Error::BroadcastDestroyed { .. }))
        }
        other => panic!("unexpected {other:?}"),
    }
    b.destroy();
    assert_eq!(b.size_bytes(), 0);
}

#[test]
fn two_jobs_from_two_threads_share_one_session() {
    let sc = session(2);
    let df = numbers(20_000);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|k| {
                let (sc, df) = (sc.clone(), df.clone());
                s.spawn(move || {
                    let factor = (k + 2) as f64;
                    sc.parallelize(&df, 8)
                        .unwrap()
                        .map_partitions(|p| {
                            let x = p.column("x")?.as_materialized_series() * factor;
                            DataFrame::new(x.len(), vec![x.into()])
                        })
                        .unwrap()
                        .collect()
                        .unwrap()
                })
            })
            .collect();
        for (k, h) in handles.into_iter().enumerate() {
            let out = h.join().unwrap();
            let factor = (k + 2) as f64;
            let want: Vec<f64> = (0..20_000).map(|i| i as f64 * 0.5 * factor).collect();
            let got: Vec<f64> = out
                .column("x")
                .unwrap()
                .f64()
                .unwrap()
                .into_no_null_iter()
                .collect();
            assert_eq!(got, want);
        }
    });
}

#[test]
fn jobs_run_on_the_sessions_own_pool() {
    for threads in [1, 3] {
        // Building a new session again (a re-run notebook cell) must work.
        let sc = session(threads);
        let seen = sc
            .parallelize(0..8_u32, 8)
            .unwrap()
            .map(|_| rayon::current_num_threads())
            .unwrap()
            .collect();
        assert!(seen.iter().all(|&n| n == threads), "{seen:?}");
    }
}

#[test]
fn nested_jobs_keep_their_task_context() {
    let sc = session(2);
    let inner = sc.clone();
    let pairs = sc
        .parallelize(0..4_u32, 4)
        .unwrap()
        .try_map(|_| {
            let outer = TaskContext::get().unwrap().partition_id();
            let total = inner.parallelize(0..10_u32, 3)?.fold(0, |a, b| a + b)?;
            let after = TaskContext::get().unwrap().partition_id();
            Ok::<_, Error>((outer, after, total))
        })
        .unwrap()
        .collect();
    assert_eq!(pairs, (0..4).map(|i| (i, i, 45)).collect::<Vec<_>>());
}

#[test]
fn rdd_verbs_match_std_iterators() {
    let sc = session(3);
    let data: Vec<i64> = (0..1_000).map(|i| (i * 7919) % 1_000 - 500).collect();
    let rdd = sc.parallelize(&data, 9).unwrap();
    assert_eq!(rdd.count(), data.len());
    assert_eq!(rdd.collect(), data);
    assert_eq!(rdd.take(5), data[..5].to_vec());
    assert_eq!(rdd.first(), data.first().copied());
    assert_eq!(
        rdd.map(|x| x * x).unwrap().collect(),
        data.iter().map(|x| x * x).collect::<Vec<_>>()
    );
    assert_eq!(
        rdd.filter(|x| *x > 0).unwrap().collect(),
        data.iter().copied().filter(|x| *x > 0).collect::<Vec<_>>()
    );
    assert_eq!(
        rdd.flat_map(|&x| vec![x; (x.rem_euclid(3)) as usize])
            .unwrap()
            .collect(),
        data.iter()
            .flat_map(|&x| vec![x; (x.rem_euclid(3)) as usize])
            .collect::<Vec<_>>()
    );
    assert_eq!(
        rdd.reduce(|a, b| a.max(b)).unwrap(),
        data.iter().copied().max()
    );
    assert_eq!(rdd.fold(0, |a, b| a + b).unwrap(), data.iter().sum::<i64>());
    assert_eq!(
        rdd.aggregate(0usize, |n, x| n + usize::from(*x < 0), |a, b| a + b)
            .unwrap(),
        data.iter().filter(|x| **x < 0).count()
    );
    let glom = rdd.glom();
    assert_eq!(glom.len(), 9);
    assert_eq!(glom.concat(), data);
    let zipped = rdd.zip_with_index().collect();
    assert!(
        zipped
            .iter()
            .enumerate()
            .all(|(i, (x, j))| *j == i as u64 && *x == data[i])
    );
    let re = rdd.repartition(4).unwrap();
    assert_eq!((re.num_partitions(), re.collect()), (4, data.clone()));
    let both = rdd.union(&re);
    assert_eq!(both.num_partitions(), 13);
    assert_eq!(both.collect(), [data.clone(), data].concat());
}

#[test]
fn frame_take_union_and_repartition_keep_order() {
    let sc = session(2);
    let df = numbers(50);
    let parts = sc.parallelize(&df, 6).unwrap();
    assert_eq!(parts.take(0).unwrap().height(), 0);
    assert_eq!(parts.take(17).unwrap(), df.slice(0, 17));
    assert_eq!(parts.take(500).unwrap(), df);
    let re = parts.repartition(3).unwrap();
    assert_eq!(re.partition_sizes(), vec![16, 17, 17]);
    let both = parts.union(&re);
    assert_eq!(both.count(), 100);
    let mut twice = df.clone();
    twice.vstack_mut(&df).unwrap();
    assert_eq!(both.collect().unwrap(), twice);
}

#[test]
fn job_report_records_every_partition() {
    let sc = session(2);
    sc.parallelize(&numbers(30), 3)
        .unwrap()
        .map_partitions(|p| p)
        .unwrap();
    let job = sc.last_job().unwrap();
    assert_eq!(job.verb, "map_partitions");
    assert_eq!(job.threads, 2);
    let rows: Vec<usize> = job.partitions.iter().map(|p| p.rows).collect();
    assert_eq!(rows, vec![10, 10, 10]);
    assert!(
        job.partitions
            .iter()
            .all(|p| p.seconds >= 0.0 && p.seconds <= job.seconds)
    );
}

#[test]
fn accumulator_counts_across_partitions_and_driver() {
    let sc = session(4);
    let acc = sc.accumulator(10u64);
    acc.add(5);
    sc.parallelize(0..1_000_u64, 13)
        .unwrap()
        .foreach(|x| acc.add(*x))
        .unwrap();
    assert_eq!(acc.value(), 15 + 999 * 1_000 / 2);
}

#[test]
fn models_and_handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Session>();
    assert_send_sync::<Broadcast<Vec<f64>>>();
    assert_send_sync::<Accumulator<f64>>();
    assert_send_sync::<PartitionedFrame>();
    assert_send_sync::<Partitioned<String>>();
    assert_send_sync::<Error>();
}

//! The cluster backend against the local session: the same job, the same frame.
//!
//! Every test runs under a watchdog and kills the worker processes it started, so a
//! hang fails the test instead of stalling `cargo test`.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use polars::prelude::*;
use sparkbook::cluster::{ClusterConfig, Registry, WorkerArgs, run_worker};
use sparkbook::knn::{Algorithm, KnnClassifier, KnnRegressor};
use sparkbook::prelude::*;

const WORKER: &str = env!("CARGO_BIN_EXE_sparkbook");

/// Runs `test` on a thread and fails if it takes longer than `limit`.
fn within<T: Send + 'static>(limit: Duration, test: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = done.send(test());
    });
    match result.recv_timeout(limit) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("test did not finish within {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let panic = handle
                .join()
                .expect_err("the test thread ended without a result");
            std::panic::resume_unwind(panic)
        }
    }
}

/// Worker processes that are killed when the test ends, however it ends.
struct Workers(Vec<Child>);

impl Workers {
    /// Starts `sparkbook worker` for processes 1..addresses.len() from a hostfile.
    fn start(addresses: &[String], hostfile: &std::path::Path) -> Workers {
        std::fs::write(hostfile, addresses.join("\n")).unwrap();
        Workers(
            (1..addresses.len())
                .map(|process| {
                    Command::new(WORKER)
                        .args(["worker", "--threads", "1", "--process"])
                        .arg(process.to_string())
                        .arg("--hostfile")
                        .arg(hostfile)
                        .stdin(Stdio::null())
                        .spawn()
                        .unwrap()
                })
                .collect(),
        )
    }

    /// Waits for every worker to exit; their statuses, or None if one did not.
    fn wait(&mut self, limit: Duration) -> Option<Vec<std::process::ExitStatus>> {
        let deadline = Instant::now() + limit;
        let mut statuses = Vec::new();
        for child in &mut self.0 {
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    statuses.push(status);
                    break;
                }
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Some(statuses)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `n` loopback addresses with ports free a moment ago.
fn loopback_addresses(n: usize) -> Vec<String> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

/// The seed workflow on King County houses, on any session.
fn seed_workflow(sc: &Session) -> sparkbook::Result<DataFrame> {
    let houses = sparkbook::datasets::house_prices()?.drop_many(["id", "date"]);
    let (train, test) = train_test_split(&houses, 0.2, 42)?;
    let model = sc.broadcast(KnnRegressor::params(25).fit_frame(&train, "price")?);
    sc.parallelize(&test, 7)?
        .zip_with_index()?
        .map_partitions_fn(KnnPredict, &model)?
        .collect()
}

/// A session with `workers` local worker processes of one thread each.
fn spawned(workers: usize) -> Session {
    Session::builder()
        .progress(false)
        .cluster(ClusterConfig::local_processes(workers, WORKER).worker_threads(1))
        .build()
        .unwrap()
}

fn local() -> Session {
    Session::builder()
        .threads(2)
        .progress(false)
        .build()
        .unwrap()
}

#[test]
fn sessions_and_registries_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Session>();
    assert_send_sync::<Registry>();
    assert_send_sync::<ClusterConfig>();
}

#[test]
fn in_process_cluster_predicts_what_the_local_session_does() {
    within(Duration::from_secs(300), || {
        let addresses = loopback_addresses(3);
        let workers: Vec<_> = (1..3)
            .map(|process| {
                let args = WorkerArgs {
                    process,
                    addresses: addresses.clone(),
                    hostfile: None,
                    threads: Some(1),
                    connect_timeout_ms: 30_000,
                };
                std::thread::spawn(move || run_worker(Registry::builtin(), &args))
            })
            .collect();
        let sc = Session::builder()
            .progress(false)
            .cluster(ClusterConfig::addresses(addresses.clone()))
            .build()
            .unwrap();
        assert_eq!(sc.cluster_workers(), 2);
        let on_cluster = seed_workflow(&sc).unwrap();
        let job = sc.last_job().unwrap();
        assert_eq!(job.partitions.len(), 7);
        assert!(job.bytes_out > 0 && job.bytes_in > 0);
        assert!(on_cluster.equals_missing(&seed_workflow(&local()).unwrap()));
        drop(sc);
        for worker in workers {
            worker.join().unwrap().unwrap();
        }
    });
}

#[test]
fn worker_processes_from_a_hostfile_run_the_seed_workflow_bit_for_bit() {
    within(Duration::from_secs(300), || {
        let addresses = loopback_addresses(3);
        let hostfile = std::env::temp_dir().join(format!("sparkbook-hosts-{}", std::process::id()));
        let mut workers = Workers::start(&addresses, &hostfile);
        let sc = Session::builder()
            .progress(false)
            .cluster(ClusterConfig::hostfile(&hostfile).unwrap())
            .build()
            .unwrap();
        let expected = seed_workflow(&local()).unwrap();
        // Twice: the second job reuses the broadcast already on the workers.
        for _ in 0..2 {
            assert!(seed_workflow(&sc).unwrap().equals_missing(&expected));
        }

        // A classifier with string labels, and a broadcast used by two jobs.
        let wine = sparkbook::datasets::wine().unwrap().drop("target").unwrap();
        let (train, test) = train_test_split(&wine, 0.3, 7).unwrap();
        let model: KnnClassifier<String> = KnnClassifier::params(5)
            .fit_frame(&train, "cultivar")
            .unwrap();
        let local_preds = local()
            .parallelize(&test, 3)
            .unwrap()
            .map_partitions_fn(KnnClassify, &local().broadcast(model.clone()))
            .unwrap()
            .collect()
            .unwrap();
        let b = sc.broadcast(model);
        for partitions in [1, 5] {
            let preds = sc
                .parallelize(&test, partitions)
                .unwrap()
                .map_partitions_fn(KnnClassify, &b)
                .unwrap()
                .collect()
                .unwrap();
            assert!(preds.equals_missing(&local_preds));
        }
        // Destroyed: an error here, and the workers free their copies.
        b.destroy();
        let err = sc
            .parallelize(&test, 2)
            .unwrap()
            .map_partitions_fn(KnnClassify, &b)
            .unwrap_err();
        assert!(matches!(err, Error::BroadcastDestroyed { .. }), "{err}");

        // Dropping the session closes the cluster: the workers exit cleanly.
        drop(sc);
        let statuses = workers
            .wait(Duration::from_secs(20))
            .expect("workers did not exit");
        assert!(statuses.iter().all(|s| s.success()), "{statuses:?}");
        let _ = std::fs::remove_file(&hostfile);
    });
}

#[test]
fn local_processes_are_started_and_stopped_by_the_session() {
    within(Duration::from_secs(300), || {
        let sc = spawned(2);
        assert!(
            seed_workflow(&sc)
                .unwrap()
                .equals_missing(&seed_workflow(&local()).unwrap())
        );
        // Closures run on the driver, next to named functions on the workers.
        let df = df!("x" => [1i64, 2, 3]).unwrap();
        let selected = sc
            .parallelize(&df, 2)
            .unwrap()
            .map_partitions(|p| p.select(["x"]))
            .unwrap()
            .collect()
            .unwrap();
        assert_eq!(selected, df);
    });
}

/// A function the built-in worker does not have.
struct Identity;

impl PartitionFn for Identity {
    const NAME: &'static str = "tests.identity";
    type Payload = u8;
    type State = ();
    fn init(_: Arc<u8>) -> sparkbook::Result<()> {
        Ok(())
    }
    fn call(_: &(), part: DataFrame) -> sparkbook::Result<DataFrame> {
        Ok(part)
    }
}

#[test]
fn a_function_the_workers_lack_is_refused_before_the_job_and_the_session_goes_on() {
    within(Duration::from_secs(300), || {
        let sc = spawned(1);
        let df = df!("x" => [1.0, 2.0]).unwrap();
        // Locally the same function runs.
        let here = local().parallelize(&df, 2).unwrap();
        assert_eq!(
            here.map_partitions_fn(Identity, &local().broadcast(0))
                .unwrap()
                .collect()
                .unwrap(),
            df
        );

        let err = sc
            .parallelize(&df, 2)
            .unwrap()
            .map_partitions_fn(Identity, &sc.broadcast(0u8))
            .unwrap_err();
        match &err {
            Error::Cluster { process, reason } => {
                assert_eq!(*process, Some(1));
                assert!(reason.contains("tests.identity"), "{reason}");
            }
            other => panic!("unexpected error {other}"),
        }
        // A bad input on a worker comes back as the partition's error, naming it.
        let train = df!("x" => [0.0, 1.0, 2.0], "y" => [0.0, 1.0, 2.0]).unwrap();
        let model = sc.broadcast(KnnRegressor::params(1).fit_frame(&train, "y").unwrap());
        let missing_feature = df!("z" => [1.0, 2.0, 3.0]).unwrap();
        let err = sc
            .parallelize(&missing_feature, 3)
            .unwrap()
            .map_partitions_fn(KnnPredict, &model)
            .unwrap_err();
        assert!(
            matches!(err, Error::PartitionFailed { index: 0, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("x"), "{err}");
        // ... and the same session then runs a good job.
        let good = df!("x" => [0.1, 1.9], "y" => [0.0, 2.0]).unwrap();
        let preds = sc
            .parallelize(&good, 2)
            .unwrap()
            .map_partitions_fn(KnnPredict, &model)
            .unwrap()
            .collect()
            .unwrap();
        assert_eq!(
            preds.column("pred").unwrap().f64().unwrap().to_vec(),
            vec![Some(0.0), Some(2.0)]
        );
    });
}

#[test]
fn a_worker_from_another_version_is_refused_with_its_name() {
    within(Duration::from_secs(60), || {
        let addresses = loopback_addresses(2);
        let driver_addresses = addresses.clone();
        let driver = std::thread::spawn(move || {
            Session::builder()
                .progress(false)
                .cluster(
                    ClusterConfig::addresses(driver_addresses)
                        .connect_timeout(Duration::from_secs(20)),
                )
                .build()
        });
        // An impostor speaking the hello of a sparkbook 0.0.0 worker.
        let hello = br#"{"process":1,"sparkbook":"0.0.0","wire":1,"functions":[]}"#;
        let mut message = b"SPARKBK\0".to_vec();
        message.extend_from_slice(&(hello.len() as u32).to_le_bytes());
        message.extend_from_slice(hello);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut stream = loop {
            match TcpStream::connect(&addresses[0]) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("driver never listened: {e}"),
            }
        };
        stream.write_all(&message).unwrap();
        let err = driver.join().unwrap().unwrap_err();
        match &err {
            Error::Cluster { process, reason } => {
                assert_eq!(*process, Some(1));
                assert!(reason.contains("0.0.0"), "{reason}");
            }
            other => panic!("unexpected error {other}"),
        }
    });
}

#[test]
fn unreachable_workers_fail_within_the_connect_timeout() {
    within(Duration::from_secs(60), || {
        let addresses = loopback_addresses(3);
        let started = Instant::now();
        let err = Session::builder()
            .cluster(
                ClusterConfig::addresses(addresses.clone())
                    .connect_timeout(Duration::from_millis(500)),
            )
            .build()
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        match &err {
            Error::Cluster { process, reason } => {
                assert_eq!(*process, Some(1));
                assert!(
                    reason.contains(&addresses[1]) && reason.contains(&addresses[2]),
                    "{reason}"
                );
            }
            other => panic!("unexpected error {other}"),
        }
        // A worker that cannot reach its driver fails the same way.
        let args = WorkerArgs {
            process: 1,
            addresses,
            hostfile: None,
            threads: Some(1),
            connect_timeout_ms: 300,
        };
        let err = run_worker(Registry::builtin(), &args).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Cluster {
                    process: Some(0),
                    ..
                }
            ),
            "{err}"
        );
    });
}

/// A started worker that exits at once (here a binary that is no worker) fails
/// the start as soon as it is seen to exit, after the retries on fresh ports,
/// not at the end of the connect timeout, which `within` would not wait for.
#[cfg(unix)]
#[test]
fn a_worker_that_exits_before_connecting_fails_the_start_naming_it() {
    within(Duration::from_secs(20), || {
        let err = Session::builder()
            .progress(false)
            .cluster(
                ClusterConfig::local_processes(2, "/bin/false")
                    .connect_timeout(Duration::from_secs(60)),
            )
            .build()
            .unwrap_err();
        match &err {
            Error::Cluster { process, reason } => {
                assert!(matches!(process, Some(1 | 2)), "{err}");
                assert!(
                    reason.contains("exited") && reason.contains("before connecting"),
                    "{reason}"
                );
            }
            other => panic!("unexpected error {other}"),
        }
    });
}

#[test]
fn a_worker_killed_mid_job_fails_the_job_naming_it() {
    within(Duration::from_secs(300), || {
        let addresses = loopback_addresses(3);
        let hostfile =
            std::env::temp_dir().join(format!("sparkbook-hosts-kill-{}", std::process::id()));
        let mut workers = Workers::start(&addresses, &hostfile);
        let sc = Session::builder()
            .progress(false)
            .cluster(ClusterConfig::hostfile(&hostfile).unwrap())
            .build()
            .unwrap();
        // Brute force over 100k x 32 features: seconds per partition on one thread.
        let (n, q, d) = (100_000, 60_000, 32);
        let column = |rows: usize, seed: u64| {
            (0..rows)
                .map(|i| (((i as u64 + 1) * (seed + 7919)) % 1_000_003) as f64 / 1e3)
                .collect::<Vec<f64>>()
        };
        let frame = |rows: usize, salt: u64| {
            let mut cols: Vec<Column> = (0..d)
                .map(|j| Column::new(format!("f{j}").into(), column(rows, salt + j as u64)))
                .collect();
            cols.push(Column::new("y".into(), column(rows, salt + 99)));
            DataFrame::new(rows, cols).unwrap()
        };
        let model = KnnRegressor::params(10)
            .algorithm(Algorithm::Brute)
            .fit_frame(&frame(n, 1), "y")
            .unwrap();
        let b = sc.broadcast(model);
        let test = frame(q, 1000);
        let victim = workers.0[1].id();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1000));
            let _ = Command::new("kill")
                .arg("-9")
                .arg(victim.to_string())
                .status();
        });
        let started = Instant::now();
        let err = sc
            .parallelize(&test, 4)
            .unwrap()
            .map_partitions_fn(KnnPredict, &b)
            .unwrap_err();
        let failed_after = started.elapsed();
        killer.join().unwrap();
        match &err {
            Error::Cluster { process, reason } => {
                assert_eq!(*process, Some(2), "{reason}");
            }
            other => panic!("unexpected error {other}"),
        }
        assert!(failed_after < Duration::from_secs(60), "{failed_after:?}");
        // Every later job says the cluster is gone, at once.
        let again = sc
            .parallelize(&test, 2)
            .unwrap()
            .map_partitions_fn(KnnPredict, &b);
        assert!(matches!(again, Err(Error::Cluster { .. })));
        drop(sc);
        // The surviving worker does not linger once its driver is gone.
        assert!(
            workers.wait(Duration::from_secs(30)).is_some(),
            "a worker outlived its driver"
        );
        let _ = std::fs::remove_file(&hostfile);
    });
}

//! The same [`Session`](crate::Session) verbs on a cluster of worker processes,
//! over [timely dataflow](https://github.com/TimelyDataflow/timely-dataflow)
//! (feature `cluster`).
//!
//! Moving a notebook's job to a cluster changes how the session is built, not the
//! job:
//!
//! ```no_run
//! use sparkbook::prelude::*;
//! use sparkbook::cluster::ClusterConfig;
//!
//! // Two worker processes on this machine, on loopback ports.
//! let sc = Session::builder()
//!     .cluster(ClusterConfig::local_processes(2, "target/debug/sparkbook"))
//!     .build()?;
//! # let (train, test) = (sparkbook::polars::prelude::DataFrame::empty(), sparkbook::polars::prelude::DataFrame::empty());
//! let model = sc.broadcast(KnnRegressor::params(100).fit_frame(&train, "price")?);
//! let preds = sc
//!     .parallelize(&test, 8)?
//!     .zip_with_index()?
//!     .map_partitions_fn(KnnPredict, &model)? // runs on the workers
//!     .collect()?;
//! # Ok::<(), Error>(())
//! ```
//!
//! # How a job runs
//! The notebook's process is the driver, process 0 of a timely cluster; worker
//! processes (`sparkbook worker`, or your own binary through [`worker_main`]) are
//! processes 1..=n, one timely worker each, running partitions on all their cores.
//! A [`map_partitions_fn`](crate::PartitionedFrame::map_partitions_fn) is one timely
//! epoch: the broadcast payload goes to each worker process once per broadcast
//! (bincode of its serde form; the worker runs the function's `init` on it once and
//! keeps the state until the broadcast is destroyed), each partition goes to worker
//! `1 + index % n` as an Arrow IPC stream, and the results come back the same way.
//! timely's progress tracking tells the driver when every result is in. The frame
//! collected is the local session's, bit for bit, in the same order. Closures
//! (`map_partitions`) cannot leave the process and run on the driver's threads.
//!
//! # Failures
//! Nothing waits forever: connecting has a deadline
//! ([`ClusterConfig::connect_timeout`]); a worker from another sparkbook build is
//! refused when it connects; a job needing a function some worker lacks fails
//! before it starts, naming the worker; a worker that dies mid-job fails the job
//! within a fraction of a second with an [`Error::Cluster`](crate::Error::Cluster)
//! naming it. After a failure every job on the session returns that error; build a
//! new session to go on. Worker processes the session started are killed with it.
//!
//! # Network
//! [`ClusterConfig::local_processes`] binds 127.0.0.1 only. With
//! [`ClusterConfig::addresses`] or [`ClusterConfig::hostfile`] each process listens
//! on exactly the address listed for it, so nothing listens on all interfaces unless
//! you list `0.0.0.0`. There is no authentication: run clusters on networks you trust.

mod dataflow;
mod driver;
mod net;
mod registry;

use std::path::PathBuf;
use std::time::Duration;

pub(crate) use driver::Cluster;
pub use driver::{WorkerArgs, run_worker, worker_main};
pub use registry::Registry;

use crate::error::{Error, Result};

/// Where a session's cluster comes from; see [`SessionBuilder::cluster`](crate::SessionBuilder::cluster).
///
/// ```
/// use std::time::Duration;
/// use sparkbook::cluster::ClusterConfig;
///
/// let config = ClusterConfig::local_processes(2, "target/debug/sparkbook")
///     .worker_threads(4)
///     .connect_timeout(Duration::from_secs(5));
/// assert_eq!(config.workers(), 2);
/// let joined = ClusterConfig::addresses(["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"]);
/// assert_eq!(joined.workers(), 2);
/// ```
#[derive(Clone, Debug)]
#[must_use = "a config does nothing until passed to `SessionBuilder::cluster`"]
pub struct ClusterConfig {
    pub(crate) launch: Launch,
    pub(crate) connect_timeout: Duration,
    pub(crate) worker_threads: Option<usize>,
}

#[derive(Clone, Debug)]
pub(crate) enum Launch {
    /// Start `workers` processes of `binary` on loopback ports.
    Spawn { workers: usize, binary: PathBuf },
    /// Join processes started elsewhere; this driver is process 0.
    Join { addresses: Vec<String> },
}

impl ClusterConfig {
    /// Starts `workers` worker processes on this machine, from `worker_binary` (the
    /// `sparkbook` CLI built with feature `cluster`, or your own worker binary), on
    /// 127.0.0.1 ports picked at start. The session kills them when it is dropped.
    pub fn local_processes(workers: usize, worker_binary: impl Into<PathBuf>) -> ClusterConfig {
        ClusterConfig {
            launch: Launch::Spawn {
                workers,
                binary: worker_binary.into(),
            },
            connect_timeout: Duration::from_secs(30),
            worker_threads: None,
        }
    }

    /// Joins workers started by hand: `addresses[0]` is this driver's listening
    /// address and `addresses[i]` worker process `i`'s, as in timely's hostfile.
    /// Start each worker with `sparkbook worker --process i --addresses a0,a1,...`.
    pub fn addresses<I, S>(addresses: I) -> ClusterConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClusterConfig {
            launch: Launch::Join {
                addresses: addresses.into_iter().map(Into::into).collect(),
            },
            connect_timeout: Duration::from_secs(30),
            worker_threads: None,
        }
    }

    /// As [`addresses`](Self::addresses), read from a timely hostfile: one
    /// `host:port` per line, the driver's first.
    ///
    /// ```
    /// use sparkbook::cluster::ClusterConfig;
    ///
    /// let path = std::env::temp_dir().join("sparkbook-doc-hosts.txt");
    /// std::fs::write(&path, "127.0.0.1:7000\n127.0.0.1:7001\n")?;
    /// assert_eq!(ClusterConfig::hostfile(&path)?.workers(), 1);
    /// assert!(ClusterConfig::hostfile("/no/such/hostfile").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn hostfile(path: impl AsRef<std::path::Path>) -> Result<ClusterConfig> {
        Ok(ClusterConfig::addresses(read_hostfile(path.as_ref())?))
    }

    /// How long to wait for every process to connect (default 30 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> ClusterConfig {
        self.connect_timeout = timeout;
        self
    }

    /// Threads in each worker process started by
    /// [`local_processes`](Self::local_processes) (default: all cores).
    pub fn worker_threads(mut self, threads: usize) -> ClusterConfig {
        self.worker_threads = Some(threads);
        self
    }

    /// Worker processes in the cluster.
    pub fn workers(&self) -> usize {
        match &self.launch {
            Launch::Spawn { workers, .. } => *workers,
            Launch::Join { addresses } => addresses.len().saturating_sub(1),
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.workers() == 0 {
            return Err(Error::param(
                "cluster",
                "needs at least one worker process (and, with addresses, the driver's first)",
            ));
        }
        if self.worker_threads == Some(0) {
            return Err(Error::param("worker_threads", "must be at least 1, got 0"));
        }
        if self.connect_timeout.is_zero() {
            return Err(Error::param("connect_timeout", "must be longer than zero"));
        }
        Ok(())
    }
}

/// Reads a timely hostfile: one address per non-empty line.
pub(crate) fn read_hostfile(path: &std::path::Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect())
}

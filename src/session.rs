//! The `Session`: Spark's `SparkContext`, on rayon pools of its own.
//!
//! Work never runs on rayon's global pool: a notebook re-runs cells, and
//! `rayon::ThreadPoolBuilder::build_global` succeeds once per process and fails on
//! every re-run (evcxr#411).
//!
//! Nor does a session keep one pool from cell to cell. evcxr compiles every cell into
//! its own library, each with its own copy of rayon's thread-local "current worker";
//! a pool built by an earlier cell's code cannot run a later cell's parallel
//! iterator (rayon asserts `injected && !worker_thread.is_null()`). So each job builds
//! a pool of the session's size, runs on it and drops it: the pool's code and the
//! job's code then always come from the same cell. Starting the threads costs tens of
//! microseconds per thread, against jobs of milliseconds or more. A job started from
//! inside a partition runs its partitions in order on the calling thread, which keeps
//! nested jobs from multiplying threads.
//!
//! # Polars' own pool
//! Polars runs its parallel kernels on a separate global pool sized by
//! `POLARS_MAX_THREADS` (default: all cores), read once when polars first needs it.
//! sparkbook's partition work (slicing, stacking, our models) runs only on the
//! session's pool. If a partition closure itself calls a parallel polars operation,
//! both pools compete for the cores; set `POLARS_MAX_THREADS=1` before the first polars
//! call (in a notebook: before the first cell that touches polars) to keep the total at
//! the session's thread count.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::accumulator::Accumulator;
use crate::broadcast::Broadcast;
use crate::error::{Error, Result};
use crate::partition::Parallelize;
use crate::progress::Progress;
use crate::task::TaskContext;

/// Entry point for parallel jobs, as PySpark's `SparkContext`.
///
/// Cloning a session is cheap and shares its settings and job counter. Every verb runs eagerly: the call
/// that returns is the call that did the work, so an error shows up in the notebook
/// cell that caused it.
///
/// ```
/// use sparkbook::prelude::*;
///
/// let sc = Session::builder().threads(2).default_partitions(4).progress(false).build()?;
/// assert_eq!(sc.threads(), 2);
/// let total = sc
///     .parallelize(1..=100_i64, sc.default_parallelism())?
///     .fold(0, |a, b| a + b)?;
/// assert_eq!(total, 5050);
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    threads: usize,
    default_partitions: usize,
    progress: bool,
    app_name: String,
    next_job: AtomicU64,
    next_broadcast: AtomicU64,
    last_job: Mutex<Option<JobReport>>,
    #[cfg(feature = "cluster")]
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// Settings for a [`Session`]; see [`Session::builder`].
///
/// ```
/// use sparkbook::prelude::*;
///
/// let sc = Session::builder().app_name("houses").threads(1).build()?;
/// assert_eq!(sc.app_name(), "houses");
/// assert!(Session::builder().threads(0).build().is_err());
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `.build()`"]
pub struct SessionBuilder {
    threads: Option<usize>,
    default_partitions: Option<usize>,
    progress: bool,
    app_name: String,
    #[cfg(feature = "cluster")]
    cluster: Option<crate::cluster::ClusterConfig>,
}

impl Default for SessionBuilder {
    fn default() -> Self {
        SessionBuilder {
            threads: None,
            default_partitions: None,
            progress: true,
            app_name: "sparkbook".to_owned(),
            #[cfg(feature = "cluster")]
            cluster: None,
        }
    }
}

impl SessionBuilder {
    /// Worker threads in the session's pool (Spark's `local[n]`). Default: all cores.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// let sc = Session::builder().threads(3).progress(false).build()?;
    /// assert_eq!(sc.threads(), 3);
    /// assert!(Session::builder().threads(0).build().is_err());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// What [`Session::default_parallelism`] returns. Default: the thread count,
    /// as Spark's `local[n]`.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).default_partitions(8).build()?;
    /// assert_eq!(sc.default_parallelism(), 8);
    /// assert!(Session::builder().default_partitions(0).build().is_err());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn default_partitions(mut self, partitions: usize) -> Self {
        self.default_partitions = Some(partitions);
        self
    }

    /// Show progress for running jobs (default: on). Jobs shorter than a second
    /// print nothing either way.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// let builder = Session::builder().progress(false);
    /// assert!(format!("{builder:?}").contains("progress: false"));
    /// let sc = builder.threads(1).build()?;
    /// assert_eq!(sc.parallelize(vec![1, 2], 2)?.map(|x| x + 1)?.collect(), vec![2, 3]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// A name shown in progress lines and job reports.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// let sc = Session::builder().app_name("etl").threads(1).build()?;
    /// assert_eq!(sc.app_name(), "etl");
    /// # Ok::<(), Error>(())
    /// ```
    pub fn app_name(mut self, name: impl Into<String>) -> Self {
        self.app_name = name.into();
        self
    }

    /// Runs named partition functions on a cluster of worker processes (feature
    /// `cluster`); see [`crate::cluster`]. `build` starts or joins the cluster and
    /// fails, within the config's connect timeout, if it cannot.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    /// use sparkbook::cluster::ClusterConfig;
    ///
    /// let missing = ClusterConfig::local_processes(2, "/no/such/worker");
    /// let err = Session::builder().cluster(missing).build().unwrap_err();
    /// assert!(matches!(err, Error::InvalidParameter { name: "worker_binary", .. }));
    /// ```
    #[cfg(feature = "cluster")]
    pub fn cluster(mut self, config: crate::cluster::ClusterConfig) -> Self {
        self.cluster = Some(config);
        self
    }

    /// Creates the session and its thread pool.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// assert_eq!((sc.threads(), sc.default_parallelism()), (2, 2));
    /// let err = Session::builder().threads(0).build().unwrap_err();
    /// assert!(matches!(err, Error::InvalidParameter { name: "threads", .. }));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn build(self) -> Result<Session> {
        let threads = match self.threads {
            Some(0) => return Err(Error::param("threads", "must be at least 1, got 0")),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let default_partitions = match self.default_partitions {
            Some(0) => {
                return Err(Error::param(
                    "default_partitions",
                    "must be at least 1, got 0",
                ));
            }
            Some(n) => n,
            None => threads,
        };
        #[cfg(feature = "cluster")]
        let cluster = match &self.cluster {
            Some(config) => Some(Arc::new(crate::cluster::Cluster::start(config)?)),
            None => None,
        };
        Ok(Session {
            inner: Arc::new(Inner {
                threads,
                default_partitions,
                progress: self.progress,
                app_name: self.app_name,
                next_job: AtomicU64::new(0),
                next_broadcast: AtomicU64::new(0),
                last_job: Mutex::new(None),
                #[cfg(feature = "cluster")]
                cluster,
            }),
        })
    }
}

impl Session {
    /// Starts configuring a session.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// let sc = Session::builder().threads(1).progress(false).build()?;
    /// assert_eq!(
    ///     format!("{sc:?}"),
    ///     r#"Session { app_name: "sparkbook", threads: 1, default_partitions: 1 }"#
    /// );
    /// # Ok::<(), Error>(())
    /// ```
    pub fn builder() -> SessionBuilder {
        SessionBuilder::default()
    }

    /// A session on all cores with default settings (Spark's `local[*]`).
    ///
    /// ```
    /// let sc = sparkbook::Session::local()?;
    /// assert!(sc.threads() >= 1);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    pub fn local() -> Result<Session> {
        Session::builder().build()
    }

    /// Threads in the session's pool.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// let sc = Session::builder().threads(4).progress(false).build()?;
    /// assert_eq!(sc.threads(), 4);
    /// assert_eq!(sc.clone().threads(), 4); // clones share the pool
    /// # Ok::<(), Error>(())
    /// ```
    pub fn threads(&self) -> usize {
        self.inner.threads
    }

    /// The partition count to use when you have no better idea (Spark's
    /// `sc.defaultParallelism`).
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// let sc = Session::builder().threads(3).progress(false).build()?;
    /// assert_eq!(sc.default_parallelism(), 3); // the thread count by default
    /// let parts = sc.parallelize(0..9_u32, sc.default_parallelism())?;
    /// assert_eq!(parts.partition_sizes(), vec![3, 3, 3]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn default_parallelism(&self) -> usize {
        self.inner.default_partitions
    }

    /// The name given with [`SessionBuilder::app_name`].
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// assert_eq!(Session::builder().threads(1).build()?.app_name(), "sparkbook");
    /// let sc = Session::builder().threads(1).app_name("houses").build()?;
    /// assert_eq!(sc.app_name(), "houses");
    /// # Ok::<(), Error>(())
    /// ```
    pub fn app_name(&self) -> &str {
        &self.inner.app_name
    }

    /// Splits data into `partitions` contiguous partitions, as Spark's
    /// `sc.parallelize(data, numSlices)`.
    ///
    /// A `&DataFrame` becomes a [`PartitionedFrame`](crate::PartitionedFrame) of
    /// zero-copy row slices; a `Vec<T>`, slice or integer range becomes a
    /// [`Partitioned<T>`](crate::Partitioned). Partition `i` holds rows
    /// `i*len/n .. (i+1)*len/n` (Spark's rule), so sizes differ by at most one and
    /// more partitions than rows simply leaves some partitions empty.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    /// use polars::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// let df = df!("x" => [1.0, 2.0, 3.0, 4.0, 5.0])?;
    /// let parts = sc.parallelize(&df, 2)?;
    /// assert_eq!(parts.partition_sizes(), vec![2, 3]);
    /// assert_eq!(parts.offsets(), vec![0, 2]);
    /// assert_eq!(sc.parallelize(vec![1, 2], 4)?.partition_sizes(), vec![0, 1, 0, 1]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn parallelize<D: Parallelize>(&self, data: D, partitions: usize) -> Result<D::Output> {
        if partitions == 0 {
            return Err(Error::param("partitions", "must be at least 1, got 0"));
        }
        Ok(data.into_partitions(self, partitions))
    }

    /// Shares `value` with every partition by reference (Spark's `sc.broadcast`).
    ///
    /// The value is moved into one reference-counted allocation; partitions read it
    /// through [`Broadcast::value`] without copying.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// let offset = sc.broadcast(100);
    /// let shifted = sc
    ///     .parallelize(vec![1, 2, 3], 3)?
    ///     .try_map(|x| Ok::<_, Error>(x + *offset.value()?))?
    ///     .collect();
    /// assert_eq!(shifted, vec![101, 102, 103]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn broadcast<T: Send + Sync>(&self, value: T) -> Broadcast<T> {
        #[cfg(feature = "cluster")]
        let on_destroy = self.inner.cluster.as_ref().map(|cluster| {
            let cluster = Arc::downgrade(cluster);
            Arc::new(move |id| {
                if let Some(cluster) = cluster.upgrade() {
                    cluster.forget(id);
                }
            }) as crate::broadcast::DestroyHook
        });
        #[cfg(not(feature = "cluster"))]
        let on_destroy = None;
        Broadcast::new(
            self.inner.next_broadcast.fetch_add(1, Ordering::Relaxed),
            value,
            on_destroy,
        )
    }

    /// A counter that partitions add to, as Spark's `sc.accumulator(initial)`.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// let total = sc.accumulator(0.0_f64);
    /// sc.parallelize(vec![0.1, 0.2, 0.3], 2)?.foreach(|&x| total.add(x))?;
    /// assert!((total.value() - 0.6).abs() < 1e-12);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn accumulator<T>(&self, initial: T) -> Accumulator<T>
    where
        T: std::ops::AddAssign + Clone + Default + Send,
    {
        Accumulator::new(initial)
    }

    /// Timings of the most recent job that ran user code on this session.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// assert!(sc.last_job().is_none());
    /// sc.parallelize(vec![1, 2, 3, 4], 2)?.map(|x| x * 2)?;
    /// let job = sc.last_job().unwrap();
    /// assert_eq!(job.verb, "map");
    /// assert_eq!(job.partitions.len(), 2);
    /// assert_eq!(job.partitions[1].rows, 2);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn last_job(&self) -> Option<JobReport> {
        self.inner
            .last_job
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `work(index, input)` for every partition on a pool of the session's size.
    ///
    /// Results come back in partition order whatever order threads finish in. A panic
    /// is caught and becomes [`Error::Partition`]; an `Err` becomes
    /// [`Error::PartitionFailed`]. After a failure, partitions with a higher index
    /// that have not started are skipped, while lower ones still run: the error
    /// returned is always the one of the lowest failing partition, so the same input
    /// fails the same way at any thread count.
    /// The session's cluster, if it was built with one.
    #[cfg(feature = "cluster")]
    pub(crate) fn cluster(&self) -> Option<&crate::cluster::Cluster> {
        self.inner.cluster.as_deref()
    }

    /// Worker processes in the session's cluster (0 for a local session).
    ///
    /// ```
    /// let sc = sparkbook::Session::builder().threads(1).build()?;
    /// assert_eq!(sc.cluster_workers(), 0);
    /// # Ok::<(), sparkbook::Error>(())
    /// ```
    #[cfg(feature = "cluster")]
    pub fn cluster_workers(&self) -> usize {
        self.cluster().map_or(0, crate::cluster::Cluster::workers)
    }

    pub(crate) fn next_job_id(&self) -> u64 {
        self.inner.next_job.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn record_job(&self, report: JobReport) {
        *self
            .inner
            .last_job
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(report);
    }

    pub(crate) fn run_job<I, O, F>(
        &self,
        verb: &'static str,
        inputs: Vec<I>,
        rows: &[usize],
        work: F,
    ) -> Result<Vec<O>>
    where
        I: Send,
        O: Send,
        F: Fn(usize, I) -> Result<O> + Sync + Send,
    {
        let job = self.next_job_id();
        let progress = Progress::start(
            self.inner.progress,
            format!("{} job {job} ({verb})", self.inner.app_name),
            inputs.len(),
        );
        let first_failure = AtomicUsize::new(usize::MAX);
        let started = Instant::now();
        let run_one = |(index, input): (usize, I)| {
            if index > first_failure.load(Ordering::Relaxed) {
                return None;
            }
            let rows = rows[index];
            let start = Instant::now();
            let caught = TaskContext::run(job, index, || {
                catch_unwind(AssertUnwindSafe(|| work(index, input)))
            });
            let outcome = match caught {
                Ok(Ok(out)) => Ok(out),
                Ok(Err(source)) => Err(Error::PartitionFailed {
                    index,
                    rows,
                    source: Box::new(source),
                }),
                Err(payload) => Err(Error::Partition {
                    index,
                    rows,
                    message: panic_message(payload.as_ref()),
                }),
            };
            if outcome.is_err() {
                first_failure.fetch_min(index, Ordering::Relaxed);
            }
            progress.tick();
            Some((outcome, start.elapsed()))
        };
        let outcomes: Vec<Option<(Result<O>, Duration)>> = if TaskContext::get().is_some() {
            inputs.into_iter().enumerate().map(run_one).collect()
        } else {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(self.inner.threads)
                .thread_name(|i| format!("sparkbook-worker-{i}"))
                .build()?;
            pool.install(|| inputs.into_par_iter().enumerate().map(run_one).collect())
        };
        progress.finish();

        let mut partitions = Vec::with_capacity(outcomes.len());
        let mut outputs = Vec::with_capacity(outcomes.len());
        let mut failure = None;
        for (index, outcome) in outcomes.into_iter().enumerate() {
            let Some((outcome, elapsed)) = outcome else {
                continue;
            };
            partitions.push(PartitionTiming {
                index,
                rows: rows[index],
                seconds: elapsed.as_secs_f64(),
            });
            match outcome {
                Ok(out) => outputs.push(out),
                Err(err) => {
                    failure.get_or_insert(err);
                }
            }
        }
        self.record_job(JobReport {
            job,
            verb,
            seconds: started.elapsed().as_secs_f64(),
            threads: self.inner.threads,
            partitions,
            failed: failure.is_some(),
            bytes_out: 0,
            bytes_in: 0,
        });
        match failure {
            Some(err) => Err(err),
            None => Ok(outputs),
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("app_name", &self.inner.app_name)
            .field("threads", &self.inner.threads)
            .field("default_partitions", &self.inner.default_partitions)
            .finish()
    }
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// What one job did, per partition: Spark UI's stage view in a struct.
///
/// ```
/// use sparkbook::prelude::*;
/// use sparkbook::JobReport;
///
/// let sc = Session::builder().threads(2).progress(false).build()?;
/// sc.parallelize(vec![1, 2, 3], 3)?.map(|x| x * 10)?;
/// let report: JobReport = sc.last_job().unwrap();
/// assert_eq!((report.verb, report.threads, report.failed), ("map", 2, false));
/// assert_eq!(report.partitions.len(), 3);
/// assert!(report.seconds >= 0.0);
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct JobReport {
    /// The job's id within its session.
    pub job: u64,
    /// The verb that ran it (`map`, `map_partitions`, ...).
    pub verb: &'static str,
    /// Wall-clock time of the whole job.
    pub seconds: f64,
    /// Threads in the session's pool.
    pub threads: usize,
    /// One entry per partition that ran, in partition order (skipped ones are absent).
    pub partitions: Vec<PartitionTiming>,
    /// Whether the job ended in an error.
    pub failed: bool,
    /// Bytes sent to cluster workers (broadcast payloads and partitions); 0 locally.
    pub bytes_out: u64,
    /// Bytes of results received from cluster workers; 0 locally.
    pub bytes_in: u64,
}

/// Time spent on one partition.
///
/// ```
/// use sparkbook::prelude::*;
/// use sparkbook::PartitionTiming;
///
/// let sc = Session::builder().threads(2).progress(false).build()?;
/// sc.parallelize(vec![1, 2, 3, 4, 5], 2)?.map(|x| x + 1)?;
/// let timings: Vec<PartitionTiming> = sc.last_job().unwrap().partitions;
/// let rows: Vec<_> = timings.iter().map(|t| (t.index, t.rows)).collect();
/// assert_eq!(rows, vec![(0, 2), (1, 3)]);
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct PartitionTiming {
    /// Partition index.
    pub index: usize,
    /// Rows or elements in the partition's input.
    pub rows: usize,
    /// Seconds spent in the partition's closure.
    pub seconds: f64,
}

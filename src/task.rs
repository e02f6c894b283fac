//! Which job and partition the current thread is working on.
//!
//! PySpark's `TaskContext.get().partitionId()` lets code inside `mapPartitions` know
//! where it runs. Here the same lookup lets [`Accumulator`](crate::Accumulator) keep
//! one slot per partition, so its total does not depend on thread scheduling.

use std::cell::Cell;

thread_local! {
    static CURRENT: Cell<Option<TaskContext>> = const { Cell::new(None) };
}

/// The job and partition being run by the calling thread.
///
/// ```
/// use sparkbook::prelude::*;
///
/// let sc = Session::builder().threads(2).progress(false).build()?;
/// assert!(TaskContext::get().is_none()); // not inside a job
/// let ids = sc
///     .parallelize(vec!['a', 'b', 'c', 'd'], 2)?
///     .map(|_| TaskContext::get().map(|t| t.partition_id()))?
///     .collect();
/// assert_eq!(ids, vec![Some(0), Some(0), Some(1), Some(1)]);
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskContext {
    job: u64,
    partition: usize,
}

impl TaskContext {
    /// The context of the calling thread, `None` outside a partition.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// assert_eq!(TaskContext::get(), None); // the driver is not a partition
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// let inside = sc.parallelize(vec![1, 2, 3], 3)?.map(|_| TaskContext::get().is_some())?;
    /// assert_eq!(inside.collect(), vec![true; 3]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn get() -> Option<TaskContext> {
        CURRENT.with(Cell::get)
    }

    /// The job's id, increasing in submission order within a session.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// let job = || sc.parallelize(vec![0], 1)?.map(|_| TaskContext::get().unwrap().job_id());
    /// let (first, second) = (job()?.collect()[0], job()?.collect()[0]);
    /// assert!(second > first);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn job_id(&self) -> u64 {
        self.job
    }

    /// Index of the partition being processed, from 0.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// let ids = sc
    ///     .parallelize(vec![10, 20, 30], 3)?
    ///     .map(|_| TaskContext::get().unwrap().partition_id())?;
    /// assert_eq!(ids.collect(), vec![0, 1, 2]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn partition_id(&self) -> usize {
        self.partition
    }

    /// Sets the context for the duration of `f`, restoring the previous one after,
    /// so nested jobs (a job started inside a partition) report correctly.
    pub(crate) fn run<R>(job: u64, partition: usize, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<TaskContext>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(CURRENT.with(|c| c.replace(Some(TaskContext { job, partition }))));
        f()
    }
}

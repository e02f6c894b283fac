//! Accumulators: counters that partitions add to and the driver reads.
//!
//! A plain `Mutex<T>` would make a floating-point total depend on which thread came
//! first. Each partition instead adds into its own slot, and [`Accumulator::value`]
//! combines the slots in (job, partition) order: the same total, bit for bit, for
//! any thread count.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::AddAssign;
use std::sync::{Arc, Mutex};

use crate::task::TaskContext;

/// A shared counter, as Spark's `sc.accumulator(0)`.
///
/// ```
/// use sparkbook::prelude::*;
///
/// let sc = Session::builder().threads(2).progress(false).build()?;
/// let negatives = sc.accumulator(0u64);
/// sc.parallelize(vec![-1, 2, -3, 4, -5], 3)?
///     .foreach(|&x| if x < 0 { negatives.add(1) })?;
/// assert_eq!(negatives.value(), 3);
/// # Ok::<(), Error>(())
/// ```
pub struct Accumulator<T> {
    state: Arc<Mutex<State<T>>>,
}

struct State<T> {
    /// The initial value plus every `add` made outside a job.
    driver: T,
    /// One slot per (job, partition) that added anything.
    partitions: BTreeMap<(u64, usize), T>,
}

impl<T: AddAssign + Clone + Default> Accumulator<T> {
    pub(crate) fn new(initial: T) -> Self {
        Accumulator {
            state: Arc::new(Mutex::new(State {
                driver: initial,
                partitions: BTreeMap::new(),
            })),
        }
    }

    /// Adds `term`; callable from inside partitions or from the driver.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// let acc = sc.accumulator(10);
    /// acc.add(5); // from the driver
    /// sc.parallelize(vec![1, 2, 3], 2)?.foreach(|&x| acc.add(x))?; // from partitions
    /// assert_eq!(acc.value(), 21);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn add(&self, term: T) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match TaskContext::get() {
            Some(task) => {
                *state
                    .partitions
                    .entry((task.job_id(), task.partition_id()))
                    .or_default() += term;
            }
            None => state.driver += term,
        }
    }

    /// The total: the initial value, the driver's adds, then each partition's sum in
    /// (job, partition) order.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// let acc = sc.accumulator(0.5_f64);
    /// assert_eq!(acc.value(), 0.5);
    /// acc.clone().add(0.25); // clones share one total
    /// assert_eq!(acc.value(), 0.75);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn value(&self) -> T {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = state.driver.clone();
        for part in state.partitions.values() {
            total += part.clone();
        }
        total
    }
}

impl<T> Clone for Accumulator<T> {
    fn clone(&self) -> Self {
        Accumulator {
            state: Arc::clone(&self.state),
        }
    }
}

impl<T: AddAssign + Clone + Default + fmt::Debug> fmt::Debug for Accumulator<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accumulator")
            .field("value", &self.value())
            .finish()
    }
}

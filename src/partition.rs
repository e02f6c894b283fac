//! Partitioned data: how rows are split across partitions and put back together.
//!
//! Two shapes, because a partition of a frame is itself a frame while a partition
//! of a `Vec<T>` is a run of elements:
//! - [`PartitionedFrame`]: zero-copy row slices of one polars `DataFrame`
//!   (`DataFrame::slice` shares the column buffers), each knowing its global row
//!   offset; [`PartitionedFrame::collect`] stacks them back in partition order.
//!   Never polars' `partition_by`, whose group order is not stable.
//! - [`Partitioned<T>`]: Spark's RDD over a `Vec<T>`, with its familiar verbs.
//!
//! Splits are contiguous, so "partition order, then position in the partition" is
//! the input's order: every verb keeps row order, and outputs do not depend on
//! how many partitions or threads were used (for order-insensitive closures).

use std::fmt;
use std::ops::{Range, RangeInclusive};

use polars::prelude::*;

use crate::broadcast::Broadcast;
use crate::error::{Error, Result};
use crate::function::PartitionFn;
use crate::session::Session;

/// Spark's slice rule: partition `i` of `n` covers `i*len/n .. (i+1)*len/n`.
fn bounds(len: usize, partitions: usize) -> impl Iterator<Item = Range<usize>> {
    let at = move |i: usize| (i as u128 * len as u128 / partitions as u128) as usize;
    (0..partitions).map(move |i| at(i)..at(i + 1))
}

/// Data that [`Session::parallelize`] can split into partitions.
///
/// Implemented for polars frames (owned or borrowed), vectors, slices and integer
/// ranges.
///
/// ```
/// use sparkbook::prelude::*;
///
/// let sc = Session::builder().threads(2).progress(false).build()?;
/// assert_eq!(sc.parallelize(0..10_u32, 3)?.partition_sizes(), vec![3, 3, 4]);
/// assert_eq!(sc.parallelize(&["a", "b"][..], 1)?.collect(), vec!["a", "b"]);
/// # Ok::<(), Error>(())
/// ```
pub trait Parallelize {
    /// What the split produces.
    type Output;

    /// Splits into exactly `partitions` (>= 1) contiguous partitions.
    fn into_partitions(self, session: &Session, partitions: usize) -> Self::Output;
}

impl Parallelize for &DataFrame {
    type Output = PartitionedFrame;

    fn into_partitions(self, session: &Session, partitions: usize) -> PartitionedFrame {
        let parts = bounds(self.height(), partitions)
            .map(|r| self.slice(r.start as i64, r.len()))
            .collect();
        PartitionedFrame::new(session.clone(), parts)
    }
}

impl Parallelize for DataFrame {
    type Output = PartitionedFrame;

    fn into_partitions(self, session: &Session, partitions: usize) -> PartitionedFrame {
        (&self).into_partitions(session, partitions)
    }
}

impl<T: Send + Sync> Parallelize for Vec<T> {
    type Output = Partitioned<T>;

    fn into_partitions(self, session: &Session, partitions: usize) -> Partitioned<T> {
        let sizes: Vec<usize> = bounds(self.len(), partitions).map(|r| r.len()).collect();
        let mut rest = self.into_iter();
        let parts = sizes
            .iter()
            .map(|&n| rest.by_ref().take(n).collect())
            .collect();
        Partitioned::new(session.clone(), parts)
    }
}

impl<T: Clone + Send + Sync> Parallelize for &[T] {
    type Output = Partitioned<T>;

    fn into_partitions(self, session: &Session, partitions: usize) -> Partitioned<T> {
        let parts = bounds(self.len(), partitions)
            .map(|r| self[r].to_vec())
            .collect();
        Partitioned::new(session.clone(), parts)
    }
}

impl<T: Clone + Send + Sync> Parallelize for &Vec<T> {
    type Output = Partitioned<T>;

    fn into_partitions(self, session: &Session, partitions: usize) -> Partitioned<T> {
        self.as_slice().into_partitions(session, partitions)
    }
}

macro_rules! parallelize_ranges {
    ($($t:ty),*) => {$(
        impl Parallelize for Range<$t> {
            type Output = Partitioned<$t>;

            fn into_partitions(self, session: &Session, partitions: usize) -> Partitioned<$t> {
                self.collect::<Vec<$t>>().into_partitions(session, partitions)
            }
        }

        impl Parallelize for RangeInclusive<$t> {
            type Output = Partitioned<$t>;

            fn into_partitions(self, session: &Session, partitions: usize) -> Partitioned<$t> {
                self.collect::<Vec<$t>>().into_partitions(session, partitions)
            }
        }
    )*};
}

parallelize_ranges!(i32, i64, u32, u64, usize);

/// What a partition closure may return: a value, or a `Result` whose error converts
/// into [`Error`] (polars errors, sparkbook errors, strings).
///
/// This is what lets `map_partitions(|part| model.predict_frame(&part))` and
/// `map_partitions(|part| part.head(Some(1)))` both compile.
///
/// ```
/// use sparkbook::{Error, PartitionResult};
///
/// assert_eq!(vec![1, 2].into_result()?, vec![1, 2]);
/// let failed: Result<Vec<i32>, &str> = Err("bad row");
/// assert!(matches!(failed.into_result(), Err(Error::Message(m)) if m == "bad row"));
/// # Ok::<(), Error>(())
/// ```
pub trait PartitionResult {
    /// The partition's data when the closure succeeded.
    type Output;

    /// Converts to sparkbook's `Result`.
    fn into_result(self) -> Result<Self::Output>;
}

impl PartitionResult for DataFrame {
    type Output = DataFrame;

    fn into_result(self) -> Result<DataFrame> {
        Ok(self)
    }
}

impl<U> PartitionResult for Vec<U> {
    type Output = Vec<U>;

    fn into_result(self) -> Result<Vec<U>> {
        Ok(self)
    }
}

impl<D, E: Into<Error>> PartitionResult for Result<D, E>
where
    D: PartitionResult<Output = D>,
{
    type Output = D;

    fn into_result(self) -> Result<D> {
        self.map_err(Into::into)
    }
}

/// A polars `DataFrame` split into contiguous row partitions.
///
/// Made by [`Session::parallelize`] from a `&DataFrame`. Every verb runs at once on
/// the session's pool (there is no lazy plan to forget to execute).
///
/// ```
/// use sparkbook::prelude::*;
/// use polars::prelude::*;
///
/// let sc = Session::builder().threads(2).progress(false).build()?;
/// let df = df!("x" => [1.0, 2.0, 3.0, 4.0], "y" => [10.0, 20.0, 30.0, 40.0])?;
/// let out = sc
///     .parallelize(&df, 3)?
///     .map_partitions(|part| part.select(["y"]))?
///     .collect()?;
/// assert_eq!(out, df.select(["y"])?);
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone)]
pub struct PartitionedFrame {
    session: Session,
    parts: Vec<DataFrame>,
}

impl PartitionedFrame {
    fn new(session: Session, parts: Vec<DataFrame>) -> Self {
        PartitionedFrame { session, parts }
    }

    /// Number of partitions (Spark's `getNumPartitions`).
    ///
    /// ```
    /// use sparkbook::prelude::*;
    /// use polars::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// let df = df!("x" => [1, 2, 3])?;
    /// assert_eq!(sc.parallelize(&df, 2)?.num_partitions(), 2);
    /// assert_eq!(sc.parallelize(&df, 5)?.num_partitions(), 5); // some empty
    /// # Ok::<(), Error>(())
    /// ```
    pub fn num_partitions(&self) -> usize {
        self.parts.len()
    }

    /// Rows in each partition.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    /// use polars::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// let df = df!("x" => [1, 2, 3, 4, 5])?;
    /// assert_eq!(sc.parallelize(&df, 3)?.partition_sizes(), vec![1, 2, 2]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn partition_sizes(&self) -> Vec<usize> {
        self.parts.iter().map(DataFrame::height).collect()
    }

    /// Global row index of each partition's first row.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    /// use polars::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// let df = df!("x" => [1, 2, 3, 4, 5])?;
    /// assert_eq!(sc.parallelize(&df, 3)?.offsets(), vec![0, 1, 3]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn offsets(&self) -> Vec<usize> {
        self.parts
            .iter()
            .scan(0, |seen, part| {
                let offset = *seen;
                *seen += part.height();
                Some(offset)
            })
            .collect()
    }

    /// Total rows over all partitions.
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// # use polars::prelude::*;
    /// let sc = Session::builder().threads(1).build()?;
    /// let df = df!("x" => [1, 2, 3])?;
    /// assert_eq!(sc.parallelize(&df, 2)?.count(), 3);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn count(&self) -> usize {
        self.parts.iter().map(DataFrame::height).sum()
    }

    /// Runs `f` on every partition in parallel (Spark's `mapPartitions`).
    ///
    /// `f` gets the partition as an owned frame (a cheap, zero-copy slice) and
    /// returns a frame, or a `Result` of one. Rows may be added or dropped.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    /// use polars::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// let df = df!("x" => [1, 2, 3, 4, 5])?;
    /// let heads = sc.parallelize(&df, 2)?.map_partitions(|part| part.head(Some(1)))?;
    /// assert_eq!(heads.collect()?, df!("x" => [1, 3])?);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn map_partitions<F, R>(&self, f: F) -> Result<PartitionedFrame>
    where
        F: Fn(DataFrame) -> R + Sync + Send,
        R: PartitionResult<Output = DataFrame>,
    {
        self.run("map_partitions", |_, part| f(part).into_result())
    }

    /// As [`map_partitions`](Self::map_partitions), with the partition's index
    /// (Spark's `mapPartitionsWithIndex`).
    ///
    /// ```
    /// use sparkbook::prelude::*;
    /// use polars::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// let df = df!("x" => [1, 2, 3, 4])?;
    /// let tagged = sc
    ///     .parallelize(&df, 2)?
    ///     .map_partitions_with_index(|i, mut part| {
    ///         let n = part.height();
    ///         part.with_column(Column::new("part".into(), vec![i as u32; n]))?;
    ///         Ok::<_, Error>(part)
    ///     })?
    ///     .collect()?;
    /// assert_eq!(tagged.column("part")?.u32()?.to_vec(), vec![Some(0), Some(0), Some(1), Some(1)]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn map_partitions_with_index<F, R>(&self, f: F) -> Result<PartitionedFrame>
    where
        F: Fn(usize, DataFrame) -> R + Sync + Send,
        R: PartitionResult<Output = DataFrame>,
    {
        self.run("map_partitions_with_index", |i, part| {
            f(i, part).into_result()
        })
    }

    fn run<F>(&self, verb: &'static str, f: F) -> Result<PartitionedFrame>
    where
        F: Fn(usize, DataFrame) -> Result<DataFrame> + Sync + Send,
    {
        let rows = self.partition_sizes();
        let parts: Vec<DataFrame> = self.parts.iter().map(fresh).collect();
        let parts = self.session.run_job(verb, parts, &rows, f)?;
        Ok(PartitionedFrame::new(self.session.clone(), parts))
    }

    /// Runs a named function on every partition with a broadcast value: as
    /// [`map_partitions`](Self::map_partitions), but the work can also run on a
    /// cluster's workers (see [`PartitionFn`] and [`crate::cluster`]).
    ///
    /// Locally, `F::init` runs once per job on the broadcast's own value (no copy),
    /// then `F::call` on each partition on the session's threads.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    /// use sparkbook::polars::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// let train = df!("x" => [0.0, 1.0, 2.0], "y" => [0.0, 10.0, 20.0])?;
    /// let model = sc.broadcast(KnnRegressor::params(1).fit_frame(&train, "y")?);
    /// let test = df!("x" => [0.9, 2.2], "y" => [10.0, 20.0])?;
    /// let out = sc.parallelize(&test, 2)?.map_partitions_fn(KnnPredict, &model)?.collect()?;
    /// assert_eq!(out.column("pred")?.f64()?.to_vec(), vec![Some(10.0), Some(20.0)]);
    ///
    /// model.destroy();
    /// let err = sc.parallelize(&test, 2)?.map_partitions_fn(KnnPredict, &model).unwrap_err();
    /// assert!(matches!(err, Error::BroadcastDestroyed { .. }));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn map_partitions_fn<F: PartitionFn>(
        &self,
        _function: F,
        broadcast: &Broadcast<F::Payload>,
    ) -> Result<PartitionedFrame> {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = self.session.cluster() {
            let parts = cluster.run::<F>(&self.session, broadcast, &self.parts)?;
            return Ok(PartitionedFrame::new(self.session.clone(), parts));
        }
        let state = F::init(broadcast.value()?)?;
        self.run(F::NAME, |_, part| F::call(&state, part))
    }

    /// Adds a `row` column (UInt64) holding each row's global index, as Spark's
    /// `zipWithIndex`; keeps the original row identity through later verbs.
    ///
    /// Fails with [`Error::DuplicateColumn`] if the frame already has a `row` column.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    /// use polars::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// let df = df!("x" => [7, 8, 9])?;
    /// let indexed = sc.parallelize(&df, 2)?.zip_with_index()?.collect()?;
    /// assert_eq!(indexed.column("row")?.u64()?.to_vec(), vec![Some(0), Some(1), Some(2)]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn zip_with_index(&self) -> Result<PartitionedFrame> {
        const ROW: &str = "row";
        if let Some(first) = self.parts.first()
            && first.columns().iter().any(|c| c.name().as_str() == ROW)
        {
            return Err(Error::DuplicateColumn {
                name: ROW.to_owned(),
            });
        }
        let offsets = self.offsets();
        self.run("zip_with_index", |i, part| {
            let (start, height) = (offsets[i] as u64, part.height());
            let index: Vec<u64> = (start..start + height as u64).collect();
            let mut columns = part.into_columns();
            columns.push(Column::new(ROW.into(), index));
            Ok(DataFrame::new(height, columns)?)
        })
    }

    /// Stacks the partitions into one frame, in partition order (Spark's `collect`).
    ///
    /// Fails with [`Error::SchemaMismatch`] if partitions came back with different
    /// columns or types, naming the first one that differs from partition 0. The
    /// result is rechunked, so later column access is contiguous.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    /// use polars::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// let df = df!("x" => [1, 2, 3], "y" => ["a", "b", "c"])?;
    /// let parts = sc.parallelize(&df, 3)?;
    /// assert_eq!(parts.collect()?, df);
    ///
    /// // Partition 1 drops a column: collect says which partition differs.
    /// let ragged = parts.map_partitions_with_index(|i, p| if i == 1 { p.select(["x"]) } else { Ok(p) })?;
    /// assert!(matches!(ragged.collect(), Err(Error::SchemaMismatch { index: 1, .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn collect(&self) -> Result<DataFrame> {
        stack(&self.parts)
    }

    /// The partitions as separate frames (Spark's `glom().collect()`).
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// # use polars::prelude::*;
    /// let sc = Session::builder().threads(1).build()?;
    /// let parts = sc.parallelize(&df!("x" => [1, 2, 3])?, 2)?.glom();
    /// assert_eq!(parts.iter().map(|p| p.height()).collect::<Vec<_>>(), vec![1, 2]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn glom(&self) -> Vec<DataFrame> {
        self.parts.iter().map(fresh).collect()
    }

    /// The first `n` rows in order (Spark's `take`), reading only the partitions
    /// needed.
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// # use polars::prelude::*;
    /// let sc = Session::builder().threads(1).build()?;
    /// let df = df!("x" => [1, 2, 3, 4])?;
    /// assert_eq!(sc.parallelize(&df, 4)?.take(3)?, df!("x" => [1, 2, 3])?);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn take(&self, n: usize) -> Result<DataFrame> {
        let mut needed = Vec::new();
        let mut left = n;
        for part in &self.parts {
            if left == 0 {
                break;
            }
            let piece = part.head(Some(left));
            left -= piece.height();
            needed.push(piece);
        }
        if needed.is_empty() {
            needed.extend(self.parts.first().map(|p| p.head(Some(0))));
        }
        stack(&needed)
    }

    /// The same rows in `partitions` new contiguous partitions.
    ///
    /// Unlike Spark's `repartition` this does not shuffle: row order is kept, so
    /// results stay deterministic.
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// # use polars::prelude::*;
    /// let sc = Session::builder().threads(1).build()?;
    /// let parts = sc.parallelize(&df!("x" => [1, 2, 3, 4])?, 1)?.repartition(2)?;
    /// assert_eq!(parts.partition_sizes(), vec![2, 2]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn repartition(&self, partitions: usize) -> Result<PartitionedFrame> {
        let all = self.collect()?;
        self.session.parallelize(&all, partitions)
    }

    /// This frame's partitions followed by `other`'s (Spark's `union`).
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// # use polars::prelude::*;
    /// let sc = Session::builder().threads(1).build()?;
    /// let a = sc.parallelize(&df!("x" => [1, 2])?, 1)?;
    /// let b = sc.parallelize(&df!("x" => [3])?, 1)?;
    /// let both = a.union(&b);
    /// assert_eq!(both.num_partitions(), 2);
    /// assert_eq!(both.collect()?, df!("x" => [1, 2, 3])?);
    /// # Ok::<(), Error>(())
    /// ```
    #[must_use]
    pub fn union(&self, other: &PartitionedFrame) -> PartitionedFrame {
        let mut parts = self.parts.clone();
        parts.extend(other.parts.iter().cloned());
        PartitionedFrame::new(self.session.clone(), parts)
    }
}

impl fmt::Debug for PartitionedFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionedFrame")
            .field("partitions", &self.num_partitions())
            .field("rows", &self.count())
            .finish()
    }
}

fn describe(fields: &[(&str, &DataType)]) -> String {
    let fields: Vec<String> = fields
        .iter()
        .map(|(name, dtype)| format!("{name}: {dtype}"))
        .collect();
    format!("[{}]", fields.join(", "))
}

/// Names and types in order. Compared as lists, not as polars `Schema`s: a schema's
/// name index hashes with a seed that differs between evcxr cells (see [`fresh`]).
fn fields(df: &DataFrame) -> Vec<(&str, &DataType)> {
    df.columns()
        .iter()
        .map(|c| (c.name().as_str(), c.dtype()))
        .collect()
}

fn stack(parts: &[DataFrame]) -> Result<DataFrame> {
    let Some(first) = parts.first() else {
        return Ok(DataFrame::empty());
    };
    let expected = fields(first);
    for (index, part) in parts.iter().enumerate().skip(1) {
        if fields(part) != expected {
            return Err(Error::SchemaMismatch {
                index,
                expected: describe(&expected),
                found: describe(&fields(part)),
            });
        }
    }
    let mut out = fresh(first);
    for part in &parts[1..] {
        out.vstack_mut(part)?;
    }
    out.rechunk_mut();
    Ok(fresh(&out))
}

/// The same frame (its columns are shared, nothing is copied) without polars'
/// cached name index, which the next lookup rebuilds.
///
/// Why: evcxr links every notebook cell with its own copy of polars, and each copy
/// hashes column names with a seed of its own. A frame wider than four columns
/// keeps the name index built by the first cell that looked a name up; another
/// cell's `df.column("x")` then misses and reports a column that is there as not
/// found. sparkbook's own functions never look names up through that index and
/// hand partitions to closures as fresh frames; call this on a frame from an
/// earlier cell before looking its columns up by name in yours.
///
/// ```
/// use sparkbook::polars::prelude::*;
///
/// let df = df!("a" => [1], "b" => [2], "c" => [3], "d" => [4], "e" => [5])?;
/// let _ = df.schema(); // builds the index, as any name lookup would
/// let again = sparkbook::fresh(&df);
/// assert!(again.cached_schema().is_none());
/// assert_eq!(again, df);
/// # Ok::<(), sparkbook::Error>(())
/// ```
pub fn fresh(df: &DataFrame) -> DataFrame {
    DataFrame::new(df.height(), df.columns().to_vec())
        .expect("columns of one frame have equal lengths and distinct names")
}

/// A `Vec<T>` split into partitions: Spark's RDD.
///
/// Made by [`Session::parallelize`] from a vector, slice or range. Verbs that run
/// user code (`map`, `filter`, `reduce`, ...) run at once on the session's pool and
/// return a `Result`: a panic or an `Err` in the closure comes back as an
/// [`Error`] naming the partition. Verbs that only move data (`collect`, `count`,
/// `take`) cannot fail.
///
/// ```
/// use sparkbook::prelude::*;
///
/// let sc = Session::builder().threads(2).progress(false).build()?;
/// let words = sc.parallelize(vec!["spark", "polars", "rayon", "linfa"], 2)?;
/// let long = words.filter(|w| w.len() > 5)?.map(|w| w.to_uppercase())?;
/// assert_eq!(long.collect(), vec!["POLARS"]);
/// # Ok::<(), Error>(())
/// ```
pub struct Partitioned<T> {
    session: Session,
    parts: Vec<Vec<T>>,
}

impl<T: Clone> Clone for Partitioned<T> {
    fn clone(&self) -> Self {
        Partitioned {
            session: self.session.clone(),
            parts: self.parts.clone(),
        }
    }
}

impl<T> fmt::Debug for Partitioned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partitioned")
            .field("partitions", &self.parts.len())
            .field("elements", &self.count())
            .finish()
    }
}

impl<T> Partitioned<T> {
    fn new(session: Session, parts: Vec<Vec<T>>) -> Self {
        Partitioned { session, parts }
    }

    /// Number of partitions (Spark's `getNumPartitions`).
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// assert_eq!(sc.parallelize(vec!['a', 'b', 'c'], 2)?.num_partitions(), 2);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn num_partitions(&self) -> usize {
        self.parts.len()
    }

    /// Elements in each partition.
    ///
    /// ```
    /// use sparkbook::prelude::*;
    ///
    /// let sc = Session::builder().threads(2).progress(false).build()?;
    /// assert_eq!(sc.parallelize(0..5_u32, 2)?.partition_sizes(), vec![2, 3]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn partition_sizes(&self) -> Vec<usize> {
        self.parts.iter().map(Vec::len).collect()
    }

    /// Total number of elements (Spark's `count`).
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::builder().threads(1).build()?;
    /// assert_eq!(sc.parallelize(0..7_u32, 3)?.count(), 7);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn count(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }
}

impl<T: Send + Sync> Partitioned<T> {
    fn run<U, F>(&self, verb: &'static str, f: F) -> Result<Vec<U>>
    where
        U: Send,
        F: Fn(usize, &[T]) -> Result<U> + Sync + Send,
    {
        let rows = self.partition_sizes();
        let inputs: Vec<&[T]> = self.parts.iter().map(Vec::as_slice).collect();
        self.session.run_job(verb, inputs, &rows, f)
    }

    fn run_parts<U, F>(&self, verb: &'static str, f: F) -> Result<Partitioned<U>>
    where
        U: Send,
        F: Fn(usize, &[T]) -> Result<Vec<U>> + Sync + Send,
    {
        let parts = self.run(verb, f)?;
        Ok(Partitioned::new(self.session.clone(), parts))
    }

    /// Applies `f` to every element (Spark's `map`).
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::builder().threads(2).build()?;
    /// assert_eq!(sc.parallelize(vec![1, 2, 3], 2)?.map(|x| x * 10)?.collect(), vec![10, 20, 30]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn map<U, F>(&self, f: F) -> Result<Partitioned<U>>
    where
        U: Send,
        F: Fn(&T) -> U + Sync + Send,
    {
        self.run_parts("map", |_, part| Ok(part.iter().map(&f).collect()))
    }

    /// As [`map`](Self::map) for a fallible `f`: the first `Err` stops the job and is
    /// returned with its partition.
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::builder().threads(2).build()?;
    /// let parsed = sc.parallelize(vec!["1", "x", "3"], 3)?.try_map(|s| s.parse::<i32>().map_err(|e| e.to_string()));
    /// assert!(matches!(parsed, Err(Error::PartitionFailed { index: 1, .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn try_map<U, E, F>(&self, f: F) -> Result<Partitioned<U>>
    where
        U: Send,
        E: Into<Error>,
        F: Fn(&T) -> std::result::Result<U, E> + Sync + Send,
    {
        self.run_parts("try_map", |_, part| {
            part.iter().map(|x| f(x).map_err(Into::into)).collect()
        })
    }

    /// Keeps the elements for which `keep` is true (Spark's `filter`).
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::builder().threads(2).build()?;
    /// assert_eq!(sc.parallelize(1..=6_i32, 4)?.filter(|x| x % 2 == 0)?.collect(), vec![2, 4, 6]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn filter<F>(&self, keep: F) -> Result<Partitioned<T>>
    where
        T: Clone,
        F: Fn(&T) -> bool + Sync + Send,
    {
        self.run_parts("filter", |_, part| {
            Ok(part.iter().filter(|x| keep(x)).cloned().collect())
        })
    }

    /// Maps each element to any number of elements (Spark's `flatMap`).
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::builder().threads(2).build()?;
    /// let lines = sc.parallelize(vec!["a b", "c"], 2)?;
    /// assert_eq!(lines.flat_map(|l| l.split(' ').map(String::from).collect::<Vec<_>>())?.collect(), vec!["a", "b", "c"]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn flat_map<U, I, F>(&self, f: F) -> Result<Partitioned<U>>
    where
        U: Send,
        I: IntoIterator<Item = U>,
        F: Fn(&T) -> I + Sync + Send,
    {
        self.run_parts("flat_map", |_, part| Ok(part.iter().flat_map(&f).collect()))
    }

    /// Runs `f` once per partition on all its elements (Spark's `mapPartitions`):
    /// the place for per-partition set-up such as building an index once.
    ///
    /// `f` returns a `Vec`, or a `Result` of one.
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::builder().threads(2).build()?;
    /// let sums = sc.parallelize(1..=10_i64, 2)?.map_partitions(|xs| vec![xs.iter().sum::<i64>()])?;
    /// assert_eq!(sums.collect(), vec![15, 40]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn map_partitions<U, R, F>(&self, f: F) -> Result<Partitioned<U>>
    where
        U: Send,
        R: PartitionResult<Output = Vec<U>>,
        F: Fn(&[T]) -> R + Sync + Send,
    {
        self.run_parts("map_partitions", |_, part| f(part).into_result())
    }

    /// As [`map_partitions`](Self::map_partitions), with the partition's index
    /// (Spark's `mapPartitionsWithIndex`).
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::builder().threads(2).build()?;
    /// let tagged = sc.parallelize(vec!['a', 'b', 'c'], 2)?.map_partitions_with_index(|i, xs| xs.iter().map(|&c| (i, c)).collect::<Vec<_>>())?;
    /// assert_eq!(tagged.collect(), vec![(0, 'a'), (1, 'b'), (1, 'c')]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn map_partitions_with_index<U, R, F>(&self, f: F) -> Result<Partitioned<U>>
    where
        U: Send,
        R: PartitionResult<Output = Vec<U>>,
        F: Fn(usize, &[T]) -> R + Sync + Send,
    {
        self.run_parts("map_partitions_with_index", |i, part| {
            f(i, part).into_result()
        })
    }

    /// Runs `f` on every element for its side effects, typically with an
    /// [`Accumulator`](crate::Accumulator) (Spark's `foreach`).
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::builder().threads(2).build()?;
    /// let seen = sc.accumulator(0usize);
    /// sc.parallelize(vec![(); 5], 2)?.foreach(|_| seen.add(1))?;
    /// assert_eq!(seen.value(), 5);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn foreach<F>(&self, f: F) -> Result<()>
    where
        F: Fn(&T) + Sync + Send,
    {
        self.run("foreach", |_, part| {
            part.iter().for_each(&f);
            Ok(())
        })?;
        Ok(())
    }

    /// Pairs every element with its global index (Spark's `zipWithIndex`).
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::builder().threads(2).build()?;
    /// let indexed = sc.parallelize(vec!['x', 'y', 'z'], 2)?.zip_with_index();
    /// assert_eq!(indexed.collect(), vec![('x', 0), ('y', 1), ('z', 2)]);
    /// # Ok::<(), Error>(())
    /// ```
    #[must_use]
    pub fn zip_with_index(&self) -> Partitioned<(T, u64)>
    where
        T: Clone,
    {
        let mut next = 0u64;
        let parts = self
            .parts
            .iter()
            .map(|part| {
                part.iter()
                    .map(|x| {
                        next += 1;
                        (x.clone(), next - 1)
                    })
                    .collect()
            })
            .collect();
        Partitioned::new(self.session.clone(), parts)
    }

    /// Combines all elements with an associative `f` (Spark's `reduce`): each
    /// partition first, then the partition results in partition order, so the result
    /// is the same at any thread count. `None` when there are no elements.
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::builder().threads(2).build()?;
    /// assert_eq!(sc.parallelize(vec![3, 9, 4], 2)?.reduce(|a, b| a.max(b))?, Some(9));
    /// assert_eq!(sc.parallelize(Vec::<i32>::new(), 2)?.reduce(|a, b| a + b)?, None);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn reduce<F>(&self, f: F) -> Result<Option<T>>
    where
        T: Clone,
        F: Fn(T, T) -> T + Sync + Send,
    {
        let partials = self.run("reduce", |_, part| Ok(part.iter().cloned().reduce(&f)))?;
        Ok(partials.into_iter().flatten().reduce(&f))
    }

    /// Folds every partition from `zero`, then the partition results from `zero`
    /// (Spark's `fold`; `zero` must be neutral for `f`).
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::builder().threads(2).build()?;
    /// assert_eq!(sc.parallelize(1..=4_i64, 3)?.fold(1, |a, b| a * b)?, 24);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn fold<F>(&self, zero: T, f: F) -> Result<T>
    where
        T: Clone,
        F: Fn(T, T) -> T + Sync + Send,
    {
        let partials = self.run("fold", |_, part| {
            Ok(part.iter().cloned().fold(zero.clone(), &f))
        })?;
        Ok(partials.into_iter().fold(zero, &f))
    }

    /// Folds elements into an accumulator of another type with `seq`, then merges
    /// the partition accumulators with `comb` (Spark's `aggregate`).
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::builder().threads(2).build()?;
    /// let (sum, n) = sc.parallelize(vec![2.0, 4.0, 9.0], 2)?
    ///     .aggregate((0.0, 0), |(s, n), x| (s + x, n + 1), |(s1, n1), (s2, n2)| (s1 + s2, n1 + n2))?;
    /// assert_eq!(sum / n as f64, 5.0);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn aggregate<A, S, C>(&self, zero: A, seq: S, comb: C) -> Result<A>
    where
        A: Clone + Send + Sync,
        S: Fn(A, &T) -> A + Sync + Send,
        C: Fn(A, A) -> A + Sync + Send,
    {
        let partials = self.run("aggregate", |_, part| {
            Ok(part.iter().fold(zero.clone(), &seq))
        })?;
        Ok(partials.into_iter().fold(zero, comb))
    }
}

impl<T: Clone> Partitioned<T> {
    /// All elements, in order (Spark's `collect`).
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::builder().threads(2).build()?;
    /// assert_eq!(sc.parallelize(vec![5, 6, 7], 3)?.collect(), vec![5, 6, 7]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn collect(&self) -> Vec<T> {
        self.parts.concat()
    }

    /// The partitions as separate vectors (Spark's `glom().collect()`).
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::builder().threads(1).build()?;
    /// assert_eq!(sc.parallelize(1..=5_i32, 2)?.glom(), vec![vec![1, 2], vec![3, 4, 5]]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn glom(&self) -> Vec<Vec<T>> {
        self.parts.clone()
    }

    /// The first `n` elements in order (Spark's `take`).
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::builder().threads(1).build()?;
    /// assert_eq!(sc.parallelize(1..=5_i32, 3)?.take(2), vec![1, 2]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn take(&self, n: usize) -> Vec<T> {
        self.parts.iter().flatten().take(n).cloned().collect()
    }

    /// The first element (Spark's `first`), `None` if there is none.
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::builder().threads(1).build()?;
    /// assert_eq!(sc.parallelize(vec![0, 0, 42], 3)?.filter(|&x| x > 0)?.first(), Some(42));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn first(&self) -> Option<T> {
        self.parts.iter().flatten().next().cloned()
    }

    /// The same elements in `partitions` new contiguous partitions, order kept
    /// (unlike Spark's shuffling `repartition`, so results stay deterministic).
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::builder().threads(1).build()?;
    /// let rdd = sc.parallelize(1..=6_i32, 1)?.repartition(3)?;
    /// assert_eq!(rdd.glom(), vec![vec![1, 2], vec![3, 4], vec![5, 6]]);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn repartition(&self, partitions: usize) -> Result<Partitioned<T>>
    where
        T: Send + Sync,
    {
        self.session.parallelize(self.collect(), partitions)
    }

    /// This RDD's partitions followed by `other`'s (Spark's `union`).
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::builder().threads(1).build()?;
    /// let both = sc.parallelize(vec![1, 2], 1)?.union(&sc.parallelize(vec![3], 1)?);
    /// assert_eq!((both.num_partitions(), both.collect()), (2, vec![1, 2, 3]));
    /// # Ok::<(), Error>(())
    /// ```
    #[must_use]
    pub fn union(&self, other: &Partitioned<T>) -> Partitioned<T> {
        let mut parts = self.parts.clone();
        parts.extend(other.parts.iter().cloned());
        Partitioned::new(self.session.clone(), parts)
    }
}

//! Broadcast variables: one read-only value shared by every partition.
//!
//! In Spark, `sc.broadcast(model)` ships the model once per executor instead of
//! once per task. Locally the equivalent is an [`Arc`]: every partition reads the same
//! allocation, so a 2 GB model costs 2 GB whatever the partition count.

use std::fmt;
use std::mem::size_of;
use std::sync::{Arc, RwLock};

use polars::prelude::DataFrame;

use crate::error::{Error, Result};

/// A read-only value shared by reference with every partition of a job.
///
/// Made by [`Session::broadcast`](crate::Session::broadcast). Cloning the handle is
/// cheap and never copies the value. Named `Broadcast` like Spark's class; it is
/// unrelated to `rayon::broadcast`, which sparkbook's prelude does not re-export.
///
/// ```
/// use sparkbook::prelude::*;
///
/// let sc = Session::builder().threads(2).progress(false).build()?;
/// let squares = sc.broadcast(vec![0u64, 1, 4, 9, 16]);
/// let looked_up = sc
///     .parallelize(vec![4usize, 2, 3], 2)?
///     .try_map(|&i| Ok::<_, Error>(squares.value()?[i]))?
///     .collect();
/// assert_eq!(looked_up, vec![16, 4, 9]);
/// # Ok::<(), Error>(())
/// ```
pub struct Broadcast<T> {
    id: u64,
    slot: Arc<RwLock<Option<Arc<T>>>>,
    /// Tells a cluster session to free its workers' copies.
    on_destroy: Option<DestroyHook>,
}

pub(crate) type DestroyHook = Arc<dyn Fn(u64) + Send + Sync>;

impl<T> Broadcast<T> {
    /// `id` comes from the session, not a static: evcxr gives each notebook cell its
    /// own copy of the crate's statics, so a static counter would restart per cell.
    pub(crate) fn new(id: u64, value: T, on_destroy: Option<DestroyHook>) -> Self {
        Broadcast {
            id,
            slot: Arc::new(RwLock::new(Some(Arc::new(value)))),
            on_destroy,
        }
    }

    /// The shared value.
    ///
    /// Returns a reference-counted pointer to the one copy, so the value stays alive
    /// while a partition uses it even if another thread calls [`destroy`](Self::destroy)
    /// meanwhile. Fails with [`Error::BroadcastDestroyed`] after `destroy`.
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::local()?;
    /// let b = sc.broadcast(String::from("lookup"));
    /// assert_eq!(b.value()?.as_str(), "lookup");
    /// # Ok::<(), Error>(())
    /// ```
    pub fn value(&self) -> Result<Arc<T>> {
        let slot = self
            .slot
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.clone()
            .ok_or(Error::BroadcastDestroyed { id: self.id })
    }

    /// Releases the value, as Spark's `Broadcast.destroy()` does.
    ///
    /// Memory is freed as soon as no running partition still holds the value; every
    /// later [`value`](Self::value) on this handle or its clones is an error.
    /// Destroying twice is harmless.
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::local()?;
    /// let b = sc.broadcast(vec![1.0_f64; 1000]);
    /// let alias = b.clone();
    /// b.destroy();
    /// assert!(matches!(alias.value(), Err(Error::BroadcastDestroyed { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn destroy(&self) {
        let was_live = self
            .slot
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
            .is_some();
        if let (true, Some(hook)) = (was_live, &self.on_destroy) {
            hook(self.id);
        }
    }

    /// Whether [`destroy`](Self::destroy) was called.
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let b = Session::local()?.broadcast(1u8);
    /// assert!(!b.is_destroyed());
    /// b.destroy();
    /// assert!(b.is_destroyed());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn is_destroyed(&self) -> bool {
        self.slot
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_none()
    }

    /// The broadcast's id, unique within the process (Spark's `Broadcast.id`).
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let sc = Session::local()?;
    /// let (a, b) = (sc.broadcast(1), sc.broadcast(2));
    /// assert_ne!(a.id(), b.id());
    /// assert_eq!(a.id(), a.clone().id());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl<T: ByteSize> Broadcast<T> {
    /// Bytes held by the one shared copy (0 once destroyed).
    ///
    /// ```
    /// # use sparkbook::prelude::*;
    /// let b = Session::local()?.broadcast(vec![0.0_f64; 1_000]);
    /// assert!(b.size_bytes() >= 8_000);
    /// b.destroy();
    /// assert_eq!(b.size_bytes(), 0);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn size_bytes(&self) -> usize {
        self.value().map_or(0, |value| T::byte_size(&value))
    }
}

impl<T> Clone for Broadcast<T> {
    fn clone(&self) -> Self {
        Broadcast {
            id: self.id,
            slot: Arc::clone(&self.slot),
            on_destroy: self.on_destroy.clone(),
        }
    }
}

impl<T> fmt::Debug for Broadcast<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broadcast")
            .field("id", &self.id)
            .field("type", &std::any::type_name::<T>())
            .field("destroyed", &self.is_destroyed())
            .finish()
    }
}

/// Heap plus inline size of a value, in bytes, where the type can say.
///
/// Lets a notebook show how much memory a broadcast holds (Spark's UI shows the same
/// for broadcast blocks). Estimates follow allocations actually made (`capacity`, not
/// `len`, for vectors).
///
/// ```
/// use sparkbook::ByteSize;
///
/// assert_eq!(7u32.byte_size(), 4);
/// assert_eq!(Vec::<f64>::with_capacity(10).byte_size(), 10 * 8 + std::mem::size_of::<Vec<f64>>());
/// ```
pub trait ByteSize {
    /// Size in bytes.
    fn byte_size(&self) -> usize;
}

macro_rules! inline_size {
    ($($t:ty),*) => {$(
        impl ByteSize for $t {
            fn byte_size(&self) -> usize {
                size_of::<$t>()
            }
        }
    )*};
}

inline_size!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    ()
);

impl ByteSize for String {
    fn byte_size(&self) -> usize {
        size_of::<String>() + self.capacity()
    }
}

impl<T: ByteSize> ByteSize for Vec<T> {
    fn byte_size(&self) -> usize {
        let spare = (self.capacity() - self.len()) * size_of::<T>();
        size_of::<Vec<T>>() + spare + self.iter().map(ByteSize::byte_size).sum::<usize>()
    }
}

impl<T: ByteSize> ByteSize for Option<T> {
    fn byte_size(&self) -> usize {
        match self {
            Some(value) => size_of::<Option<T>>() - size_of::<T>() + value.byte_size(),
            None => size_of::<Option<T>>(),
        }
    }
}

impl<T: ByteSize + ?Sized> ByteSize for Arc<T> {
    fn byte_size(&self) -> usize {
        size_of::<Arc<T>>() + (**self).byte_size()
    }
}

impl<A: ByteSize, B: ByteSize> ByteSize for (A, B) {
    fn byte_size(&self) -> usize {
        self.0.byte_size() + self.1.byte_size()
    }
}

impl ByteSize for DataFrame {
    /// Polars' own estimate of the buffers behind the frame.
    fn byte_size(&self) -> usize {
        self.estimated_size()
    }
}

impl<K: ByteSize, V: ByteSize, S> ByteSize for std::collections::HashMap<K, V, S> {
    fn byte_size(&self) -> usize {
        let slots = self.capacity() * (size_of::<K>() + size_of::<V>());
        let heap: usize = self
            .iter()
            .map(|(k, v)| k.byte_size() - size_of::<K>() + v.byte_size() - size_of::<V>())
            .sum();
        size_of::<Self>() + slots + heap
    }
}

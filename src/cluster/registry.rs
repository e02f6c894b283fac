//! The functions a worker process can run, by name.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Cursor;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use polars::prelude::*;

use super::dataflow::Failure;
use crate::function::{KnnClassify, KnnPredict, PartitionFn};
use crate::session::panic_message;

/// What a function's `init` built, kept per broadcast on a worker.
pub(crate) type State = Arc<dyn Any + Send + Sync>;

/// The named functions a worker can run: the built-in ones and yours.
///
/// `sparkbook worker` runs [`Registry::builtin`]. For your own functions, write a
/// worker binary of three lines and start it instead (the driver checks at connect
/// time that every worker has the function a job needs):
///
/// ```no_run
/// use sparkbook::cluster::{Registry, worker_main};
/// # struct MyFn;
/// # impl sparkbook::PartitionFn for MyFn {
/// #     const NAME: &'static str = "my.fn";
/// #     type Payload = f64;
/// #     type State = f64;
/// #     fn init(p: std::sync::Arc<f64>) -> sparkbook::Result<f64> { Ok(*p) }
/// #     fn call(_: &f64, df: sparkbook::polars::prelude::DataFrame) -> sparkbook::Result<sparkbook::polars::prelude::DataFrame> { Ok(df) }
/// # }
///
/// fn main() {
///     worker_main(Registry::builtin().with(MyFn));
/// }
/// ```
///
/// ```
/// use sparkbook::cluster::Registry;
/// use sparkbook::{KnnPredict, PartitionFn};
///
/// let registry = Registry::builtin();
/// assert!(registry.names().contains(&KnnPredict::NAME.to_owned()));
/// assert!(Registry::empty().names().is_empty());
/// ```
pub struct Registry {
    functions: BTreeMap<&'static str, Box<dyn Erased>>,
}

impl Registry {
    /// No functions at all.
    pub fn empty() -> Registry {
        Registry {
            functions: BTreeMap::new(),
        }
    }

    /// sparkbook's own functions: [`KnnPredict`] and [`KnnClassify`].
    pub fn builtin() -> Registry {
        Registry::empty().with(KnnPredict).with(KnnClassify)
    }

    /// Adds a function (replacing one of the same name).
    ///
    /// ```
    /// use sparkbook::cluster::Registry;
    /// use sparkbook::KnnPredict;
    ///
    /// assert_eq!(Registry::empty().with(KnnPredict).names().len(), 1);
    /// ```
    pub fn with<F: PartitionFn>(mut self, _function: F) -> Registry {
        self.functions
            .insert(F::NAME, Box::new(Named::<F>(PhantomData)));
        self
    }

    /// The names of the registered functions, sorted.
    pub fn names(&self) -> Vec<String> {
        self.functions
            .keys()
            .map(|name| (*name).to_owned())
            .collect()
    }

    /// Decodes a broadcast payload and runs the function's `init` on it.
    pub(crate) fn init(&self, function: &str, payload: &[u8]) -> Result<State, String> {
        let named = self
            .functions
            .get(function)
            .ok_or_else(|| format!("this worker has no function `{function}`"))?;
        catch_unwind(AssertUnwindSafe(|| named.init(payload)))
            .unwrap_or_else(|p| Err(format!("init panicked: {}", panic_message(p.as_ref()))))
    }

    /// Runs the function on one encoded partition and encodes its result.
    pub(crate) fn call(
        &self,
        function: &str,
        state: &(dyn Any + Send + Sync),
        frame: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        let named = self
            .functions
            .get(function)
            .ok_or_else(|| Failure::Error(format!("this worker has no function `{function}`")))?;
        named.call(state, frame)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.functions.keys()).finish()
    }
}

/// A [`PartitionFn`] behind bytes: what the worker's dataflow calls.
trait Erased: Send + Sync {
    fn init(&self, payload: &[u8]) -> Result<State, String>;
    fn call(&self, state: &(dyn Any + Send + Sync), frame: &[u8]) -> Result<Vec<u8>, Failure>;
}

struct Named<F>(PhantomData<fn() -> F>);

impl<F: PartitionFn> Erased for Named<F> {
    fn init(&self, payload: &[u8]) -> Result<State, String> {
        let payload: F::Payload = decode_payload(payload)?;
        let state = F::init(Arc::new(payload)).map_err(|e| format!("init failed: {e}"))?;
        Ok(Arc::new(state))
    }

    fn call(&self, state: &(dyn Any + Send + Sync), frame: &[u8]) -> Result<Vec<u8>, Failure> {
        let state = state
            .downcast_ref::<F::State>()
            .ok_or_else(|| Failure::Error(format!("state of `{}` has another type", F::NAME)))?;
        let partition = decode_frame(frame).map_err(Failure::Error)?;
        let out = F::call(state, partition).map_err(|e| Failure::Error(e.to_string()))?;
        encode_frame(out).map_err(Failure::Error)
    }
}

/// A broadcast value as it travels: bincode of its serde form.
pub(crate) fn encode_payload<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, String> {
    bincode::serialize(value).map_err(|e| format!("cannot serialise the broadcast value: {e}"))
}

fn decode_payload<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    bincode::deserialize(bytes).map_err(|e| format!("cannot decode the broadcast value: {e}"))
}

/// A partition as it travels: an Arrow IPC stream, bit for bit the frame.
pub(crate) fn encode_frame(mut frame: DataFrame) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    IpcStreamWriter::new(&mut bytes)
        .finish(&mut frame)
        .map_err(|e| format!("cannot encode a partition: {e}"))?;
    Ok(bytes)
}

pub(crate) fn decode_frame(bytes: &[u8]) -> Result<DataFrame, String> {
    IpcStreamReader::new(Cursor::new(bytes))
        .finish()
        .map_err(|e| format!("cannot decode a partition: {e}"))
}

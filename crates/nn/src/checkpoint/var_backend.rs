//! Lets models load their weights through candle's `VarBuilder` straight from any checkpoint format.

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

use super::{Checkpoint, CheckpointError};

impl SimpleBackend for Checkpoint {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.load_checked(name, s.dims(), dtype, dev)
            .map_err(to_candle)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load_as(name, dtype, dev).map_err(to_candle)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.contains(name)
    }
}

/// A checkpoint error as candle reports it (what a `VarBuilder` backend returns).
pub fn to_candle(e: CheckpointError) -> candle_core::Error {
    match e {
        CheckpointError::Candle(e) => e,
        other => candle_core::Error::Msg(other.to_string()),
    }
}

impl Checkpoint {
    /// A `VarBuilder` reading from this checkpoint, converting every tensor to `dtype`.
    pub fn var_builder(self, dtype: DType, device: &Device) -> candle_nn::VarBuilder<'static> {
        candle_nn::VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }
}

/// A checkpoint backend that records which stored tensors a model asked for, so loaders can report stored
/// tensors the model has no place for (a sign of a wrong configuration).
pub struct TrackedCheckpoint {
    inner: Checkpoint,
    used: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// The names a [`TrackedCheckpoint`] was asked for, readable after the model is built.
#[derive(Clone, Default)]
pub struct UsedNames(std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>);

impl UsedNames {
    /// Stored tensor names of `checkpoint` that were never requested.
    pub fn unused<'a>(&self, checkpoint_names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let used = self.0.lock().map(|g| g.clone()).unwrap_or_default();
        checkpoint_names
            .into_iter()
            .filter(|n| !used.contains(*n))
            .map(str::to_owned)
            .collect()
    }
}

impl TrackedCheckpoint {
    pub fn new(inner: Checkpoint) -> (Self, UsedNames) {
        let used = UsedNames::default();
        (
            Self {
                inner,
                used: used.0.clone(),
            },
            used,
        )
    }

    fn record(&self, name: &str) {
        if let Ok(mut g) = self.used.lock() {
            g.insert(name.to_owned());
        }
    }

    pub fn var_builder(self, dtype: DType, device: &Device) -> candle_nn::VarBuilder<'static> {
        candle_nn::VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }
}

impl SimpleBackend for TrackedCheckpoint {
    fn get(
        &self,
        s: Shape,
        name: &str,
        init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.record(name);
        SimpleBackend::get(&self.inner, s, name, init, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.record(name);
        self.inner.get_unchecked(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.contains(name)
    }
}

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

fn to_candle(e: CheckpointError) -> candle_core::Error {
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

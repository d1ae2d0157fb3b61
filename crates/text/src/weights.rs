//! How the text encoder's Linear weights are kept: as loaded, or in 8 bits (weight-only Q8_0) for less memory.

use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use orrery_nn::layers::Linear;
use orrery_nn::quantized::Q8Linear;

/// How the decoder's Linear weights are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextWeights {
    /// As loaded, in the compute type (what the golden tests check).
    #[default]
    Full,
    /// 8-bit (GGML Q8_0) Linear weights, about half of bfloat16's memory; the embedding table stays in host
    /// memory. Changes the embeddings slightly, so caches keep them apart.
    Q8,
}

impl TextWeights {
    /// [`Self::Q8`] where `eight_bit`, else [`Self::Full`] (for command-line switches).
    pub fn eight_bit(eight_bit: bool) -> Self {
        if eight_bit {
            Self::Q8
        } else {
            Self::Full
        }
    }

    /// The name in cache keys and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Q8 => "Q8_0",
        }
    }
}

/// Where a layer's tensors go as it is built: kept where the `VarBuilder` put them, or (8-bit) Linear weights
/// quantized onto `device` and the rest moved there, one layer at a time so the host never holds more than one
/// layer in full.
#[derive(Debug, Clone)]
pub(crate) enum Placement {
    AsLoaded,
    Q8Onto(Device),
}

impl Placement {
    pub(crate) fn linear(
        &self,
        vb: VarBuilder,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Proj> {
        let dense = Linear::new(vb, in_dim, out_dim, bias)?;
        Ok(match self {
            Self::AsLoaded => Proj::Full(dense),
            Self::Q8Onto(device) => Proj::Q8(Q8Linear::quantize(&dense, device)?),
        })
    }

    pub(crate) fn tensor(&self, t: Tensor) -> Result<Tensor> {
        match self {
            Self::AsLoaded => Ok(t),
            Self::Q8Onto(device) => t.to_device(device),
        }
    }
}

/// A projection in full or 8-bit weights.
#[derive(Debug, Clone)]
pub(crate) enum Proj {
    Full(Linear),
    Q8(Q8Linear),
}

impl Proj {
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Full(l) => l.forward(x),
            Self::Q8(l) => l.forward(x),
        }
    }
}

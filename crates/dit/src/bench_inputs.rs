//! Random inputs of a DiT's shape for the speed and memory benchmarks (`examples/`, `benches/`).

use candle_core::{DType, Device, Tensor};

use crate::{DitConfig, DitInput};

/// Gaussian latent `x` (B, C_in, T, H, W), timestep 0.5 for every sample, Gaussian text embedding (B, N, C_text)
/// and a zero conditioning mask: an unconditioned Text2World call.
pub struct BenchInputs {
    pub x: Tensor,
    pub timesteps: Tensor,
    pub text: Tensor,
    pub mask: Tensor,
}

impl BenchInputs {
    pub fn new(
        config: &DitConfig,
        batch: usize,
        [t, h, w]: [usize; 3],
        text_tokens: usize,
        device: &Device,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            x: Tensor::randn(0f32, 1., (batch, config.in_channels, t, h, w), device)?,
            timesteps: Tensor::full(0.5f32, batch, device)?,
            text: Tensor::randn(
                0f32,
                1.,
                (batch, text_tokens, config.text_input_channels()),
                device,
            )?,
            mask: Tensor::zeros((batch, 1, t, h, w), DType::F32, device)?,
        })
    }

    pub fn input(&self) -> DitInput<'_> {
        DitInput {
            x: &self.x,
            timesteps: &self.timesteps,
            crossattn_emb: &self.text,
            condition_mask: &self.mask,
            padding_mask: None,
            action: None,
        }
    }
}

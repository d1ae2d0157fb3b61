//! 8-bit weights for inference: a [`Linear`] whose weight is stored as GGML Q8_0 (blocks of 32 weights sharing
//! one f16 scale: 8.5 bits a weight, against 16 for bf16). Used where memory matters more than the last digits,
//! e.g. the 7B text encoder on a 24 GB card; it changes the numbers, so it is always opt-in.
//!
//! Weight-only: each call dequantizes the weight (one Linear's worth of memory, freed after the product) and
//! multiplies in the input's type, so activations keep their precision. GGML's own Q8_0 product would also round
//! the activations to 8 bits, and on the CPU candle caches a second, repacked copy of every weight for it, which
//! would undo the saving.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Result, Tensor};

use crate::layers::Linear;

/// The weights a Q8_0 block holds; a Linear's input width must be a multiple of it.
pub const Q8_BLOCK: usize = 32;

/// `y = x W^T (+ b)` with `W` (out, in) in Q8_0 on its device and the bias in the input's type.
#[derive(Debug, Clone)]
pub struct Q8Linear {
    weight: Arc<QTensor>,
    bias: Option<Tensor>,
}

impl Q8Linear {
    /// Quantizes `linear`'s weight onto `device` (from the CPU, where it is read); its bias moves there too. A
    /// Linear with an adapter or an input width that is not a multiple of [`Q8_BLOCK`] is refused.
    pub fn quantize(linear: &Linear, device: &Device) -> Result<Self> {
        let in_dim = linear.in_dim();
        if !in_dim.is_multiple_of(Q8_BLOCK) {
            candle_core::bail!(
                "8-bit weights need an input width that is a multiple of {Q8_BLOCK}, this Linear has {in_dim}"
            );
        }
        if linear.adapter.is_some() {
            candle_core::bail!("8-bit weights: fuse the adapter into the Linear first");
        }
        let host = linear.weight.to_device(&Device::Cpu)?;
        let q = QTensor::quantize_onto(&host, GgmlDType::Q8_0, device)?;
        Ok(Self {
            weight: Arc::new(q),
            bias: linear
                .bias
                .as_ref()
                .map(|b| b.to_device(device))
                .transpose()?,
        })
    }

    /// Bytes the weight takes on its device: 34 per block of 32 (32 int8 values and an f16 scale).
    pub fn weight_bytes(&self) -> usize {
        self.weight.storage_size_in_bytes()
    }

    /// `x` (..., in) -> (..., out) in `x`'s type: the weight dequantized to `x`'s type, then the Linear's product.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let weight = self
            .weight
            .dequantize(&self.weight.device())?
            .to_dtype(x.dtype())?;
        let bias = self
            .bias
            .as_ref()
            .map(|b| b.to_dtype(x.dtype()))
            .transpose()?;
        Linear {
            weight,
            bias,
            adapter: None,
        }
        .forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    fn linear(out_dim: usize, in_dim: usize, bias: bool) -> Linear {
        let dev = Device::Cpu;
        let values: Vec<f32> = (0..out_dim * in_dim)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.1)
            .collect();
        Linear {
            weight: Tensor::from_vec(values, (out_dim, in_dim), &dev).unwrap(),
            bias: bias.then(|| Tensor::arange(0f32, out_dim as f32, &dev).unwrap()),
            adapter: None,
        }
    }

    #[test]
    fn eight_bit_linear_stays_within_the_quantization_step() {
        let dense = linear(48, 64, true);
        let q = Q8Linear::quantize(&dense, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 64), &Device::Cpu).unwrap();
        let want = dense.forward(&x).unwrap();
        let got = q.forward(&x).unwrap();
        assert_eq!(got.dims(), &[2, 3, 48]);
        // Q8_0 rounds each weight to 1/254 of its block's largest magnitude: well under 1% of the output's scale.
        let err = crate::compare::max_rel_err(&got, &want).unwrap();
        assert!(err <= 1e-2, "error {err} of the output's scale");
        assert!(
            err > 0.0,
            "quantization changed nothing: the test cannot tell"
        );
        assert_eq!(q.weight_bytes(), 48 * 64 / 32 * 34);
    }

    #[test]
    fn bfloat16_input_gives_bfloat16_output() {
        let q = Q8Linear::quantize(&linear(32, 32, false), &Device::Cpu).unwrap();
        let x = Tensor::ones((4, 32), DType::BF16, &Device::Cpu).unwrap();
        assert_eq!(q.forward(&x).unwrap().dtype(), DType::BF16);
    }

    #[test]
    fn widths_that_do_not_fill_blocks_are_refused() {
        let msg = Q8Linear::quantize(&linear(8, 40, false), &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("multiple of 32") && msg.contains("40"),
            "{msg}"
        );
    }
}

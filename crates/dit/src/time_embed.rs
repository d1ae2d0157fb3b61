//! Timestep embedding with adaLN-LoRA (`Timesteps` + `TimestepEmbedding` + `t_embedding_norm`), in float32.

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;
use orrery_nn::layers::Linear;
use orrery_nn::ops;

use crate::action::ActionEmbedding;

/// `[cos(t f_i) | sin(t f_i)]` with `f_i = exp(-ln(10000) i / (dim/2))`, for timesteps (B, T) in the network's
/// units -> (B, T, dim) float32. Cosine first, as the reference.
pub fn timestep_sinusoid(timesteps_bt: &Tensor, dim: usize) -> Result<Tensor> {
    let (b, t) = timesteps_bt.dims2()?;
    let half = dim / 2;
    let steps = timesteps_bt
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let mut out = Vec::with_capacity(b * t * dim);
    for s in steps {
        let args: Vec<f64> = (0..half)
            .map(|i| s * (-(10000f64.ln()) * i as f64 / half as f64).exp())
            .collect();
        out.extend(args.iter().map(|a| a.cos() as f32));
        out.extend(args.iter().map(|a| a.sin() as f32));
    }
    Tensor::from_vec(out, (b, t, dim), timesteps_bt.device())
}

/// `t_embedder.1` and `t_embedding_norm`. The MLP output is the adaLN-LoRA term shared by every modulation; the
/// embedding the modulations read is the RMS-normed sinusoid itself (not the MLP output).
#[derive(Debug, Clone)]
pub struct TimeEmbedder {
    pub linear_1: Linear,
    pub linear_2: Linear,
    pub norm_weight: Tensor,
    dim: usize,
}

/// What the blocks read from the timestep.
#[derive(Debug, Clone)]
pub struct TimeEmbedding {
    /// RMS-normed sinusoid, (B, T', D) float32.
    pub t_emb: Tensor,
    /// adaLN-LoRA term, (B, T', 3D) float32.
    pub adaln_lora: Tensor,
}

impl TimeEmbedder {
    /// `vb_embedder` is `t_embedder.1`, `vb_norm` is `t_embedding_norm`; both float32.
    pub fn new(vb_embedder: VarBuilder, vb_norm: VarBuilder, dim: usize) -> Result<Self> {
        Ok(Self {
            linear_1: Linear::new(vb_embedder.pp("linear_1"), dim, dim, false)?,
            linear_2: Linear::new(vb_embedder.pp("linear_2"), dim, 3 * dim, false)?,
            norm_weight: vb_norm.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?,
            dim,
        })
    }

    /// Timesteps (B, T') in the network's units ([0, 1] for the released models).
    pub fn forward(&self, timesteps_bt: &Tensor) -> Result<TimeEmbedding> {
        self.forward_with_action(timesteps_bt, None)
    }

    /// [`Self::forward`] with an action network's per-frame embeddings added to the sinusoid (before the
    /// RMSNorm) and to the adaLN-LoRA term; the result has one row per latent frame, (B, T, D) and (B, T, 3D).
    pub fn forward_with_action(
        &self,
        timesteps_bt: &Tensor,
        action: Option<&ActionEmbedding>,
    ) -> Result<TimeEmbedding> {
        let sinusoid = timestep_sinusoid(timesteps_bt, self.dim)?;
        let sinusoid = sinusoid.to_device(self.norm_weight.device())?;
        let hidden = ops::silu(&self.linear_1.forward(&sinusoid)?)?;
        let adaln_lora = self.linear_2.forward(&hidden)?;
        let (sinusoid, adaln_lora) = match action {
            Some(a) => (
                sinusoid.broadcast_add(&a.t_emb)?,
                adaln_lora.broadcast_add(&a.adaln_lora)?,
            ),
            None => (sinusoid, adaln_lora),
        };
        Ok(TimeEmbedding {
            adaln_lora,
            t_emb: ops::rms_norm(&sinusoid, &self.norm_weight, 1e-6)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn sinusoid_is_cos_then_sin() {
        let t = Tensor::new(&[[0.5f32]], &Device::Cpu).unwrap();
        let e = timestep_sinusoid(&t, 4)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // half = 2: frequencies 1 and exp(-ln(10000)/2) = 0.01
        let expect = [0.5f64.cos(), 0.005f64.cos(), 0.5f64.sin(), 0.005f64.sin()];
        for (a, b) in e.iter().zip(expect) {
            assert!((*a as f64 - b).abs() < 1e-7);
        }
    }
}

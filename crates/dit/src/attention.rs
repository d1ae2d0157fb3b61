//! Self- and cross-attention with q/k RMSNorm (eps 1e-6) and, for self-attention, 3D RoPE on q and k.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use orrery_nn::layers::Linear;
use orrery_nn::ops;

use crate::rope::apply_rope;

const QK_NORM_EPS: f64 = 1e-6;

/// One attention module (`self_attn` or `cross_attn`); biases nowhere.
#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub output_proj: Linear,
    pub q_norm: Tensor,
    pub k_norm: Tensor,
    num_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// `context_dim` is the width keys and values are computed from (the model width for self-attention).
    pub fn new(vb: VarBuilder, dim: usize, context_dim: usize, num_heads: usize) -> Result<Self> {
        let head_dim = dim / num_heads;
        let ones = candle_nn::Init::Const(1.0);
        Ok(Self {
            q_proj: Linear::new(vb.pp("q_proj"), dim, dim, false)?,
            k_proj: Linear::new(vb.pp("k_proj"), context_dim, dim, false)?,
            v_proj: Linear::new(vb.pp("v_proj"), context_dim, dim, false)?,
            output_proj: Linear::new(vb.pp("output_proj"), dim, dim, false)?,
            q_norm: vb.pp("q_norm").get_with_hints(head_dim, "weight", ones)?,
            k_norm: vb.pp("k_norm").get_with_hints(head_dim, "weight", ones)?,
            num_heads,
            head_dim,
        })
    }

    /// A copy on `device` (for blocks kept in host memory, see [`crate::CosmosDit::forward`]).
    pub fn to_device(&self, device: &candle_core::Device) -> Result<Self> {
        Ok(Self {
            q_proj: self.q_proj.to_device(device)?,
            k_proj: self.k_proj.to_device(device)?,
            v_proj: self.v_proj.to_device(device)?,
            output_proj: self.output_proj.to_device(device)?,
            q_norm: self.q_norm.to_device(device)?,
            k_norm: self.k_norm.to_device(device)?,
            num_heads: self.num_heads,
            head_dim: self.head_dim,
        })
    }

    /// (B, L, C) -> (B, heads, L, head_dim)
    fn heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        x.reshape((b, l, self.num_heads, self.head_dim))?
            .transpose(1, 2)
    }

    /// `x` (B, L, D); `context` (B, N, C) for cross-attention or `None` for self-attention; `rope` the (cos, sin)
    /// tables (L, head_dim) for self-attention. Returns (B, L, D) in `x`'s type.
    pub fn forward(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        rope: Option<(&Tensor, &Tensor)>,
    ) -> Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        let source = context.unwrap_or(x);
        let q = ops::rms_norm(
            &self.heads(&self.q_proj.forward(x)?)?,
            &self.q_norm,
            QK_NORM_EPS,
        )?;
        let k = ops::rms_norm(
            &self.heads(&self.k_proj.forward(source)?)?,
            &self.k_norm,
            QK_NORM_EPS,
        )?;
        let v = self.heads(&self.v_proj.forward(source)?)?;
        let (q, k) = match rope {
            // RoPE runs in float32; the attention kernel then reads q and k in the network's type.
            Some((cos, sin)) => (
                apply_rope(&q, cos, sin)?.to_dtype(x.dtype())?,
                apply_rope(&k, cos, sin)?.to_dtype(x.dtype())?,
            ),
            None => (q, k),
        };
        let out = ops::attention(&q, &k, &v)?
            .transpose(1, 2)?
            .reshape((b, l, d))?;
        self.output_proj.forward(&out)
    }
}

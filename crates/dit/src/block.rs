//! One transformer block: adaLN-LoRA-modulated self-attention, cross-attention and GELU MLP.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use orrery_nn::layers::Linear;
use orrery_nn::ops;

use crate::attention::Attention;
use crate::time_embed::TimeEmbedding;

const LAYER_NORM_EPS: f64 = 1e-6;

/// `adaln_modulation_*`: SiLU -> Linear(D -> r) -> Linear(r -> chunks D), plus the shared adaLN-LoRA term.
/// Float32 throughout (the reference's Wan fp32 strategy).
#[derive(Debug, Clone)]
pub struct AdaLnModulation {
    pub down: Linear,
    pub up: Linear,
    chunks: usize,
}

impl AdaLnModulation {
    pub fn new(vb: VarBuilder, dim: usize, lora_dim: usize, chunks: usize) -> Result<Self> {
        Ok(Self {
            down: Linear::new(vb.pp("1"), dim, lora_dim, false)?,
            up: Linear::new(vb.pp("2"), lora_dim, chunks * dim, false)?,
            chunks,
        })
    }

    fn to_device(&self, device: &Device) -> Result<Self> {
        Ok(Self {
            down: self.down.to_device(device)?,
            up: self.up.to_device(device)?,
            chunks: self.chunks,
        })
    }

    /// (shift, scale[, gate]), each (B, T', 1, D) in float32.
    pub fn forward(&self, time: &TimeEmbedding) -> Result<Vec<Tensor>> {
        let h = self
            .up
            .forward(&self.down.forward(&ops::silu(&time.t_emb)?)?)?;
        let width = h.dim(2)?;
        let lora = time.adaln_lora.narrow(2, 0, width)?;
        let h = (h + lora)?.unsqueeze(2)?;
        h.chunk(self.chunks, 3)
    }
}

/// `LayerNorm(x) (1 + scale) + shift`, in `x`'s type. `x` (B, T, HW, D), modulation (B, T', 1, D).
pub fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    ops::modulate(x, shift, scale, LAYER_NORM_EPS)
}

/// `mlp`: Linear(D -> 4D) -> exact GELU -> Linear(4D -> D), no biases.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub layer1: Linear,
    pub layer2: Linear,
}

impl Mlp {
    pub fn new(vb: VarBuilder, dim: usize, hidden: usize) -> Result<Self> {
        Ok(Self {
            layer1: Linear::new(vb.pp("layer1"), dim, hidden, false)?,
            layer2: Linear::new(vb.pp("layer2"), hidden, dim, false)?,
        })
    }

    fn to_device(&self, device: &Device) -> Result<Self> {
        Ok(Self {
            layer1: self.layer1.to_device(device)?,
            layer2: self.layer2.to_device(device)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.layer2
            .forward(&ops::gelu_erf(&self.layer1.forward(x)?)?)
    }
}

/// `blocks.{i}`.
#[derive(Debug, Clone)]
pub struct Block {
    pub self_attn: Attention,
    pub cross_attn: Attention,
    pub mlp: Mlp,
    pub adaln_modulation_self_attn: AdaLnModulation,
    pub adaln_modulation_cross_attn: AdaLnModulation,
    pub adaln_modulation_mlp: AdaLnModulation,
}

impl Block {
    pub fn new(vb: VarBuilder, config: &crate::DitConfig) -> Result<Self> {
        let d = config.model_channels;
        let fp32 = vb.clone().set_dtype(DType::F32);
        let modulation =
            |name: &str| AdaLnModulation::new(fp32.pp(name), d, config.adaln_lora_dim, 3);
        Ok(Self {
            self_attn: Attention::new(vb.pp("self_attn"), d, d, config.num_heads)?,
            cross_attn: Attention::new(
                vb.pp("cross_attn"),
                d,
                config.crossattn_emb_channels,
                config.num_heads,
            )?,
            mlp: Mlp::new(vb.pp("mlp"), d, config.mlp_hidden())?,
            adaln_modulation_self_attn: modulation("adaln_modulation_self_attn")?,
            adaln_modulation_cross_attn: modulation("adaln_modulation_cross_attn")?,
            adaln_modulation_mlp: modulation("adaln_modulation_mlp")?,
        })
    }

    /// Where the block's weights are.
    pub fn device(&self) -> &Device {
        self.mlp.layer1.weight.device()
    }

    /// A copy on `device`: a block kept in host memory runs from such a copy, dropped after its forward.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        Ok(Self {
            self_attn: self.self_attn.to_device(device)?,
            cross_attn: self.cross_attn.to_device(device)?,
            mlp: self.mlp.to_device(device)?,
            adaln_modulation_self_attn: self.adaln_modulation_self_attn.to_device(device)?,
            adaln_modulation_cross_attn: self.adaln_modulation_cross_attn.to_device(device)?,
            adaln_modulation_mlp: self.adaln_modulation_mlp.to_device(device)?,
        })
    }

    /// `x` (B, T, HW, D); `context` (B, N, C) projected text; `rope` (cos, sin) (T HW, head_dim).
    pub fn forward(
        &self,
        x: &Tensor,
        time: &TimeEmbedding,
        context: &Tensor,
        rope: (&Tensor, &Tensor),
    ) -> Result<Tensor> {
        let (b, t, hw, d) = x.dims4()?;
        let flat = |y: &Tensor| y.reshape((b, t * hw, d));
        let unflat = |y: Tensor| y.reshape((b, t, hw, d));

        let m = self.adaln_modulation_self_attn.forward(time)?;
        let h = flat(&modulate(x, &m[0], &m[1])?)?;
        let h = unflat(self.self_attn.forward(&h, None, Some(rope))?)?;
        let x = ops::gated_residual(x, &h, &m[2])?;

        let m = self.adaln_modulation_cross_attn.forward(time)?;
        let h = flat(&modulate(&x, &m[0], &m[1])?)?;
        let h = unflat(self.cross_attn.forward(&h, Some(context), None)?)?;
        let x = ops::gated_residual(&x, &h, &m[2])?;

        let m = self.adaln_modulation_mlp.forward(time)?;
        let h = self.mlp.forward(&modulate(&x, &m[0], &m[1])?)?;
        ops::gated_residual(&x, &h, &m[2])
    }
}

/// `final_layer`: float32 LayerNorm, adaLN (shift, scale) and Linear(D -> ps ps pt C_out).
#[derive(Debug, Clone)]
pub struct FinalLayer {
    pub adaln_modulation: AdaLnModulation,
    pub linear: Linear,
}

impl FinalLayer {
    /// `vb` is `final_layer`, float32.
    pub fn new(vb: VarBuilder, config: &crate::DitConfig) -> Result<Self> {
        let d = config.model_channels;
        Ok(Self {
            adaln_modulation: AdaLnModulation::new(
                vb.pp("adaln_modulation"),
                d,
                config.adaln_lora_dim,
                2,
            )?,
            linear: Linear::new(vb.pp("linear"), d, config.patch_out_features(), false)?,
        })
    }

    /// (B, T, HW, D) -> (B, T, HW, ps ps pt C_out) float32.
    pub fn forward(&self, x: &Tensor, time: &TimeEmbedding) -> Result<Tensor> {
        let m = self.adaln_modulation.forward(time)?;
        let x = modulate(&x.to_dtype(DType::F32)?, &m[0], &m[1])?;
        self.linear.forward(&x)
    }
}

//! A Qwen2 decoder (the language model of Qwen2.5-VL / Cosmos-Reason1): grouped-query attention with q/k/v
//! biases, rotary positions, SwiGLU MLP, RMSNorm. It returns every hidden state, as Hugging Face's
//! `output_hidden_states=True` does: the token embeddings, then each layer's output, the last one after the
//! final norm.

use candle_core::{DType, Device, Result, Tensor, D};
use candle_nn::VarBuilder;
use orrery_nn::ops;

use crate::config::QwenConfig;
use crate::weights::{Placement, Proj, TextWeights};

/// Hugging Face's Qwen2 RMSNorm: normalise in float32, cast back, then scale by the weight in the input's type.
fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let xf = x.to_dtype(DType::F32)?;
    let ms = xf.sqr()?.mean_keepdim(D::Minus1)?;
    xf.broadcast_div(&(ms + eps)?.sqrt()?)?
        .to_dtype(dtype)?
        .broadcast_mul(&weight.to_dtype(dtype)?)
}

/// cos and sin (L, head_dim) of positions 0..L, computed in float32 the way transformers does (so that long
/// prompts round like the reference): `inv_freq = 1 / theta^(2j / dim)`, angle = position x inv_freq.
pub fn rope_table(
    head_dim: usize,
    theta: f64,
    len: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let theta = theta as f32;
    let inv_freq: Vec<f32> = (0..head_dim / 2)
        .map(|j| 1.0 / theta.powf((2 * j) as f32 / head_dim as f32))
        .collect();
    let mut cos = Vec::with_capacity(len * head_dim);
    let mut sin = Vec::with_capacity(len * head_dim);
    for pos in 0..len {
        for _ in 0..2 {
            for f in &inv_freq {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
    }
    Ok((
        Tensor::from_vec(cos, (len, head_dim), device)?,
        Tensor::from_vec(sin, (len, head_dim), device)?,
    ))
}

#[derive(Debug, Clone)]
struct SelfAttention {
    q_proj: Proj,
    k_proj: Proj,
    v_proj: Proj,
    o_proj: Proj,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    fn new(vb: VarBuilder, c: &QwenConfig, p: &Placement) -> Result<Self> {
        let (h, hd, kv) = (c.hidden_size, c.head_dim(), c.num_key_value_heads);
        Ok(Self {
            q_proj: p.linear(vb.pp("q_proj"), h, c.num_attention_heads * hd, true)?,
            k_proj: p.linear(vb.pp("k_proj"), h, kv * hd, true)?,
            v_proj: p.linear(vb.pp("v_proj"), h, kv * hd, true)?,
            o_proj: p.linear(vb.pp("o_proj"), c.num_attention_heads * hd, h, false)?,
            heads: c.num_attention_heads,
            kv_heads: kv,
            head_dim: hd,
        })
    }

    /// (B, L, n * head_dim) -> (B, n, L, head_dim)
    fn split(&self, x: &Tensor, n: usize) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        x.reshape((b, l, n, self.head_dim))?.transpose(1, 2)
    }

    /// (B, kv, L, hd) -> (B, heads, L, hd), each KV head serving heads / kv query heads in a row.
    fn repeat_kv(&self, x: &Tensor) -> Result<Tensor> {
        let rep = self.heads / self.kv_heads;
        if rep == 1 {
            return Ok(x.clone());
        }
        let (b, kv, l, hd) = x.dims4()?;
        x.unsqueeze(2)?
            .broadcast_as((b, kv, rep, l, hd))?
            .reshape((b, kv * rep, l, hd))
    }

    fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let dtype = x.dtype();
        let q = self.split(&self.q_proj.forward(x)?, self.heads)?;
        let k = self.split(&self.k_proj.forward(x)?, self.kv_heads)?;
        let v = self.split(&self.v_proj.forward(x)?, self.kv_heads)?;
        let q = ops::rotate_half_rope(&q, cos, sin)?.to_dtype(dtype)?;
        let k = ops::rotate_half_rope(&k, cos, sin)?.to_dtype(dtype)?;
        let out = ops::causal_attention(&q, &self.repeat_kv(&k)?, &self.repeat_kv(&v)?)?;
        self.o_proj.forward(
            &out.transpose(1, 2)?
                .reshape((b, l, self.heads * self.head_dim))?,
        )
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    gate_proj: Proj,
    up_proj: Proj,
    down_proj: Proj,
}

impl Mlp {
    fn new(vb: VarBuilder, c: &QwenConfig, p: &Placement) -> Result<Self> {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        Ok(Self {
            gate_proj: p.linear(vb.pp("gate_proj"), h, i, false)?,
            up_proj: p.linear(vb.pp("up_proj"), h, i, false)?,
            down_proj: p.linear(vb.pp("down_proj"), i, h, false)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = ops::silu(&self.gate_proj.forward(x)?)?;
        self.down_proj.forward(&(gate * self.up_proj.forward(x)?)?)
    }
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attn: SelfAttention,
    mlp: Mlp,
    input_layernorm: Tensor,
    post_attention_layernorm: Tensor,
    eps: f64,
}

impl DecoderLayer {
    fn new(vb: VarBuilder, c: &QwenConfig, p: &Placement) -> Result<Self> {
        Ok(Self {
            self_attn: SelfAttention::new(vb.pp("self_attn"), c, p)?,
            mlp: Mlp::new(vb.pp("mlp"), c, p)?,
            input_layernorm: p.tensor(vb.pp("input_layernorm").get(c.hidden_size, "weight")?)?,
            post_attention_layernorm: p.tensor(
                vb.pp("post_attention_layernorm")
                    .get(c.hidden_size, "weight")?,
            )?,
            eps: c.rms_norm_eps,
        })
    }

    fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let h = self
            .self_attn
            .forward(&rms_norm(x, &self.input_layernorm, self.eps)?, cos, sin)?;
        let x = (x + h)?;
        let h = self
            .mlp
            .forward(&rms_norm(&x, &self.post_attention_layernorm, self.eps)?)?;
        x + h
    }
}

/// The Qwen2 decoder stack (`embed_tokens`, `layers`, `norm`), without the language-model head.
#[derive(Debug, Clone)]
pub struct QwenModel {
    pub config: QwenConfig,
    /// (vocab, hidden); in host memory with 8-bit weights (only the prompt's rows are gathered).
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: Tensor,
    /// Where the layers run.
    device: Device,
    weights: TextWeights,
}

impl QwenModel {
    /// `vb` points at the decoder (`model` or `model.language_model` in Hugging Face folders).
    pub fn new(vb: VarBuilder, config: &QwenConfig) -> Result<Self> {
        let device = vb.device().clone();
        Self::with_weights(vb, config, TextWeights::Full, &device)
    }

    /// As [`Self::new`] with `weights`: for [`TextWeights::Q8`], `vb` should read into host memory (each Linear is
    /// quantized from there onto `device`, layer by layer); for [`TextWeights::Full`], `vb` decides the device.
    pub fn with_weights(
        vb: VarBuilder,
        config: &QwenConfig,
        weights: TextWeights,
        device: &Device,
    ) -> Result<Self> {
        let (p, device) = match weights {
            TextWeights::Full => (Placement::AsLoaded, vb.device().clone()),
            TextWeights::Q8 => (Placement::Q8Onto(device.clone()), device.clone()),
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| DecoderLayer::new(vb.pp("layers").pp(i), config, &p))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config: config.clone(),
            embed_tokens: vb
                .pp("embed_tokens")
                .get((config.vocab_size, config.hidden_size), "weight")?,
            layers,
            norm: p.tensor(vb.pp("norm").get(config.hidden_size, "weight")?)?,
            device,
            weights,
        })
    }

    /// Where the layers run (and the hidden states are returned).
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn weights(&self) -> TextWeights {
        self.weights
    }

    pub fn dtype(&self) -> DType {
        self.embed_tokens.dtype()
    }

    /// `input_ids` (B, L) -> num_hidden_layers + 1 hidden states (B, L, hidden): the embeddings, the output of
    /// layers 1..N-1, and the output of layer N after the final norm. Plain causal attention, positions 0..L,
    /// no padding mask (as the Cosmos embedder runs it).
    pub fn hidden_states(&self, input_ids: &Tensor) -> Result<Vec<Tensor>> {
        let (_, len) = input_ids.dims2()?;
        let (cos, sin) = rope_table(
            self.config.head_dim(),
            self.config.rope_theta,
            len,
            &self.device,
        )?;
        let ids = input_ids.to_dtype(DType::U32)?;
        let (b, l) = ids.dims2()?;
        if b * l > 0 {
            let max = ids.flatten_all()?.max(0)?.to_scalar::<u32>()? as usize;
            if max >= self.config.vocab_size {
                candle_core::bail!(
                    "token id {max} is outside the vocabulary of {}",
                    self.config.vocab_size
                );
            }
        }
        let table = self.embed_tokens.device();
        let mut x = self
            .embed_tokens
            .index_select(&ids.flatten_all()?.to_device(table)?, 0)?
            .reshape((b, l, self.config.hidden_size))?
            .to_device(&self.device)?;
        let mut states = Vec::with_capacity(self.layers.len() + 1);
        states.push(x.clone());
        for layer in &self.layers {
            x = layer.forward(&x, &cos, &sin)?;
            states.push(x.clone());
        }
        if let Some(last) = states.last_mut() {
            *last = rms_norm(&x, &self.norm, self.config.rms_norm_eps)?;
        }
        Ok(states)
    }
}

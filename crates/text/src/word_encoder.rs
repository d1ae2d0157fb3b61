//! The small text encoder of orrery's own models: whole words of a closed caption vocabulary, a learned position
//! table and a few pre-norm transformer layers, trained jointly with the DiT. Its output has the same form as the
//! Reason1 embedder's (1, N, width) with zero rows after the prompt, so it plugs into the DiT the same way.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};
use orrery_nn::layers::Linear;
use orrery_nn::ops;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TextError};
use crate::tokenizer::Overflow;

/// Token id of padding (never produced by [`WordEncoderConfig::tokenize`]) and of words outside the vocabulary.
pub const UNKNOWN_ID: u32 = 1;
const FIRST_WORD_ID: u32 = 2;
const NORM_EPS: f64 = 1e-6;
/// `config.json`'s `model_type`.
pub const WORD_ENCODER_TYPE: &str = "orrery_word_encoder";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WordEncoderConfig {
    pub model_type: String,
    /// The words, lowercase; word i has id i + 2.
    pub vocab: Vec<String>,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    /// Prompt length N of the output (and the longest prompt).
    pub max_tokens: usize,
}

/// Lowercase words of letters and digits, in order.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

impl WordEncoderConfig {
    /// A configuration whose vocabulary is every word of `texts`, sorted.
    pub fn from_texts<'a>(
        texts: impl IntoIterator<Item = &'a str>,
        width: usize,
        layers: usize,
        heads: usize,
        max_tokens: usize,
    ) -> Self {
        let mut vocab: Vec<String> = texts.into_iter().flat_map(words).collect();
        vocab.sort();
        vocab.dedup();
        Self {
            model_type: WORD_ENCODER_TYPE.to_owned(),
            vocab,
            width,
            layers,
            heads,
            max_tokens,
        }
    }

    pub fn read(path: &Path) -> Result<Self> {
        let fail = |detail: String| TextError::Config {
            path: path.to_owned(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let c: Self = serde_json::from_str(&text).map_err(|e| fail(format!("bad JSON: {e}")))?;
        c.validate().map_err(fail)?;
        Ok(c)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.model_type != WORD_ENCODER_TYPE {
            return Err(format!(
                "model_type {:?}: expected {WORD_ENCODER_TYPE:?}",
                self.model_type
            ));
        }
        if self.width == 0 || self.layers == 0 || self.heads == 0 || self.max_tokens == 0 {
            return Err("width, layers, heads and max_tokens must be positive".into());
        }
        if !self.width.is_multiple_of(self.heads) {
            return Err(format!(
                "width {} is not divisible by heads {}",
                self.width, self.heads
            ));
        }
        Ok(())
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len() + FIRST_WORD_ID as usize
    }

    /// Token ids of `text`; too many words are an error or cut, as `overflow` says.
    pub fn tokenize(&self, text: &str, overflow: Overflow) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = words(text)
            .map(|w| match self.vocab.binary_search(&w) {
                Ok(i) => i as u32 + FIRST_WORD_ID,
                Err(_) => UNKNOWN_ID,
            })
            .collect();
        if ids.len() > self.max_tokens {
            if overflow == Overflow::Error {
                return Err(TextError::Prompt(format!(
                    "{} words, the encoder takes at most {}",
                    ids.len(),
                    self.max_tokens
                )));
            }
            tracing::warn!(
                "prompt cut to the word encoder's {} words (it has {})",
                self.max_tokens,
                ids.len()
            );
            ids.truncate(self.max_tokens);
        }
        Ok(ids)
    }
}

/// Pre-norm transformer layer: `x + attn(norm(x))`, then `x + mlp(norm(x))`, bidirectional attention.
#[derive(Debug, Clone)]
struct EncoderLayer {
    attn_norm: Tensor,
    qkv: Linear,
    out: Linear,
    mlp_norm: Tensor,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
}

impl EncoderLayer {
    fn new(vb: VarBuilder, width: usize, heads: usize) -> candle_core::Result<Self> {
        let ones = Init::Const(1.0);
        Ok(Self {
            attn_norm: vb.pp("attn_norm").get_with_hints(width, "weight", ones)?,
            qkv: Linear::new(vb.pp("qkv"), width, 3 * width, true)?,
            out: Linear::new(vb.pp("out"), width, width, true)?,
            mlp_norm: vb.pp("mlp_norm").get_with_hints(width, "weight", ones)?,
            fc1: Linear::new(vb.pp("fc1"), width, 4 * width, true)?,
            fc2: Linear::new(vb.pp("fc2"), 4 * width, width, true)?,
            heads,
        })
    }

    /// x (B, N, D) -> (B, N, D); `key_bias` (B, 1, 1, N) masks padding keys of a batch of prompts.
    fn forward(&self, x: &Tensor, key_bias: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let dh = d / self.heads;
        let qkv = self
            .qkv
            .forward(&ops::rms_norm(x, &self.attn_norm, NORM_EPS)?)?;
        // (B, N, 3, H, Dh) -> three (B, H, N, Dh).
        let qkv = qkv
            .reshape((b, n, 3, self.heads, dh))?
            .permute((2, 0, 3, 1, 4))?;
        let (q, k, v) = (
            qkv.get(0)?.contiguous()?,
            qkv.get(1)?.contiguous()?,
            qkv.get(2)?.contiguous()?,
        );
        let a = match key_bias {
            None => ops::attention(&q, &k, &v)?,
            Some(bias) => ops::attention_with_key_bias(&q, &k, &v, bias)?,
        }
        .transpose(1, 2)?
        .reshape((b, n, d))?;
        let x = (x + self.out.forward(&a)?)?;
        let h = self
            .fc1
            .forward(&ops::rms_norm(&x, &self.mlp_norm, NORM_EPS)?)?;
        &x + self.fc2.forward(&ops::gelu_erf(&h)?)?
    }
}

/// The encoder. Parameter names: `token_embedding`, `position_embedding`, `layers.{i}.*`, `norm.weight`.
#[derive(Debug, Clone)]
pub struct WordEncoder {
    pub config: WordEncoderConfig,
    token_embedding: Tensor,
    position_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    norm: Tensor,
}

impl WordEncoder {
    pub fn new(vb: VarBuilder, config: &WordEncoderConfig) -> Result<Self> {
        config.validate().map_err(|detail| TextError::Config {
            path: "word encoder".into(),
            detail,
        })?;
        let d = config.width;
        let small = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        Ok(Self {
            token_embedding: vb.get_with_hints(
                (config.vocab_size(), d),
                "token_embedding",
                small,
            )?,
            position_embedding: vb.get_with_hints(
                (config.max_tokens, d),
                "position_embedding",
                small,
            )?,
            layers: (0..config.layers)
                .map(|i| EncoderLayer::new(vb.pp("layers").pp(i), d, config.heads))
                .collect::<candle_core::Result<_>>()?,
            norm: vb
                .pp("norm")
                .get_with_hints(d, "weight", Init::Const(1.0))?,
            config: config.clone(),
        })
    }

    /// Opens `model.safetensors` and `config.json` of a folder.
    pub fn open(dir: &Path, device: &Device) -> Result<Self> {
        let config = WordEncoderConfig::read(&dir.join("config.json"))?;
        let weights = dir.join("model.safetensors");
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
            .map_err(|e| TextError::Weights {
                path: weights.clone(),
                detail: e.to_string(),
            })?;
        Self::new(vb, &config).map_err(|e| match e {
            TextError::Candle(e) => TextError::Weights {
                path: weights,
                detail: e.to_string(),
            },
            other => other,
        })
    }

    pub fn device(&self) -> &Device {
        self.token_embedding.device()
    }

    /// Embedding (1, max_tokens, width) of token ids: one row per word, zero rows after. No words give the zero
    /// embedding, the unconditional input the model is trained with.
    pub fn embed_ids(&self, ids: &[u32]) -> Result<Tensor> {
        let (n, d, dev) = (ids.len(), self.config.width, self.device());
        self.check_length(n)?;
        if n == 0 {
            return Ok(Tensor::zeros(
                (1, self.config.max_tokens, d),
                DType::F32,
                dev,
            )?);
        }
        let x = self.encode(ids.to_vec(), 1, n, None)?;
        self.pad_rows(x, n)
    }

    /// Embeddings (B, max_tokens, width) of a batch of token id lists, each equal to its [`Self::embed_ids`]
    /// (up to float rounding): one forward pass with padding keys masked, instead of one pass per prompt (a
    /// training step's captions; on a GPU each pass costs hundreds of kernel launches).
    pub fn embed_batch(&self, batch: &[&[u32]]) -> Result<Tensor> {
        let (b, d, dev) = (batch.len(), self.config.width, self.device());
        let lengths: Vec<usize> = batch.iter().map(|ids| ids.len()).collect();
        let n = lengths.iter().copied().max().unwrap_or(0);
        self.check_length(n)?;
        if n == 0 {
            return Ok(Tensor::zeros(
                (b, self.config.max_tokens, d),
                DType::F32,
                dev,
            )?);
        }
        // Padding takes id 0 (no word); its rows are masked as keys and zeroed in the output.
        let padded: Vec<u32> = batch
            .iter()
            .flat_map(|ids| ids.iter().copied().chain(std::iter::repeat(0)).take(n))
            .collect();
        let key_bias = ops::key_padding_bias(&lengths, n, dev)?;
        let x = self.encode(padded, b, n, Some(&key_bias))?;
        let real_rows: Vec<f32> = lengths
            .iter()
            .flat_map(|&len| (0..n).map(move |j| if j < len { 1.0 } else { 0.0 }))
            .collect();
        let real_rows = Tensor::from_vec(real_rows, (b, n, 1), dev)?;
        self.pad_rows(x.broadcast_mul(&real_rows)?, n)
    }

    /// Token ids (B·n, one prompt after another) through the embeddings, the layers (`key_bias` masking padding
    /// keys) and the final norm: (B, n, width).
    fn encode(
        &self,
        ids: Vec<u32>,
        b: usize,
        n: usize,
        key_bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        let idx = Tensor::from_vec(ids, b * n, self.device())?;
        let mut x = self
            .token_embedding
            .index_select(&idx, 0)?
            .reshape((b, n, self.config.width))?
            .broadcast_add(&self.position_embedding.narrow(0, 0, n)?)?;
        for layer in &self.layers {
            x = layer.forward(&x, key_bias)?;
        }
        Ok(ops::rms_norm(&x, &self.norm, NORM_EPS)?)
    }

    fn check_length(&self, n: usize) -> Result<()> {
        if n > self.config.max_tokens {
            return Err(TextError::Input {
                name: "ids",
                expected: format!("at most {} tokens", self.config.max_tokens),
                found: n.to_string(),
            });
        }
        Ok(())
    }

    /// (B, n, D) -> (B, max_tokens, D) with zero rows after the n-th.
    fn pad_rows(&self, x: Tensor, n: usize) -> Result<Tensor> {
        let pad = self.config.max_tokens - n;
        Ok(if pad == 0 {
            x
        } else {
            let (b, _, d) = x.dims3()?;
            let zeros = Tensor::zeros((b, pad, d), DType::F32, x.device())?;
            Tensor::cat(&[&x, &zeros], 1)?
        })
    }

    pub fn embed(&self, prompt: &str, overflow: Overflow) -> Result<Tensor> {
        self.embed_ids(&self.config.tokenize(prompt, overflow)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orrery_nn::SeededVarMap;

    fn tiny() -> (SeededVarMap, WordEncoder) {
        let config =
            WordEncoderConfig::from_texts(["A red ball falls.", "The blue block"], 16, 2, 2, 8);
        let vars = SeededVarMap::new(1);
        let enc = WordEncoder::new(vars.var_builder(&Device::Cpu), &config).unwrap();
        (vars, enc)
    }

    #[test]
    fn a_batch_embeds_each_prompt_as_it_would_alone() {
        let (_, enc) = tiny();
        let prompts: [&[u32]; 4] = [&[2, 7, 3], &[4, 5, 6, 7, 8, 2, 3], &[], &[6]];
        let batch = enc.embed_batch(&prompts).unwrap();
        assert_eq!(batch.dims(), &[4, 8, 16]);
        for (i, ids) in prompts.iter().enumerate() {
            let alone = enc.embed_ids(ids).unwrap().squeeze(0).unwrap();
            let diff = (batch.get(i).unwrap() - alone)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-5, "prompt {i}: {diff}");
        }
        let empty = enc.embed_batch(&[&[], &[]]).unwrap();
        assert_eq!(empty.dims(), &[2, 8, 16]);
        assert!(enc.embed_batch(&[&[2; 9]]).is_err());
    }

    #[test]
    fn tokenizes_words_and_pads_with_zero_rows() {
        let (_, enc) = tiny();
        let c = &enc.config;
        assert_eq!(
            c.vocab,
            ["a", "ball", "block", "blue", "falls", "red", "the"]
        );
        assert_eq!(
            c.tokenize("A RED, ball!", Overflow::Error).unwrap(),
            [2, 7, 3]
        );
        assert_eq!(
            c.tokenize("a green ball", Overflow::Error).unwrap(),
            [2, UNKNOWN_ID, 3]
        );
        let long = "a a a a a a a a a";
        assert!(c.tokenize(long, Overflow::Error).is_err());
        assert_eq!(c.tokenize(long, Overflow::Truncate).unwrap().len(), 8);
        let e = enc.embed("the red ball", Overflow::Error).unwrap();
        assert_eq!(e.dims(), &[1, 8, 16]);
        let rows = e
            .squeeze(0)
            .unwrap()
            .abs()
            .unwrap()
            .sum(1)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(rows[..3].iter().all(|r| *r > 0.0) && rows[3..].iter().all(|r| *r == 0.0));
        let empty = enc.embed("", Overflow::Error).unwrap();
        assert_eq!(
            empty
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (vars, enc) = tiny();
        let probe = Tensor::arange(0f32, 8.0 * 16.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 8, 16))
            .unwrap()
            .sin()
            .unwrap();
        let loss = || {
            let e = enc
                .embed("the red ball falls", Overflow::Error)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            (e * &probe)?.sum_all()
        };
        let report =
            orrery_nn::gradcheck::check_gradients(&vars.named_vars(), loss, 3, 1e-2, 3e-2, 1e-3)
                .unwrap();
        report.assert_ok();
    }
}

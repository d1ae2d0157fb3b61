//! The Reason1 prompt embedder: a Hugging Face Qwen2.5-VL / Cosmos-Reason1 folder (config.json, tokenizer.json,
//! safetensors shards) -> (B, 512, layers x hidden) prompt embeddings.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use orrery_nn::Checkpoint;

use crate::config::QwenConfig;
use crate::cosmos_embed::cosmos_embedding;
use crate::error::{Result, TextError};
use crate::qwen::QwenModel;
use crate::tokenizer::{Overflow, PromptTokenizer, PROMPT_TOKENS};
use crate::weights::TextWeights;

/// Where the decoder's tensors sit in the folder's weights.
const LAYOUTS: [&str; 3] = ["model.language_model", "model", ""];

/// Finds the decoder's prefix: `model.language_model.` (recent Qwen2.5-VL folders), `model.` (older ones and
/// plain Qwen2), or none (a bare decoder). The vision tower and the head are never read.
pub fn decoder_prefix(checkpoint: &Checkpoint) -> Result<&'static str> {
    LAYOUTS
        .into_iter()
        .find(|prefix| {
            let key = if prefix.is_empty() {
                "embed_tokens.weight".to_owned()
            } else {
                format!("{prefix}.embed_tokens.weight")
            };
            checkpoint.contains(&key)
        })
        .ok_or_else(|| {
            let first: Vec<&str> = checkpoint
                .tensors()
                .iter()
                .take(4)
                .map(|t| t.name.as_str())
                .collect();
            TextError::Weights {
                path: checkpoint.path().to_owned(),
                detail: format!(
                    "no Qwen2 decoder found (expected `model.language_model.embed_tokens.weight`, \
                     `model.embed_tokens.weight` or `embed_tokens.weight`; first names: {first:?})"
                ),
            }
        })
}

/// The weights of a model folder: its sharded index, its single `model.safetensors`, or all its safetensors.
fn weights_path(dir: &Path) -> Result<PathBuf> {
    for name in ["model.safetensors.index.json", "model.safetensors"] {
        if dir.join(name).is_file() {
            return Ok(dir.join(name));
        }
    }
    if dir.is_dir() {
        return Ok(dir.to_owned());
    }
    Err(TextError::Weights {
        path: dir.to_owned(),
        detail: "not a folder".into(),
    })
}

pub struct Reason1Embedder {
    pub model: QwenModel,
    pub tokenizer: PromptTokenizer,
    fingerprint: String,
}

impl Reason1Embedder {
    /// Loads the decoder (in `dtype`) and the tokenizer of a Hugging Face folder. A 7B in bfloat16 takes about
    /// 15 GB; drop the embedder once the prompts are encoded.
    pub fn open(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        Self::open_with_tokenizer(dir, dir, dtype, TextWeights::Full, device)
    }

    /// As [`Self::open`], with `tokenizer.json` in its own folder (diffusers pipelines keep it in `tokenizer/`).
    pub fn open_with_tokenizer(
        dir: &Path,
        tokenizer_dir: &Path,
        dtype: DType,
        weights: TextWeights,
        device: &Device,
    ) -> Result<Self> {
        let tokenizer = PromptTokenizer::from_dir(tokenizer_dir)?;
        let files = hash_files(dir, tokenizer_dir)?;
        let checkpoint = Checkpoint::open(weights_path(dir)?)?;
        let fingerprint = finish_fingerprint(files, &checkpoint, dtype, weights);
        let model = decoder_from(dir, checkpoint, dtype, weights, device)?;
        Ok(Self {
            model,
            tokenizer,
            fingerprint,
        })
    }

    /// Identifies what an embedding was computed with, from the folder's files alone (config, tokenizer, the
    /// names, types and shapes of the weights) and the compute type, so caches can be read without loading.
    pub fn fingerprint(dir: &Path, dtype: DType) -> Result<String> {
        Self::fingerprint_with_tokenizer(dir, dir, dtype, TextWeights::Full)
    }

    pub fn fingerprint_with_tokenizer(
        dir: &Path,
        tokenizer_dir: &Path,
        dtype: DType,
        weights: TextWeights,
    ) -> Result<String> {
        let files = hash_files(dir, tokenizer_dir)?;
        let checkpoint = Checkpoint::open(weights_path(dir)?)?;
        Ok(finish_fingerprint(files, &checkpoint, dtype, weights))
    }

    pub fn fingerprint_str(&self) -> &str {
        &self.fingerprint
    }

    /// Cosmos embedding of token ids (B, L) -> (B, L, layers x hidden).
    pub fn embed_ids(&self, input_ids: &Tensor) -> Result<Tensor> {
        embed_token_ids(&self.model, input_ids)
    }

    /// Cosmos embedding of one prompt: template, 512 ids, (1, 512, layers x hidden).
    pub fn embed(&self, prompt: &str, overflow: Overflow) -> Result<Tensor> {
        let ids = self.tokenizer.prompt_ids(prompt, PROMPT_TOKENS, overflow)?;
        let ids = Tensor::from_vec(ids, (1, PROMPT_TOKENS), self.model.device())?;
        self.embed_ids(&ids)
    }
}

/// The Qwen decoder of a Hugging Face folder alone, without its tokenizer: enough to embed token ids.
pub fn open_decoder(
    dir: &Path,
    dtype: DType,
    weights: TextWeights,
    device: &Device,
) -> Result<QwenModel> {
    let checkpoint = Checkpoint::open(weights_path(dir)?)?;
    decoder_from(dir, checkpoint, dtype, weights, device)
}

fn decoder_from(
    dir: &Path,
    checkpoint: Checkpoint,
    dtype: DType,
    weights: TextWeights,
    device: &Device,
) -> Result<QwenModel> {
    let config = QwenConfig::from_file(&dir.join("config.json"))?;
    let prefix = decoder_prefix(&checkpoint)?;
    // 8-bit weights are quantized from host memory, layer by layer.
    let read_onto = match weights {
        TextWeights::Full => device,
        TextWeights::Q8 => &Device::Cpu,
    };
    let vb = checkpoint.var_builder(dtype, read_onto);
    let vb = if prefix.is_empty() { vb } else { vb.pp(prefix) };
    QwenModel::with_weights(vb, &config, weights, device).map_err(|e| TextError::Weights {
        path: dir.to_owned(),
        detail: e.to_string(),
    })
}

/// Cosmos embedding of token ids (B, L) -> (B, L, layers x hidden) with `model`.
pub fn embed_token_ids(model: &QwenModel, input_ids: &Tensor) -> Result<Tensor> {
    let dims = input_ids.dims();
    if dims.len() != 2 || dims[1] == 0 {
        return Err(TextError::Input {
            name: "input_ids",
            expected: "(B, L) with L > 0".into(),
            found: format!("{dims:?}"),
        });
    }
    let states = model.hidden_states(input_ids)?;
    Ok(cosmos_embedding(&states)?)
}

/// The fingerprint's first part: config.json and tokenizer.json (read before any weights are opened, so a missing
/// file is what gets reported).
fn hash_files(dir: &Path, tokenizer_dir: &Path) -> Result<Fnv64> {
    let mut h = Fnv64::default();
    for path in [
        dir.join("config.json"),
        tokenizer_dir.join("tokenizer.json"),
    ] {
        let bytes = std::fs::read(&path).map_err(|e| TextError::Config {
            detail: e.to_string(),
            path,
        })?;
        h.write(&bytes);
    }
    Ok(h)
}

/// The fingerprint's second part: the names, types and shapes of the weights, the compute type and (where not
/// full) the weights' storage.
fn finish_fingerprint(
    mut h: Fnv64,
    checkpoint: &Checkpoint,
    dtype: DType,
    weights: TextWeights,
) -> String {
    for t in checkpoint.tensors() {
        h.write(format!("{}:{}:{:?};", t.name, t.dtype.torch_name(), t.shape).as_bytes());
    }
    let storage = match weights {
        TextWeights::Full => String::new(),
        w => format!("-{}", w.name()),
    };
    format!("reason1-{:016x}-{dtype:?}{storage}", h.finish())
}

/// 64-bit FNV-1a, a stable hash for cache keys (not for security).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub(crate) fn finish(self) -> u64 {
        self.0
    }
}

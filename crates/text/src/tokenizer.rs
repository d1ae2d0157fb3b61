//! The Reason1 prompt tokenizer: Qwen's byte-level BPE from `tokenizer.json`, the Cosmos chat template, and the
//! fixed-length (512 by default) pad / truncate of the reference.

use std::path::Path;

use serde_json::Value;
use tokenizers::Tokenizer;

use crate::error::{Result, TextError};

/// The system message of the Cosmos prompt template (`text_encoder.py`).
pub const SYSTEM_PROMPT: &str =
    "You are a helpful assistant who will provide prompts to an image generator.";

/// Token count of every Cosmos prompt embedding (`NUM_EMBEDDING_PADDING_TOKENS`).
pub const PROMPT_TOKENS: usize = 512;

/// The chat template Qwen2.5-VL's processor renders for a system and a user message with no generation prompt.
pub fn render_template(prompt: &str) -> String {
    format!("<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n")
}

/// What to do with a prompt whose template is longer than the fixed length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse it with an error that says by how much it is too long.
    Error,
    /// Keep the first tokens, as the reference does silently (the end of the prompt and `<|im_end|>` are lost).
    Truncate,
}

#[derive(Debug, Clone)]
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    pad_id: u32,
}

impl PromptTokenizer {
    /// Reads `tokenizer.json` from a model folder; the pad token is `tokenizer_config.json`'s `pad_token` when
    /// present, else `<|endoftext|>`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let fail = |detail: String| TextError::Tokenizer {
            path: path.clone(),
            detail,
        };
        if !path.is_file() {
            return Err(fail(
                "not found: the text encoder folder needs the model's tokenizer.json".into(),
            ));
        }
        let tokenizer =
            Tokenizer::from_file(&path).map_err(|e| fail(format!("unreadable tokenizer: {e}")))?;
        let pad_token = std::fs::read_to_string(dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| match v.get("pad_token") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Object(o)) => {
                    o.get("content").and_then(Value::as_str).map(str::to_owned)
                }
                _ => None,
            })
            .unwrap_or_else(|| "<|endoftext|>".into());
        let pad_id = tokenizer
            .token_to_id(&pad_token)
            .ok_or_else(|| fail(format!("pad token {pad_token:?} is not in the vocabulary")))?;
        for special in ["<|im_start|>", "<|im_end|>"] {
            if tokenizer.token_to_id(special).is_none() {
                return Err(fail(format!(
                    "{special} is not in the vocabulary: not a Qwen chat tokenizer"
                )));
            }
        }
        Ok(Self { tokenizer, pad_id })
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Ids of a text, special tokens recognised, nothing added.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TextError::Prompt(format!("cannot tokenize: {e}")))
    }

    /// The template of `prompt`, padded with the pad id or cut to exactly `length` ids.
    pub fn prompt_ids(&self, prompt: &str, length: usize, overflow: Overflow) -> Result<Vec<u32>> {
        if prompt.trim().is_empty() {
            return Err(TextError::Prompt(
                "empty prompt (the negative prompt or a real description is expected)".into(),
            ));
        }
        let mut ids = self.encode_text(&render_template(prompt))?;
        if ids.len() > length && overflow == Overflow::Error {
            return Err(TextError::Prompt(format!(
                "too long: {} tokens with the template, the encoder takes {length} (shorten it by {} tokens, or \
                 allow truncation as the reference does)",
                ids.len(),
                ids.len() - length
            )));
        }
        if ids.len() > length {
            tracing::warn!(
                "prompt cut to the text encoder's {length} tokens (it has {} with the template; the end is lost, \
                 as in the reference)",
                ids.len()
            );
        }
        ids.resize(length, self.pad_id);
        Ok(ids)
    }
}

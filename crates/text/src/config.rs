//! The text part of a Qwen2 / Qwen2.5-VL `config.json`.

use std::path::Path;

use serde_json::Value;

use crate::error::{Result, TextError};

/// Shape of a Qwen2 decoder (the language model of Qwen2.5-VL / Cosmos-Reason1).
#[derive(Debug, Clone, PartialEq)]
pub struct QwenConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
}

impl QwenConfig {
    /// Cosmos-Reason1-7B (Qwen2.5-VL-7B), as `cosmos_predict2/_src/predict2/text_encoders/text_encoder.py`
    /// configures it: 28 layers, hidden 3584, 28 heads / 4 KV heads, FFN 18944, vocab 152064.
    pub fn reason1_7b() -> Self {
        Self {
            vocab_size: 152_064,
            hidden_size: 3584,
            intermediate_size: 18_944,
            num_hidden_layers: 28,
            num_attention_heads: 28,
            num_key_value_heads: 4,
            rms_norm_eps: 1e-6,
            rope_theta: 1_000_000.0,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The decoder's parameters (without the language-model head) as a Hugging Face Qwen2 folder names them
    /// (`model.` prefix), with their shapes, in load order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i) = (self.hidden_size, self.intermediate_size);
        let q = self.num_attention_heads * self.head_dim();
        let kv = self.num_key_value_heads * self.head_dim();
        let mut out = vec![(
            "model.embed_tokens.weight".to_owned(),
            vec![self.vocab_size, h],
        )];
        for l in 0..self.num_hidden_layers {
            let p = format!("model.layers.{l}");
            for (name, shape) in [
                ("self_attn.q_proj.weight", vec![q, h]),
                ("self_attn.q_proj.bias", vec![q]),
                ("self_attn.k_proj.weight", vec![kv, h]),
                ("self_attn.k_proj.bias", vec![kv]),
                ("self_attn.v_proj.weight", vec![kv, h]),
                ("self_attn.v_proj.bias", vec![kv]),
                ("self_attn.o_proj.weight", vec![h, q]),
                ("mlp.gate_proj.weight", vec![i, h]),
                ("mlp.up_proj.weight", vec![i, h]),
                ("mlp.down_proj.weight", vec![h, i]),
                ("input_layernorm.weight", vec![h]),
                ("post_attention_layernorm.weight", vec![h]),
            ] {
                out.push((format!("{p}.{name}"), shape));
            }
        }
        out.push(("model.norm.weight".to_owned(), vec![h]));
        out
    }

    /// A plain Qwen2 `config.json` of this shape (what [`Self::from_file`] reads back).
    pub fn to_config_json(&self) -> String {
        let json = serde_json::json!({
            "architectures": ["Qwen2Model"],
            "model_type": "qwen2",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "hidden_act": "silu",
            "tie_word_embeddings": false,
        });
        format!("{json:#}\n")
    }

    /// Width of the Cosmos prompt embedding: every layer's hidden state concatenated.
    pub fn embedding_width(&self) -> usize {
        self.num_hidden_layers * self.hidden_size
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let nonzero = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads)
            || !self.head_dim().is_multiple_of(2)
        {
            return Err(format!(
                "hidden_size {} must split into {} heads of even size",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !(self.rms_norm_eps > 0.0 && self.rope_theta > 0.0) {
            return Err("rms_norm_eps and rope_theta must be positive".into());
        }
        Ok(())
    }

    /// Reads the language-model part of a Hugging Face `config.json`: `text_config` (transformers 5 layout of
    /// Qwen2.5-VL) or the top level (older Qwen2.5-VL and plain Qwen2 configs). `rope_theta` is read from
    /// `rope_parameters` or the top level.
    pub fn from_file(path: &Path) -> Result<Self> {
        let fail = |detail: String| TextError::Config {
            path: path.to_owned(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let root: Value =
            serde_json::from_str(&text).map_err(|e| fail(format!("bad JSON: {e}")))?;
        let section = root
            .get("text_config")
            .filter(|v| v.is_object())
            .unwrap_or(&root);
        let uint = |name: &str| -> Result<usize> {
            section
                .get(name)
                .or_else(|| root.get(name))
                .and_then(Value::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| fail(format!("missing or non-integer field `{name}`")))
        };
        let rope_theta = section
            .get("rope_parameters")
            .and_then(|r| r.get("rope_theta"))
            .or_else(|| section.get("rope_theta"))
            .or_else(|| root.get("rope_theta"))
            .and_then(Value::as_f64)
            .unwrap_or(1_000_000.0);
        let config = Self {
            vocab_size: uint("vocab_size")?,
            hidden_size: uint("hidden_size")?,
            intermediate_size: uint("intermediate_size")?,
            num_hidden_layers: uint("num_hidden_layers")?,
            num_attention_heads: uint("num_attention_heads")?,
            num_key_value_heads: uint("num_key_value_heads")?,
            rms_norm_eps: section
                .get("rms_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-6),
            rope_theta,
        };
        config.validate().map_err(fail)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_config_reads_back_and_the_7b_has_its_parameter_count() {
        let c = QwenConfig::reason1_7b();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, c.to_config_json()).unwrap();
        assert_eq!(QwenConfig::from_file(&path).unwrap(), c);
        let params: usize = c
            .parameter_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        // Qwen2.5-7B: 7.62 B with its 0.545 B head, which the embedder does not need.
        assert_eq!(params, 7_070_619_136);
    }

    #[test]
    fn reason1_preset_gives_the_published_embedding_width() {
        let c = QwenConfig::reason1_7b();
        c.validate().unwrap();
        assert_eq!(c.head_dim(), 128);
        assert_eq!(c.embedding_width(), 100_352);
    }

    #[test]
    fn reads_both_config_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("nested.json");
        std::fs::write(
            &nested,
            r#"{"text_config": {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128,
                "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
                "rms_norm_eps": 1e-6, "rope_parameters": {"rope_theta": 1000000.0}}}"#,
        )
        .unwrap();
        let flat = dir.path().join("flat.json");
        std::fs::write(
            &flat,
            r#"{"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
                "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0}"#,
        )
        .unwrap();
        assert_eq!(
            QwenConfig::from_file(&nested).unwrap(),
            QwenConfig::from_file(&flat).unwrap()
        );
        std::fs::write(&flat, r#"{"hidden_size": 64}"#).unwrap();
        let msg = QwenConfig::from_file(&flat).unwrap_err().to_string();
        assert!(msg.contains("vocab_size"), "{msg}");
    }
}

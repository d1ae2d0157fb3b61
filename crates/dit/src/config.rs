//! DiT configuration: presets of the released networks, free sizes for our own, and diffusers' `config.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::action::ActionConfig;
use crate::error::{DitError, Result};

/// The shape of a Cosmos-Predict2.5 `MiniTrainDIT` (as wrapped by `MinimalV1LVGDiT`, which adds the
/// condition-mask input channel). Field names follow the official constructor arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DitConfig {
    /// Latent channels of the noisy video (16 for the Wan2.1 VAE); the condition-mask and padding-mask channels
    /// are added on top.
    pub in_channels: usize,
    /// Channels of the predicted velocity.
    pub out_channels: usize,
    /// Model width D.
    pub model_channels: usize,
    pub num_blocks: usize,
    pub num_heads: usize,
    pub mlp_ratio: f64,
    pub patch_spatial: usize,
    pub patch_temporal: usize,
    /// Rank of the adaLN-LoRA modulation (the released networks all use it).
    pub adaln_lora_dim: usize,
    /// RoPE NTK extrapolation ratios for (t, h, w).
    pub rope_extrapolation: [f64; 3],
    /// Largest latent size (frames, height, width) the RoPE table covers.
    pub max_size: [usize; 3],
    /// Width of the text context the cross-attention keys and values read (after the projection, if any).
    pub crossattn_emb_channels: usize,
    /// Width of the raw text embedding when the network projects it (`crossattn_proj`: Linear + GELU); `None`
    /// when the context is fed directly.
    pub crossattn_proj_in_channels: Option<usize>,
    /// Whether a padding-mask channel is concatenated to the input.
    pub concat_padding_mask: bool,
    /// The action embedders of an action-conditioned network (`robot/action-cond`); `None` for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionConfig>,
}

impl DitConfig {
    /// Cosmos-Predict2.5-2B: net preset `cosmos_v1_2B` (`cosmos_predict2/_src/predict2/configs/video2world/defaults/
    /// net.py`) with the overrides of `experiment/reason_embeddings/model_2B_reason_1p1_rectified_flow.py`.
    pub fn cosmos_predict2_5_2b() -> Self {
        Self {
            in_channels: 16,
            out_channels: 16,
            model_channels: 2048,
            num_blocks: 28,
            num_heads: 16,
            mlp_ratio: 4.0,
            patch_spatial: 2,
            patch_temporal: 1,
            adaln_lora_dim: 256,
            rope_extrapolation: [1.0, 3.0, 3.0],
            max_size: [128, 240, 240],
            crossattn_emb_channels: 1024,
            crossattn_proj_in_channels: Some(100_352),
            concat_padding_mask: true,
            action: None,
        }
    }

    /// The released action-conditioned 2B (`robot/action-cond`): net `cosmos_v1_2B_action_chunk_conditioned`
    /// (`cosmos_predict2/_src/predict2/action/configs/action_conditioned/net.py`) with `action_dim=7,
    /// temporal_compression_ratio=4` from experiment `..._bridge_13frame_256x320`
    /// (`.../experiment/exp_2B_action_conditioned_rectify_flow.py`); the embedders' hidden width defaults to 4 D
    /// (`action_conditioned_minimal_v1_lvg_dit.py`).
    pub fn cosmos_predict2_5_2b_action_cond() -> Self {
        let base = Self::cosmos_predict2_5_2b();
        Self {
            action: Some(ActionConfig {
                action_dim: 7,
                temporal_compression_ratio: 4,
                hidden_dim_in_action_embedder: 4 * base.model_channels,
            }),
            ..base
        }
    }

    /// Cosmos-Predict2.5-14B: net preset `cosmos_v1_14B` with `model_14b_reason_1p1_rectified_flow.py`.
    pub fn cosmos_predict2_5_14b() -> Self {
        Self {
            model_channels: 5120,
            num_blocks: 36,
            num_heads: 40,
            ..Self::cosmos_predict2_5_2b()
        }
    }

    pub fn head_dim(&self) -> usize {
        self.model_channels / self.num_heads
    }

    pub fn mlp_hidden(&self) -> usize {
        (self.model_channels as f64 * self.mlp_ratio) as usize
    }

    /// Input features of the patch embedding: latent + condition mask (+ padding mask), times the patch volume.
    pub fn patch_in_features(&self) -> usize {
        let channels = self.in_channels + 1 + usize::from(self.concat_padding_mask);
        channels * self.patch_temporal * self.patch_spatial * self.patch_spatial
    }

    pub fn patch_out_features(&self) -> usize {
        self.out_channels * self.patch_temporal * self.patch_spatial * self.patch_spatial
    }

    /// Width of the text embedding the network takes as input.
    pub fn text_input_channels(&self) -> usize {
        self.crossattn_proj_in_channels
            .unwrap_or(self.crossattn_emb_channels)
    }

    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(DitError::Config(msg));
        let positive = [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("model_channels", self.model_channels),
            ("num_blocks", self.num_blocks),
            ("num_heads", self.num_heads),
            ("patch_spatial", self.patch_spatial),
            ("patch_temporal", self.patch_temporal),
            ("adaln_lora_dim", self.adaln_lora_dim),
            ("crossattn_emb_channels", self.crossattn_emb_channels),
        ];
        for (name, value) in positive {
            if value == 0 {
                return fail(format!("{name} must be positive"));
            }
        }
        if !self.model_channels.is_multiple_of(self.num_heads) {
            return fail(format!(
                "model_channels {} is not divisible by num_heads {}",
                self.model_channels, self.num_heads
            ));
        }
        let head_dim = self.head_dim();
        // RoPE splits head_dim into h, w (head_dim // 6 * 2 each) and t (the rest), each with at least 2 pairs
        // (the NTK factor divides by dim - 2).
        if !head_dim.is_multiple_of(2)
            || head_dim / 6 * 2 < 4
            || head_dim - 2 * (head_dim / 6 * 2) < 4
        {
            return fail(format!(
                "head_dim {head_dim} must be even and at least 12 for the 3D RoPE split"
            ));
        }
        if !(self.mlp_ratio > 0.0 && self.mlp_ratio.is_finite()) || self.mlp_hidden() == 0 {
            return fail(format!("mlp_ratio {} must be positive", self.mlp_ratio));
        }
        if self
            .rope_extrapolation
            .iter()
            .any(|r| !(*r > 0.0 && r.is_finite()))
        {
            return fail(format!(
                "rope_extrapolation {:?} must be positive",
                self.rope_extrapolation
            ));
        }
        if self.max_size.contains(&0) {
            return fail(format!("max_size {:?} must be positive", self.max_size));
        }
        if self.crossattn_proj_in_channels == Some(0) {
            return fail("crossattn_proj_in_channels must be positive".into());
        }
        if let Some(action) = &self.action {
            action.validate().or_else(fail)?;
            if self.patch_temporal != 1 {
                return fail(format!(
                    "an action-conditioned network embeds actions per latent frame: patch_temporal must be 1, \
                     not {}",
                    self.patch_temporal
                ));
            }
        }
        Ok(())
    }

    /// `2b` or `14b` (the released presets), else the diffusers `config.json` at that path.
    pub fn preset_or_file(spec: &str) -> Result<Self> {
        match spec {
            "2b" => Ok(Self::cosmos_predict2_5_2b()),
            "14b" => Ok(Self::cosmos_predict2_5_14b()),
            path => Self::from_diffusers_file(Path::new(path)),
        }
    }

    /// Reads a diffusers `CosmosTransformer3DModel` `config.json`.
    pub fn from_diffusers_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DitError::ConfigFile {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        Self::from_diffusers_json(&text).map_err(|e| DitError::ConfigFile {
            path: path.to_owned(),
            detail: e.to_string(),
        })
    }

    /// Parses a diffusers `CosmosTransformer3DModel` config ([`DiffusersDitConfig`]). diffusers counts the
    /// condition-mask channel in `in_channels`; `patch_size`, `max_size` and `rope_scale` are (t, h, w).
    pub fn from_diffusers_json(text: &str) -> Result<Self> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let v: DiffusersDitConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                DitError::Config(format!("bad JSON: {inner}"))
            } else {
                DitError::Config(format!("`{path}`: {inner}"))
            }
        })?;
        v.into_config()
    }

    /// The diffusers `config.json` of this network (what `from_diffusers_json` reads back).
    pub fn to_diffusers_json(&self) -> String {
        let mut v = json!({
            "_class_name": "CosmosTransformer3DModel",
            "in_channels": self.in_channels + 1,
            "out_channels": self.out_channels,
            "num_attention_heads": self.num_heads,
            "attention_head_dim": self.head_dim(),
            "num_layers": self.num_blocks,
            "mlp_ratio": self.mlp_ratio,
            "text_embed_dim": self.crossattn_emb_channels,
            "adaln_lora_dim": self.adaln_lora_dim,
            "max_size": self.max_size,
            "patch_size": [self.patch_temporal, self.patch_spatial, self.patch_spatial],
            "rope_scale": self.rope_extrapolation,
            "concat_padding_mask": self.concat_padding_mask,
            "extra_pos_embed_type": null,
            "use_crossattn_projection": self.crossattn_proj_in_channels.is_some(),
            "crossattn_proj_in_channels": self.crossattn_proj_in_channels,
            "encoder_hidden_states_channels": self.crossattn_emb_channels,
        });
        if let (Some(a), Some(map)) = (&self.action, v.as_object_mut()) {
            map.insert("action_dim".into(), json!(a.action_dim));
            map.insert(
                "temporal_compression_ratio".into(),
                json!(a.temporal_compression_ratio),
            );
            map.insert(
                "hidden_dim_in_action_embedder".into(),
                json!(a.hidden_dim_in_action_embedder),
            );
        }
        serde_json::to_string_pretty(&v).expect("a JSON value always serialises") + "\n"
    }

    /// Official parameter names (without `net.`) and shapes, in module order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let d = self.model_channels;
        let r = self.adaln_lora_dim;
        let hd = self.head_dim();
        let mut p: Vec<(String, Vec<usize>)> = vec![
            (
                "x_embedder.proj.1.weight".into(),
                vec![d, self.patch_in_features()],
            ),
            ("t_embedder.1.linear_1.weight".into(), vec![d, d]),
            ("t_embedder.1.linear_2.weight".into(), vec![3 * d, d]),
            ("t_embedding_norm.weight".into(), vec![d]),
        ];
        if let Some(n) = self.crossattn_proj_in_channels {
            p.push((
                "crossattn_proj.0.weight".into(),
                vec![self.crossattn_emb_channels, n],
            ));
            p.push((
                "crossattn_proj.0.bias".into(),
                vec![self.crossattn_emb_channels],
            ));
        }
        for i in 0..self.num_blocks {
            let b = format!("blocks.{i}");
            for (attn, kv_in) in [
                ("self_attn", d),
                ("cross_attn", self.crossattn_emb_channels),
            ] {
                p.push((format!("{b}.{attn}.q_proj.weight"), vec![d, d]));
                p.push((format!("{b}.{attn}.q_norm.weight"), vec![hd]));
                p.push((format!("{b}.{attn}.k_proj.weight"), vec![d, kv_in]));
                p.push((format!("{b}.{attn}.k_norm.weight"), vec![hd]));
                p.push((format!("{b}.{attn}.v_proj.weight"), vec![d, kv_in]));
                p.push((format!("{b}.{attn}.output_proj.weight"), vec![d, d]));
            }
            p.push((format!("{b}.mlp.layer1.weight"), vec![self.mlp_hidden(), d]));
            p.push((format!("{b}.mlp.layer2.weight"), vec![d, self.mlp_hidden()]));
            for m in ["self_attn", "cross_attn", "mlp"] {
                p.push((format!("{b}.adaln_modulation_{m}.1.weight"), vec![r, d]));
                p.push((format!("{b}.adaln_modulation_{m}.2.weight"), vec![3 * d, r]));
            }
        }
        p.push(("final_layer.adaln_modulation.1.weight".into(), vec![r, d]));
        p.push((
            "final_layer.adaln_modulation.2.weight".into(),
            vec![2 * d, r],
        ));
        p.push((
            "final_layer.linear.weight".into(),
            vec![self.patch_out_features(), d],
        ));
        if let Some(action) = &self.action {
            p.extend(action.parameter_shapes(d));
        }
        p
    }

    pub fn parameter_count(&self) -> u64 {
        self.parameter_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>() as u64)
            .sum()
    }
}

/// A diffusers `CosmosTransformer3DModel` `config.json`, key for key (keys diffusers adds that do not change the
/// network, like `_diffusers_version`, are ignored).
#[derive(Debug, Deserialize)]
pub struct DiffusersDitConfig {
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    /// Latent channels plus the condition mask.
    pub in_channels: usize,
    pub out_channels: usize,
    pub num_attention_heads: usize,
    pub attention_head_dim: usize,
    pub num_layers: usize,
    pub mlp_ratio: f64,
    pub text_embed_dim: usize,
    pub adaln_lora_dim: usize,
    /// (t, h, w)
    pub max_size: [usize; 3],
    /// (t, h, w)
    pub patch_size: [usize; 3],
    /// (t, h, w)
    pub rope_scale: [f64; 3],
    #[serde(default = "default_true")]
    pub concat_padding_mask: bool,
    /// Not part of Cosmos-Predict2.5: must be absent or null.
    pub extra_pos_embed_type: Option<Value>,
    pub img_context_dim_in: Option<Value>,
    pub controlnet_block_every_n: Option<Value>,
    #[serde(default)]
    pub use_crossattn_projection: bool,
    pub crossattn_proj_in_channels: Option<usize>,
    pub encoder_hidden_states_channels: Option<usize>,
    /// Action-conditioned networks (orrery's extension of the file): the width of one action; its presence makes
    /// the network action-conditioned.
    pub action_dim: Option<usize>,
    /// Actions per latent frame (default 4).
    pub temporal_compression_ratio: Option<usize>,
    /// Hidden width of the action embedders (default 4 x model width).
    pub hidden_dim_in_action_embedder: Option<usize>,
}

fn default_true() -> bool {
    true
}

impl DiffusersDitConfig {
    /// The network this file describes, checked.
    pub fn into_config(self) -> Result<DitConfig> {
        if let Some(class) = self.class_name.as_deref() {
            if class != "CosmosTransformer3DModel" {
                return Err(DitError::Config(format!(
                    "`_class_name` is {class}, expected CosmosTransformer3DModel"
                )));
            }
        }
        for (name, value) in [
            ("extra_pos_embed_type", &self.extra_pos_embed_type),
            ("img_context_dim_in", &self.img_context_dim_in),
            ("controlnet_block_every_n", &self.controlnet_block_every_n),
        ] {
            if let Some(x) = value.as_ref().filter(|x| !x.is_null()) {
                return Err(DitError::Config(format!(
                    "`{name}` = {x} is not part of Cosmos-Predict2.5 (expected null)"
                )));
            }
        }
        let patch = self.patch_size;
        if patch[1] != patch[2] {
            return Err(DitError::Config(format!(
                "patch_size {patch:?}: height and width patches must be equal"
            )));
        }
        if self.in_channels < 2 {
            return Err(DitError::Config(format!(
                "in_channels {} must count the latent channels plus the condition mask",
                self.in_channels
            )));
        }
        let text_dim = self.text_embed_dim;
        let crossattn_proj_in_channels = if self.use_crossattn_projection {
            let projected = self.encoder_hidden_states_channels.unwrap_or(text_dim);
            if projected != text_dim {
                return Err(DitError::Config(format!(
                    "encoder_hidden_states_channels {projected} differs from text_embed_dim {text_dim}"
                )));
            }
            Some(self.crossattn_proj_in_channels.ok_or_else(|| {
                DitError::Config(
                    "missing field `crossattn_proj_in_channels` (use_crossattn_projection is true)"
                        .into(),
                )
            })?)
        } else {
            None
        };
        let model_channels = self.num_attention_heads * self.attention_head_dim;
        let action = match (
            self.action_dim,
            self.temporal_compression_ratio,
            self.hidden_dim_in_action_embedder,
        ) {
            (Some(action_dim), ratio, hidden) => Some(ActionConfig {
                action_dim,
                temporal_compression_ratio: ratio.unwrap_or(4),
                hidden_dim_in_action_embedder: hidden.unwrap_or(4 * model_channels),
            }),
            (None, None, None) => None,
            (None, _, _) => {
                return Err(DitError::Config(
                    "`temporal_compression_ratio` or `hidden_dim_in_action_embedder` without `action_dim` \
                     (an action-conditioned network needs all three, or at least action_dim)"
                        .into(),
                ))
            }
        };
        let config = DitConfig {
            in_channels: self.in_channels - 1,
            out_channels: self.out_channels,
            model_channels,
            num_blocks: self.num_layers,
            num_heads: self.num_attention_heads,
            mlp_ratio: self.mlp_ratio,
            patch_spatial: patch[1],
            patch_temporal: patch[0],
            adaln_lora_dim: self.adaln_lora_dim,
            rope_extrapolation: self.rope_scale,
            max_size: self.max_size,
            crossattn_emb_channels: text_dim,
            crossattn_proj_in_channels,
            concat_padding_mask: self.concat_padding_mask,
            action,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_have_the_published_sizes() {
        let b2 = DitConfig::cosmos_predict2_5_2b();
        b2.validate().unwrap();
        assert_eq!(b2.head_dim(), 128);
        assert_eq!(b2.patch_in_features(), 72);
        assert_eq!(b2.patch_out_features(), 64);
        // Spec section 1.2: 69.21M per block, about 2.06B in all.
        let per_block: u64 = b2
            .parameter_shapes()
            .iter()
            .filter(|(n, _)| n.starts_with("blocks.0."))
            .map(|(_, s)| s.iter().product::<usize>() as u64)
            .sum();
        assert_eq!((per_block as f64 / 1e4).round(), 6921.0);
        assert_eq!((b2.parameter_count() as f64 / 1e7).round(), 206.0);
        let b14 = DitConfig::cosmos_predict2_5_14b();
        b14.validate().unwrap();
        assert_eq!(b14.head_dim(), 128);
        assert_eq!(b14.mlp_hidden(), 20480);
        assert!((14.0e9..15.0e9).contains(&(b14.parameter_count() as f64)));
    }

    #[test]
    fn diffusers_json_round_trips() {
        for c in [
            DitConfig::cosmos_predict2_5_2b(),
            DitConfig::cosmos_predict2_5_14b(),
            DitConfig::cosmos_predict2_5_2b_action_cond(),
        ] {
            assert_eq!(
                DitConfig::from_diffusers_json(&c.to_diffusers_json()).unwrap(),
                c
            );
        }
    }

    #[test]
    fn rejects_bad_configs() {
        let mut c = DitConfig::cosmos_predict2_5_2b();
        c.num_heads = 3;
        assert!(c.validate().unwrap_err().to_string().contains("divisible"));
        let mut c = DitConfig::cosmos_predict2_5_2b();
        c.model_channels = 8 * 16;
        assert!(c.validate().unwrap_err().to_string().contains("head_dim"));
        let learnable = DitConfig::cosmos_predict2_5_2b()
            .to_diffusers_json()
            .replace(
                "\"extra_pos_embed_type\": null",
                "\"extra_pos_embed_type\": \"learnable\"",
            );
        assert!(DitConfig::from_diffusers_json(&learnable)
            .unwrap_err()
            .to_string()
            .contains("extra_pos_embed_type"));
        assert!(DitConfig::from_diffusers_json("{not json").is_err());
        let fractional = DitConfig::cosmos_predict2_5_2b()
            .to_diffusers_json()
            .replace("\"num_layers\": 28", "\"num_layers\": 2.5");
        let err = DitConfig::from_diffusers_json(&fractional)
            .unwrap_err()
            .to_string();
        assert!(err.contains("num_layers"), "{err}");
        assert!(DitConfig::from_diffusers_json("{}")
            .unwrap_err()
            .to_string()
            .contains("missing field"));
        let no_width = DitConfig::cosmos_predict2_5_2b()
            .to_diffusers_json()
            .replace("{", "{\"temporal_compression_ratio\": 4,");
        assert!(DitConfig::from_diffusers_json(&no_width)
            .unwrap_err()
            .to_string()
            .contains("without `action_dim`"));
        let zero = DitConfig::cosmos_predict2_5_2b()
            .to_diffusers_json()
            .replace("{", "{\"action_dim\": 0,");
        assert!(DitConfig::from_diffusers_json(&zero)
            .unwrap_err()
            .to_string()
            .contains("action_dim must be positive"));
    }

    #[test]
    fn the_action_preset_has_the_released_embedder_shapes() {
        let c = DitConfig::cosmos_predict2_5_2b_action_cond();
        c.validate().unwrap();
        let shapes: std::collections::HashMap<_, _> = c.parameter_shapes().into_iter().collect();
        // Spec section 5: fc1 [8192, 28], fc2 [2048 | 6144, 8192].
        assert_eq!(shapes["action_embedder_B_D.fc1.weight"], [8192, 28]);
        assert_eq!(shapes["action_embedder_B_D.fc2.weight"], [2048, 8192]);
        assert_eq!(shapes["action_embedder_B_3D.fc2.weight"], [6144, 8192]);
        assert_eq!(shapes["action_embedder_B_3D.fc2.bias"], [6144]);
        let text = c.to_diffusers_json();
        assert!(text.contains("\"action_dim\": 7"), "{text}");
        let mut released = DitConfig::cosmos_predict2_5_2b();
        released.action = None;
        assert!(!released.to_diffusers_json().contains("action_dim"));
    }
}

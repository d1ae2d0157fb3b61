//! The provenance record written beside every output: what was generated, from what, and how.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `OUT.json` beside `OUT.mp4`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRecord {
    pub prompt: String,
    /// The negative prompt, when guidance used one.
    pub negative_prompt: Option<String>,
    pub mode: String,
    pub model: PathBuf,
    pub frames: usize,
    /// Pixel frames of each chunk (one chunk unless the video is longer than the model's).
    pub chunks: Vec<usize>,
    pub width: usize,
    pub height: usize,
    pub fps: f64,
    pub seed: u64,
    pub noise: String,
    /// "unipc" or "distilled".
    #[serde(default = "unipc")]
    pub sampler: String,
    /// The bundle's folder whose DiT sampled the mode, where it is not `transformer/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformer: Option<String>,
    pub steps: usize,
    /// g of `cond + g (cond - uncond)` (0: the conditional prediction alone).
    pub guidance: f64,
    /// "karras" or the shift.
    pub schedule: serde_json::Value,
    pub cond_timestep: Option<f64>,
    pub dtype: String,
    pub conditional_frames: usize,
    pub keep_observed: Option<serde_json::Value>,
    pub truncate: bool,
    /// LoRA adapters fused into the DiT: (file, scale).
    pub loras: Vec<(PathBuf, f64)>,
    /// "Q8_0" where a Reason1 text encoder ran with 8-bit weights (its embeddings differ slightly from the full
    /// encoder's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_encoder_weights: Option<String>,
    /// Latent pixels of the VAE's decode tiles, where it decoded in tiles (seams blended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vae_tile: Option<usize>,
    /// An action rollout's actions (`orrery generate --actions`); each chunk is Image2World on the previous
    /// chunk's last frame, seeded `seed` + its first action's index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutRecord>,
}

/// What drove an action rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRecord {
    pub actions_file: PathBuf,
    /// Number of actions (output frames after the start frame).
    pub actions: usize,
    /// Actions per chunk.
    pub chunk_actions: usize,
}

/// Records written before the distilled sampler existed sampled with UniPC.
fn unipc() -> String {
    crate::sample::SamplerKind::UniPc.name().to_owned()
}

//! Action conditioning of the released `robot/action-cond` network (`ActionChunkConditionedMinimalV1LVGDiT`):
//! robot actions, grouped per latent frame, are embedded by two MLPs whose outputs are added to the timestep
//! embedding (before its RMSNorm) and to the adaLN-LoRA term of every modulation, one row per latent frame.
//! The first latent frame gets no action, and every conditioning frame gets zero.

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;
use orrery_nn::layers::Linear;
use orrery_nn::ops;
use serde::{Deserialize, Serialize};

/// The action embedders' shape (the official constructor arguments of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionConfig {
    /// Width A of one action (7 for the released model: relative xyz, relative roll-pitch-yaw, gripper).
    pub action_dim: usize,
    /// Actions per latent frame (4: the VAE's temporal compression); they are concatenated in time order.
    pub temporal_compression_ratio: usize,
    /// Hidden width of both embedders (official default: 4 x model width).
    pub hidden_dim_in_action_embedder: usize,
}

impl ActionConfig {
    /// Input width of the embedders: one latent frame's actions, concatenated.
    pub fn group_features(&self) -> usize {
        self.action_dim * self.temporal_compression_ratio
    }

    /// Actions the network takes for `latent_frames` latent frames: `ratio x (T - 1)` (the first frame has none).
    pub fn actions_for(&self, latent_frames: usize) -> usize {
        self.temporal_compression_ratio * latent_frames.saturating_sub(1)
    }

    /// Official parameter names (without `net.`) and shapes, for a network of width `dim`.
    pub fn parameter_shapes(&self, dim: usize) -> Vec<(String, Vec<usize>)> {
        let (i, h) = (self.group_features(), self.hidden_dim_in_action_embedder);
        let mut p = Vec::new();
        for (name, out) in [
            ("action_embedder_B_D", dim),
            ("action_embedder_B_3D", 3 * dim),
        ] {
            p.push((format!("{name}.fc1.weight"), vec![h, i]));
            p.push((format!("{name}.fc1.bias"), vec![h]));
            p.push((format!("{name}.fc2.weight"), vec![out, h]));
            p.push((format!("{name}.fc2.bias"), vec![out]));
        }
        p
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        for (name, value) in [
            ("action_dim", self.action_dim),
            (
                "temporal_compression_ratio",
                self.temporal_compression_ratio,
            ),
            (
                "hidden_dim_in_action_embedder",
                self.hidden_dim_in_action_embedder,
            ),
        ] {
            if value == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        Ok(())
    }
}

/// `fc1 -> GELU (tanh approximation) -> fc2`, both with bias.
#[derive(Debug, Clone)]
pub struct ActionMlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl ActionMlp {
    pub fn new(vb: VarBuilder, in_dim: usize, hidden: usize, out_dim: usize) -> Result<Self> {
        Ok(Self {
            fc1: Linear::new(vb.pp("fc1"), in_dim, hidden, true)?,
            fc2: Linear::new(vb.pp("fc2"), hidden, out_dim, true)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&ops::gelu_tanh(&self.fc1.forward(x)?)?)
    }
}

/// What the actions add to the timestep embedding, per latent frame.
#[derive(Debug, Clone)]
pub struct ActionEmbedding {
    /// Added to the sinusoidal timestep embedding before its RMSNorm: (B, T, D) float32.
    pub t_emb: Tensor,
    /// Added to the adaLN-LoRA term: (B, T, 3D) float32.
    pub adaln_lora: Tensor,
}

/// `action_embedder_B_D` and `action_embedder_B_3D`.
#[derive(Debug, Clone)]
pub struct ActionEmbedder {
    pub action_embedder_b_d: ActionMlp,
    pub action_embedder_b_3d: ActionMlp,
    pub config: ActionConfig,
}

impl ActionEmbedder {
    /// `vb` is the network's root (the embedders run in its type).
    pub fn new(vb: VarBuilder, config: ActionConfig, dim: usize) -> Result<Self> {
        let (i, h) = (
            config.group_features(),
            config.hidden_dim_in_action_embedder,
        );
        Ok(Self {
            action_embedder_b_d: ActionMlp::new(vb.pp("action_embedder_B_D"), i, h, dim)?,
            action_embedder_b_3d: ActionMlp::new(vb.pp("action_embedder_B_3D"), i, h, 3 * dim)?,
            config,
        })
    }

    /// `action` (B, ratio (T - 1), A) and `condition_mask` (B, 1, T, H, W) -> the embeddings of the T latent
    /// frames: row 0 is zero, row k (k >= 1) embeds actions `ratio (k - 1) .. ratio k` concatenated in time order,
    /// and every row whose frame is conditioning (mask 1 at its first pixel) is multiplied by zero. The caller
    /// checks the shapes.
    pub fn forward(&self, action: &Tensor, condition_mask: &Tensor) -> Result<ActionEmbedding> {
        let (b, n, _) = action.dims3()?;
        let groups = n / self.config.temporal_compression_ratio;
        let dtype = self.action_embedder_b_d.fc1.weight.dtype();
        let grouped = action
            .to_dtype(dtype)?
            .reshape((b, groups, self.config.group_features()))?; // (B, T - 1, ratio A)
                                                                  // (B, T) float32: 1 - mask at each frame's first pixel.
        let keep = (1.0
            - condition_mask
                .to_dtype(DType::F32)?
                .narrow(3, 0, 1)?
                .narrow(4, 0, 1)?
                .flatten_from(1)?)?
        .unsqueeze(2)?;
        let embed = |mlp: &ActionMlp| -> Result<Tensor> {
            let e = mlp.forward(&grouped)?.to_dtype(DType::F32)?; // (B, T - 1, width)
            let zero = Tensor::zeros((b, 1, e.dim(2)?), DType::F32, e.device())?;
            Tensor::cat(&[&zero, &e], 1)?.broadcast_mul(&keep)
        };
        Ok(ActionEmbedding {
            t_emb: embed(&self.action_embedder_b_d)?,
            adaln_lora: embed(&self.action_embedder_b_3d)?,
        })
    }
}

//! The configuration of an RL post-training run (`orrery train rl --config FILE`).

use std::path::{Path, PathBuf};

use orrery_flow::churn::ChurnSchedule;
use orrery_pipeline::rollout::RolloutSampler;
use orrery_pipeline::Mode;
use serde::{Deserialize, Serialize};

use crate::dit::config::LoraTraining;
use crate::error::Result;
use crate::rl::grpo::LogRatio;
use crate::rl::rewards::{RewardKind, RewardTerm};
use crate::trainer::config::{check, check_probabilities, read_config, resolve, RunConfig};
use crate::trainer::data::DataConfig;
use crate::trainer::optim::OptimConfig;

/// Which rollout sampler the policy is trained through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerChoice {
    /// The released RL sampler (EDM churn, "2ab").
    #[default]
    Churn,
    /// Flow-GRPO's SDE in rectified-flow time.
    FlowGrpo,
    /// The distilled sampler with fresh noise at each step (2 to 4 steps), for post-training a distilled student.
    Distilled,
}

/// The sampling the post-trained bundle is exported with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExportSampling {
    /// The rollout sampler the policy was trained through, at the run's steps and guidance (the released practice).
    #[default]
    Rollout,
    /// The source bundle's own `orrery_sampling.json` (per-mode steps, guidance and sampler kept).
    Bundle,
}

/// The GRPO recipe (posttraining spec section 3.1); every key left out takes the released run's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grpo {
    pub sampler: SamplerChoice,
    /// Sampler steps (`sample_steps`, 20).
    pub sample_steps: usize,
    /// Churn of the released sampler (`s_churn` 1, `s_noise` 1).
    pub s_churn: f64,
    pub s_noise: f64,
    /// Flow-GRPO: noise level a (0.7) and the RF schedule's shift (3).
    pub noise_level: f64,
    pub shift: f64,
    /// Rollouts per condition (`num_rollout`, 8): the group the advantages are normalised over.
    pub rollouts: usize,
    /// Train on the trajectory's steps 0, k, 2k, ... (`train_on` = every 2nd step released).
    pub train_every: usize,
    /// PPO clip epsilon of the ratio (`clip_ratio`, 1e-4).
    pub clip_ratio: f64,
    /// Rewards and advantages are clipped to +- these (5, 5).
    pub reward_clip: f64,
    pub advantage_clip: f64,
    /// `A <- -exp(-A)` (`exp_reward`, off).
    pub exp_reward: bool,
    /// Weight of the diffusion loss on the real clip at the rollout's sigma and initial noise (DDRL,
    /// `data_beta` 0.01).
    pub data_beta: f64,
    /// The loss is multiplied by this (`loss_scale`, 10) and divided by the trained steps.
    pub loss_scale: f64,
    /// Guidance in the rollouts (0 released: no guidance).
    pub guidance: f64,
    /// Probabilities of 0, 1, 2, ... conditioning latent frames per condition (released: 0 or 1 frame,
    /// `min/max_num_conditional_frames` 0 and 1).
    pub cond_probs: Vec<f64>,
    pub log_ratio: LogRatio,
    /// What the exported bundle samples with.
    pub export_sampling: ExportSampling,
}

impl Default for Grpo {
    fn default() -> Self {
        Self {
            sampler: SamplerChoice::Churn,
            sample_steps: 20,
            s_churn: 1.0,
            s_noise: 1.0,
            noise_level: orrery_flow::flow_grpo::NOISE_LEVEL,
            shift: 3.0,
            rollouts: 8,
            train_every: 2,
            clip_ratio: 1e-4,
            reward_clip: 5.0,
            advantage_clip: 5.0,
            exp_reward: false,
            data_beta: 0.01,
            loss_scale: 10.0,
            guidance: 0.0,
            cond_probs: vec![0.5, 0.5],
            log_ratio: LogRatio::AsReleased,
            export_sampling: ExportSampling::Rollout,
        }
    }
}

impl Grpo {
    pub fn sampler(&self) -> RolloutSampler {
        match self.sampler {
            SamplerChoice::Churn => RolloutSampler::Churn(ChurnSchedule {
                s_churn: self.s_churn,
                s_noise: self.s_noise,
                ..ChurnSchedule::released(self.sample_steps)
            }),
            SamplerChoice::FlowGrpo => RolloutSampler::FlowGrpo {
                steps: self.sample_steps,
                shift: self.shift,
                noise_level: self.noise_level,
            },
            SamplerChoice::Distilled => RolloutSampler::Distilled {
                steps: self.sample_steps,
            },
        }
    }

    /// Whether a run draws conditions of `mode` (no conditioning frame: Text2World, one: Image2World, more:
    /// Video2World) with some probability.
    pub fn rolls_out(&self, mode: Mode) -> bool {
        let drawn = |frames: usize| self.cond_probs.get(frames).is_some_and(|p| *p > 0.0);
        match mode {
            Mode::Text2World => drawn(0),
            Mode::Image2World => drawn(1),
            Mode::Video2World => (2..self.cond_probs.len()).any(drawn),
        }
    }

    /// Whether trajectory step `i` is trained on.
    pub fn trains_on(&self, i: usize) -> bool {
        i.is_multiple_of(self.train_every) && i < self.sampler().stochastic_steps()
    }

    /// Trained steps per rollout.
    pub fn trained_steps(&self) -> usize {
        (0..self.sampler().stochastic_steps())
            .filter(|&i| self.trains_on(i))
            .count()
    }
}

/// An RL run: the bundle to post-train (orrery's own, with its word encoder and VAE), the physics worlds whose
/// conditions and truth drive the rewards, the rewards and the optimiser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlConfig {
    pub run: RunConfig,
    /// The model bundle to post-train (relative paths: to the config file).
    pub init_from: PathBuf,
    /// Physics worlds (`run.batch_size` conditions per step, each rolled out `grpo.rollouts` times).
    pub data: DataConfig,
    /// Released: lr 1e-5, weight decay 1e-4, betas 0.9/0.99, clip 1, 50 warm-up steps, then constant.
    pub optim: OptimConfig,
    #[serde(default)]
    pub grpo: Grpo,
    pub rewards: Vec<RewardTerm>,
    /// `command VIDEO PROMPT`, printing a score, for the `external` reward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_command: Option<String>,
    /// Train LoRA adapters instead of every weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraTraining>,
}

impl RlConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.run.validate()?;
        self.data.validate()?;
        self.optim.validate().map_err(|e| format!("optim: {e}"))?;
        check(self.data.videos.is_none(), || {
            "data.videos: RL rewards are judged against the simulator, so the data must be physics worlds".into()
        })?;
        let g = &self.grpo;
        self.grpo
            .sampler()
            .check()
            .map_err(|e| format!("grpo: {e}"))?;
        check(g.rollouts >= 2, || {
            format!(
                "grpo.rollouts {}: a group needs at least 2 rollouts",
                g.rollouts
            )
        })?;
        check(g.train_every >= 1, || {
            "grpo.train_every must be at least 1".into()
        })?;
        check(g.sample_steps >= 2, || {
            format!(
                "grpo.sample_steps {}: expected at least 2 (the last step is deterministic, so it cannot be \
                 trained on)",
                g.sample_steps
            )
        })?;
        for (name, v) in [
            ("clip_ratio", g.clip_ratio),
            ("reward_clip", g.reward_clip),
            ("advantage_clip", g.advantage_clip),
            ("loss_scale", g.loss_scale),
        ] {
            check(v > 0.0 && v.is_finite(), || {
                format!("grpo.{name} {v}: expected a positive number")
            })?;
        }
        check(g.data_beta >= 0.0 && g.data_beta.is_finite(), || {
            "grpo.data_beta must be >= 0".into()
        })?;
        check(g.guidance.is_finite(), || {
            "grpo.guidance must be finite".into()
        })?;
        check_probabilities("grpo.cond_probs", &g.cond_probs)?;
        check(!self.rewards.is_empty(), || {
            "rewards: name at least one reward".into()
        })?;
        for r in &self.rewards {
            check(r.weight > 0.0 && r.weight.is_finite(), || {
                format!(
                    "reward {}: weight {} must be positive",
                    r.kind.name(),
                    r.weight
                )
            })?;
        }
        let external = self.rewards.iter().any(|r| r.kind == RewardKind::External);
        check(!external || self.reward_command.is_some(), || {
            "the external reward needs reward_command".into()
        })?;
        if let Some(lora) = &self.lora {
            check(lora.rank >= 1 && lora.alpha.is_finite(), || {
                format!(
                    "lora: rank {} and alpha {} must be positive",
                    lora.rank, lora.alpha
                )
            })?;
        }
        Ok(())
    }

    pub fn read(path: &Path) -> Result<Self> {
        read_config(path, |c: &mut Self, base| {
            c.run.out_dir = resolve(base, &c.run.out_dir);
            c.init_from = resolve(base, &c.init_from);
            c.validate()
        })
    }
}

//! The configuration of a DMD2 distillation run (`orrery train distill --config FILE`).

use std::path::{Path, PathBuf};

use orrery_pipeline::distilled::DISTILLED_STEPS;
use orrery_pipeline::Mode;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::trainer::config::{check, check_probabilities, read_config, resolve, RunConfig};
use crate::trainer::data::DataConfig;
use crate::trainer::optim::OptimConfig;

/// The DMD2 recipe (posttraining spec section 2.1); every key left out takes the released run's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dmd2 {
    /// Guidance g of the teacher's target `cond + g (cond - uncond)` (`teacher_guidance`, 3 in the release).
    pub teacher_guidance: f64,
    /// Every this many iterations the student updates; the critic updates on the others (5: 1 student : 4
    /// critic).
    pub student_update_freq: usize,
    /// Shift of the critic's RF time `shift u / (1 + (shift - 1) u)` (`timestep_shift`, 5).
    pub timestep_shift: f64,
    /// Probabilities of 0, 1, 2, ... conditioning latent frames per sample (`conditional_frames_probs`:
    /// Text2World 0.5, Image2World 0.25, Video2World 2 frames 0.25).
    pub cond_probs: Vec<f64>,
    /// Student sample steps the backward simulation draws from (1 to this many, at most 4).
    pub student_steps: usize,
    /// Keep the student's and critic's text projection frozen (`disable_proj_grad`).
    pub freeze_text_projection: bool,
    /// Steps of the distilled sampler the exported student takes in each mode.
    pub export_steps: ExportSteps,
    /// Weight of a regression that keeps the student's one-step estimate on conditioned samples (Image2World,
    /// Video2World) at the teacher's own one-step estimate from the same noise, added to the DMD loss (0: the
    /// released recipe, which has none). The teacher's one-step estimate is its conditional mean: this trades the
    /// student's sharper but less accurate conditioned futures for the teacher's.
    pub regression_weight: f64,
    /// Modes ("text2world", "image2world", "video2world") the exported bundle samples with the teacher's DiT
    /// (copied into `teacher_transformer/`) and the teacher's own sampling instead of the student's. A mode the
    /// teacher samples in one step gains no speed from distillation, so the student there can only lose
    /// accuracy. Empty in the released recipe.
    pub teacher_modes: Vec<String>,
}

impl Dmd2 {
    /// Whether the exported bundle samples `mode` with the teacher.
    pub fn teacher_samples(&self, mode: Mode) -> bool {
        self.teacher_modes.iter().any(|m| m == mode.name())
    }
}

/// Per-mode steps of the exported student's `orrery_sampling.json` (1 to 4 each; the released model takes 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportSteps {
    pub text2world: usize,
    pub image2world: usize,
    pub video2world: usize,
}

impl Default for ExportSteps {
    fn default() -> Self {
        Self {
            text2world: DISTILLED_STEPS,
            image2world: DISTILLED_STEPS,
            video2world: DISTILLED_STEPS,
        }
    }
}

impl ExportSteps {
    /// The steps `mode` takes.
    pub fn of(&self, mode: Mode) -> usize {
        match mode {
            Mode::Text2World => self.text2world,
            Mode::Image2World => self.image2world,
            Mode::Video2World => self.video2world,
        }
    }
}

impl Default for Dmd2 {
    fn default() -> Self {
        Self {
            teacher_guidance: 3.0,
            student_update_freq: 5,
            timestep_shift: 5.0,
            cond_probs: vec![0.5, 0.25, 0.25],
            student_steps: 4,
            freeze_text_projection: true,
            export_steps: ExportSteps::default(),
            regression_weight: 0.0,
            teacher_modes: Vec::new(),
        }
    }
}

/// A distillation run: the teacher bundle (orrery's own, with its word encoder and VAE), the clips whose
/// captions and conditioning frames drive it, and the two optimisers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    pub run: RunConfig,
    /// The model bundle to distil; student and critic start as its DiT (relative paths: to the config file).
    pub teacher: PathBuf,
    pub data: DataConfig,
    /// The student's AdamW (released: lr 1e-6, weight decay 0.01, betas 0.9/0.999, clip 1).
    pub student_optim: OptimConfig,
    /// The critic's (fake score's) AdamW (released: lr 2e-7).
    pub critic_optim: OptimConfig,
    #[serde(default)]
    pub dmd: Dmd2,
}

impl DistillConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.run.validate()?;
        self.data.validate()?;
        self.student_optim
            .validate()
            .map_err(|e| format!("student_optim: {e}"))?;
        self.critic_optim
            .validate()
            .map_err(|e| format!("critic_optim: {e}"))?;
        let d = &self.dmd;
        check(d.teacher_guidance.is_finite(), || {
            "dmd.teacher_guidance must be a finite number".into()
        })?;
        check(
            d.regression_weight >= 0.0 && d.regression_weight.is_finite(),
            || {
                format!(
                    "dmd.regression_weight {}: expected a finite number >= 0",
                    d.regression_weight
                )
            },
        )?;
        check(d.student_update_freq >= 2, || {
            format!(
                "dmd.student_update_freq {}: expected at least 2 (the critic needs steps too)",
                d.student_update_freq
            )
        })?;
        check(
            d.timestep_shift > 0.0 && d.timestep_shift.is_finite(),
            || "dmd.timestep_shift must be positive".into(),
        )?;
        check((1..=4).contains(&d.student_steps), || {
            format!("dmd.student_steps {}: expected 1 to 4", d.student_steps)
        })?;
        check_probabilities("dmd.cond_probs", &d.cond_probs)?;
        for mode in Mode::ALL {
            let steps = d.export_steps.of(mode);
            check((1..=DISTILLED_STEPS).contains(&steps), || {
                format!(
                    "dmd.export_steps.{} {steps}: expected 1 to {DISTILLED_STEPS}",
                    mode.name()
                )
            })?;
        }
        for name in &d.teacher_modes {
            check(Mode::ALL.iter().any(|m| m.name() == name), || {
                format!(
                    "dmd.teacher_modes: {name:?}, expected text2world, image2world or video2world"
                )
            })?;
        }
        check(Mode::ALL.iter().any(|&m| !d.teacher_samples(m)), || {
            "dmd.teacher_modes names every mode: the exported bundle would not use the student"
                .into()
        })?;
        check(self.run.steps >= d.student_update_freq, || {
            format!(
                "run.steps {} is shorter than one student/critic cycle ({})",
                self.run.steps, d.student_update_freq
            )
        })
    }

    /// Student updates in `steps` iterations (iterations 0, f, 2f, ...).
    pub fn student_updates(&self, steps: usize) -> usize {
        steps.div_ceil(self.dmd.student_update_freq)
    }

    pub fn read(path: &Path) -> Result<Self> {
        read_config(path, |c: &mut Self, base| {
            c.run.out_dir = resolve(base, &c.run.out_dir);
            c.teacher = resolve(base, &c.teacher);
            c.data.resolve_paths(base);
            c.validate()
        })
    }
}

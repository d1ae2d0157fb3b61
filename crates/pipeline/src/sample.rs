//! The sampling loop of the official Video2World model (`generate_samples_from_batch` with
//! `Video2WorldModelRectifiedFlow.denoise`): NumPy-seeded noise, the official UniPC over a shift or Karras
//! schedule, frame-replacement conditioning in both guidance branches, `cond + g (cond - uncond)`.

use candle_core::{Device, Tensor};
use orrery_dit::{CosmosDit, DitInput};
use orrery_flow::churn::ChurnSchedule;
use orrery_flow::noise::{gaussian, normal_from, FastRng, NoiseKind};
use orrery_flow::unipc::UniPc;
use orrery_flow::Schedule;

use crate::conditioning::{
    condition_mask, frame_timesteps, guide, replace_frames, replace_velocity, Mode,
};
use crate::distilled::{sample_distilled, TrigCondition, DISTILLED_STEPS};
use crate::error::{PipelineError, Result};
use crate::observed::KeepObserved;
use crate::rollout::{edm_x0, rollout, RolloutSampler};

/// Which sigmas the sampler steps through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScheduleKind {
    /// Karras 200 -> 0.01 (2B post-trained): steps + 1 model calls.
    Karras,
    /// Linear in sigma, shifted (5 for the pre-trained checkpoints): steps model calls.
    Shift(f64),
}

impl ScheduleKind {
    /// As `orrery_sampling.json` and the generation records write it: "karras" or the shift.
    pub fn to_json(self) -> serde_json::Value {
        match self {
            ScheduleKind::Karras => serde_json::json!("karras"),
            ScheduleKind::Shift(s) => serde_json::json!(s),
        }
    }
}

/// How latents are sampled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SamplerKind {
    /// The official UniPC over the schedule, with guidance: the base and post-trained models.
    #[default]
    UniPc,
    /// The released distilled model's loop: at most 4 x0 predictions at fixed TrigFlow times, re-noised with the
    /// initial noise, no guidance ([`crate::distilled`]).
    Distilled,
    /// The RL rollout sampler of the released post-training (Karras sigmas 200 to 0.01, churn 1, "2ab"): `steps`
    /// stochastic steps and a last clean prediction ([`crate::rollout`]); the sampler RL post-trained models are
    /// trained with.
    Churn,
}

impl SamplerKind {
    /// `unipc`, `distilled` or `churn`, as the command line, `orrery_sampling.json` and generation records spell it.
    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::UniPc => "unipc",
            SamplerKind::Distilled => "distilled",
            SamplerKind::Churn => "churn",
        }
    }
}

impl std::str::FromStr for SamplerKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "unipc" => Ok(Self::UniPc),
            "distilled" => Ok(Self::Distilled),
            "churn" => Ok(Self::Churn),
            other => Err(format!("{other}: expected unipc, distilled or churn")),
        }
    }
}

/// Everything that decides a sample besides the model and the inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingSettings {
    pub sampler: SamplerKind,
    /// UniPC steps; the distilled sampler takes at most 4.
    pub steps: usize,
    pub schedule: ScheduleKind,
    /// Guidance g of `cond + g (cond - uncond)`; 0 skips the unconditional branch.
    pub guidance: f64,
    /// Timestep of conditioning frames in scheduler units (0.1 for the 2B post-trained checkpoint), or `None` to
    /// give them the noisy frames' timestep.
    pub cond_timestep: Option<f64>,
    /// Network timestep = scheduler timestep x this (0.001).
    pub timestep_scale: f64,
    pub seed: u64,
    pub noise: NoiseKind,
    /// Video2World: latent frames of the input video that condition (`num_input_frames`; `None`: the reference's
    /// 2). A VAE with less temporal compression than Wan2.1's needs 3 for the same 5 pixel frames.
    pub conditional_frames: Option<usize>,
    /// Image2World and Video2World: keep the observed pixels where the output does not change from the decoded
    /// last conditioning frame ([`crate::observed`]); `None` outputs the decoder's pixels throughout, as the
    /// reference does.
    pub keep_observed: Option<KeepObserved>,
}

impl SamplingSettings {
    /// The official defaults of the 2B post-trained checkpoint: Karras, 35 steps (36 calls), guidance 7,
    /// conditioning frames at timestep 0.1, NumPy noise.
    pub fn cosmos_2b_post_trained(seed: u64) -> Self {
        Self {
            sampler: SamplerKind::UniPc,
            steps: 35,
            schedule: ScheduleKind::Karras,
            guidance: 7.0,
            cond_timestep: Some(0.1),
            timestep_scale: 0.001,
            seed,
            noise: NoiseKind::Numpy,
            conditional_frames: None,
            keep_observed: None,
        }
    }

    /// Conditional latent frames of `mode`: Text2World none, Image2World its one image, Video2World
    /// `conditional_frames` (2 unless set).
    pub fn conditional_latent_frames(&self, mode: Mode) -> usize {
        match mode {
            Mode::Video2World => self
                .conditional_frames
                .unwrap_or(mode.conditional_latent_frames()),
            _ => mode.conditional_latent_frames(),
        }
    }

    /// Checks what can be checked without a model: a finite guidance, a schedule that builds, and for
    /// Video2World at least one conditional frame.
    pub fn check(&self) -> Result<()> {
        if !self.guidance.is_finite() {
            return Err(PipelineError::Settings(format!(
                "guidance {}: expected a finite number",
                self.guidance
            )));
        }
        if self.sampler == SamplerKind::Distilled && self.guidance != 0.0 {
            return Err(PipelineError::Settings(format!(
                "guidance {}: the distilled sampler takes none (the teacher's guidance is distilled into the \
                 model); leave it out or set 0",
                self.guidance
            )));
        }
        if self.conditional_frames == Some(0) {
            return Err(PipelineError::Settings(
                "Video2World needs at least 1 conditional latent frame".into(),
            ));
        }
        self.schedule().map(drop)
    }

    /// Network calls of one sample.
    pub fn calls(&self) -> Result<usize> {
        Ok(match self.sampler {
            SamplerKind::UniPc => self.schedule()?.calls(),
            SamplerKind::Distilled => self.steps.min(DISTILLED_STEPS),
            SamplerKind::Churn => self.steps + 1,
        })
    }

    pub fn schedule(&self) -> Result<Schedule> {
        Ok(match self.schedule {
            ScheduleKind::Karras => Schedule::karras(self.steps)?,
            ScheduleKind::Shift(s) => Schedule::shifted(self.steps, s)?,
        })
    }
}

/// Samples with the RL rollout sampler ([`SamplerKind::Churn`]) from `noise`: the churn noise comes from a
/// generator seeded by `settings.seed`, guidance (when not 0) combines the x0 predictions as the velocities.
fn sample_churn(
    dit: &CosmosDit,
    (text, negative): (&Tensor, Option<&Tensor>),
    noise: &Tensor,
    (gt, mask): (&Tensor, &Tensor),
    settings: &SamplingSettings,
    on_step: impl FnMut(usize, usize),
) -> Result<Tensor> {
    let b = noise.dim(0)?;
    let pin_timestep = settings.cond_timestep.is_some();
    let condition = |text| TrigCondition {
        gt,
        mask,
        text,
        pin_timestep,
    };
    let mut denoise = |x: &Tensor, sigma: f64| -> Result<Tensor> {
        let cond = edm_x0(dit, x, &vec![sigma; b], &condition(text))?;
        match negative {
            Some(neg) if settings.guidance != 0.0 => {
                let uncond = edm_x0(dit, x, &vec![sigma; b], &condition(neg))?;
                Ok(guide(&cond, &uncond, settings.guidance)?)
            }
            _ => Ok(cond),
        }
    };
    let mut rng = FastRng::new(settings.seed ^ CHURN_NOISE_STREAM);
    let normal = |shape: &[usize]| Ok(normal_from(&mut rng, shape, noise.device())?);
    let sampler = RolloutSampler::Churn(ChurnSchedule::released(settings.steps));
    Ok(rollout(&sampler, &mut denoise, noise, normal, |_| false, on_step)?.latents)
}

/// Separates the churn sampler's noise from the initial noise of the same seed.
const CHURN_NOISE_STREAM: u64 = 0xc4u64 << 56;

/// What the latent is conditioned on: `gt` (B, C, T, h, w) normalised latents whose first `frames` latent frames
/// are the conditioning (ignored when `frames` is 0), and for an action-conditioned DiT the `action`
/// (B, ratio (T - 1), A), which both guidance branches see.
#[derive(Debug, Clone)]
pub struct LatentCondition {
    pub gt: Tensor,
    pub frames: usize,
    pub action: Option<Tensor>,
}

/// Samples normalised latents of `shape` (B, C, T, h, w) with the sampler of `settings`, on the DiT's device.
/// `text` and `negative` are the prompt embeddings (B, N, width); `negative` is needed when guidance is not 0.
/// `on_step(i, calls)` reports progress.
pub fn sample_latents(
    dit: &CosmosDit,
    shape: [usize; 5],
    text: &Tensor,
    negative: Option<&Tensor>,
    condition: &LatentCondition,
    settings: &SamplingSettings,
    mut on_step: impl FnMut(usize, usize),
) -> Result<Tensor> {
    let [b, _, t, h, w] = shape;
    let device = dit.device();
    settings.check()?;
    if settings.guidance != 0.0 && negative.is_none() {
        return Err(PipelineError::Settings(
            "guidance needs a negative prompt embedding".into(),
        ));
    }
    if condition.frames > t {
        return Err(PipelineError::Input(format!(
            "{} conditioning latent frames but only {t} in all",
            condition.frames
        )));
    }
    // The caller's tensors may be on the CPU (embeddings from a cache or file, conditioning from frames).
    let text = &text.to_device(device)?;
    let negative = negative.map(|n| n.to_device(device)).transpose()?;
    let negative = negative.as_ref();
    let condition = &LatentCondition {
        gt: condition.gt.to_device(device)?,
        frames: condition.frames,
        action: condition
            .action
            .as_ref()
            .map(|a| a.to_device(device))
            .transpose()?,
    };
    // Drawn on the CPU whatever the device, so a seed gives the same noise everywhere.
    let noise = gaussian(settings.noise, settings.seed, &shape, &Device::Cpu)?.to_device(device)?;
    let mask = condition_mask(b, t, h, w, condition.frames, device)?;
    if settings.sampler == SamplerKind::Distilled {
        return sample_distilled(dit, text, &noise, (&condition.gt, &mask), settings, on_step);
    }
    if settings.sampler == SamplerKind::Churn {
        let cond = (&condition.gt, &mask);
        return sample_churn(dit, (text, negative), &noise, cond, settings, on_step);
    }
    let schedule = settings.schedule()?;
    let gt = &condition.gt;
    let mut sampler = UniPc::new(&schedule);
    let mut latents = noise.clone();
    let calls = schedule.calls();
    for (i, &step_t) in schedule.timesteps.iter().enumerate() {
        let timesteps = frame_timesteps(
            step_t,
            settings.cond_timestep,
            b,
            t,
            condition.frames,
            settings.timestep_scale,
            device,
        )?;
        let x_in = replace_frames(&latents, gt, &mask)?;
        let denoise = |emb: &Tensor| -> Result<Tensor> {
            let v = dit.forward(&DitInput {
                x: &x_in,
                timesteps: &timesteps,
                crossattn_emb: emb,
                condition_mask: &mask,
                padding_mask: None,
                action: condition.action.as_ref(),
            })?;
            Ok(replace_velocity(&v, &noise, gt, &mask)?)
        };
        let cond = denoise(text)?;
        let velocity = match negative {
            Some(neg) if settings.guidance != 0.0 => {
                guide(&cond, &denoise(neg)?, settings.guidance)?
            }
            _ => cond,
        };
        latents = sampler.step(&velocity, &latents)?;
        on_step(i + 1, calls);
    }
    Ok(latents)
}

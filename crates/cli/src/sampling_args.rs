//! The sampling flags every command that samples takes (flattened into its arguments), parsed once into the
//! engine's typed options; `--device` rides along, since every command that samples runs the engine.

use candle_core::Device;
use orrery_flow::noise::NoiseKind;
use orrery_pipeline::{
    GenerationOptions, KeepObserved, SamplerKind, SamplingOverrides, WeightType,
};

use crate::device::DeviceArgs;

#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// `unipc` (the base and post-trained models), `distilled` (the released 4-step model's loop: x0 at four
    /// fixed times, re-noised with the initial noise, no guidance) or `churn` (the RL rollout sampler: Karras
    /// sigmas, churn 1, the "2ab" update; what `orrery train rl` trains through) (default: the bundle's).
    #[arg(long)]
    pub sampler: Option<SamplerKind>,
    /// Sampling steps (default: the bundle's for the mode).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub steps: Option<u64>,
    /// Guidance g in cond + g (cond - uncond): 0 is the conditional prediction alone and skips the
    /// unconditional branch (default: the bundle's for the mode).
    #[arg(long)]
    pub guidance: Option<f64>,
    /// Video2World: latent frames of the input video that condition (default: the bundle's, else 2).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub conditional_frames: Option<u64>,
    /// Image2World and Video2World: THRESHOLD[,MARGIN] keeps the input's last frame where the output changes less
    /// than THRESHOLD from it (largest channel change, [-1, 1] units) and no pixel within MARGIN pixels changes
    /// more; `off` outputs the decoder's pixels throughout (default: the bundle's; off for the released models).
    #[arg(long, value_parser = parse_keep_observed)]
    pub keep_observed: Option<KeepObservedArg>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `--keep-observed`: `off` (`None`) or THRESHOLD[,MARGIN].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeepObservedArg(pub Option<KeepObserved>);

pub fn parse_keep_observed(s: &str) -> Result<KeepObservedArg, String> {
    if s == "off" {
        return Ok(KeepObservedArg(None));
    }
    KeepObserved::parse(s).map(|k| KeepObservedArg(Some(k)))
}

impl SamplingArgs {
    /// The engine's overrides with `seed` and `noise`.
    pub fn overrides(&self, seed: u64, noise: NoiseKind) -> SamplingOverrides {
        SamplingOverrides {
            steps: self.steps.map(|s| s as usize),
            guidance: self.guidance,
            conditional_frames: self.conditional_frames.map(|n| n as usize),
            keep_observed: self.keep_observed.map(|k| k.0),
            seed,
            noise,
            sampler: self.sampler,
        }
    }

    /// What benches and policy evaluations generate with: samples seeded by index (seed 0 plus the index) with the
    /// fast generator, float32 weights and the model's own size and frames, on `device`.
    pub fn bench_options(&self, device: Device) -> GenerationOptions {
        GenerationOptions {
            sampling: self.overrides(0, NoiseKind::Fast),
            weights: Some(WeightType::F32),
            device,
            ..GenerationOptions::default()
        }
    }
}

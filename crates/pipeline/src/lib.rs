//! orrery-pipeline: one model, three modes. Text2World, Image2World and Video2World differ only in how many
//! latent frames are conditioning ([`conditioning::Mode`]); [`sample::sample_latents`] is the official sampling
//! loop and [`WorldPipeline`] wraps input preparation, VAE encoding and decoding around it. [`Engine`] is what
//! callers use: bundle, settings, negative prompt, load order, long videos and outputs in one place.

pub mod action_bench;
pub mod actions;
pub mod bench_predictor;
pub mod bundle;
pub mod conditioning;
pub mod defaults;
pub mod distilled;
pub mod engine;
mod error;
pub mod inputs;
pub mod observed;
mod pipeline;
pub mod policy_world;
pub mod rollout;
pub mod sample;
mod stage;

pub use actions::{ActionSequence, RolloutPlan};
pub use bundle::{ModelBundle, TextEncoderKind};
pub use conditioning::Mode;
pub use defaults::{BundleDefaults, ModeSampling, SAMPLING_FILE};
pub use engine::{
    BatchSpec, Engine, Generation, GenerationOptions, GenerationRecord, Generator, MemoryOptions,
    Prompts, SamplingOverrides, Size, WeightType, WorldInput, DEFAULT_NEGATIVE_PROMPT,
};
pub use error::{PipelineError, Result};
pub use observed::KeepObserved;
pub use pipeline::{Generated, Request, WorldPipeline};
pub use sample::{sample_latents, LatentCondition, SamplerKind, SamplingSettings, ScheduleKind};

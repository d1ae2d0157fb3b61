//! orrery-pipeline: one model, three modes. Text2World, Image2World and Video2World differ only in how many
//! latent frames are conditioning ([`conditioning::Mode`]); [`sample::sample_latents`] is the official sampling
//! loop and [`WorldPipeline`] wraps input preparation, VAE encoding and decoding around it.

pub mod bundle;
pub mod conditioning;
mod error;
pub mod inputs;
pub mod observed;
mod pipeline;
pub mod sample;

pub use bundle::{BundleDefaults, ModeSampling, ModelBundle, TextEncoderKind};
pub use conditioning::Mode;
pub use error::{PipelineError, Result};
pub use observed::KeepObserved;
pub use pipeline::{Generated, Request, WorldPipeline};
pub use sample::{sample_latents, LatentCondition, SamplingSettings, ScheduleKind};

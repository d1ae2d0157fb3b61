//! orrery-train: training orrery's own world models on physics worlds.
//!
//! - [`VaeTrainer`]: a small Wan-architecture causal video VAE (reconstruction + KL + edge loss);
//! - [`DitTrainer`]: the Cosmos flow-matching DiT with the small word encoder trained jointly
//!   (logit-normal sigmas with shift, uniform weight, 0/1/2 conditioning latent frames, caption dropout,
//!   optional image batches), exported as a model bundle `orrery generate` runs; or a released-format bundle
//!   (diffusers folder or official `.pt` layout) fine-tuned in full or with LoRA, its Reason1 text encoder frozen;
//! - [`DistillTrainer`]: DMD2 timestep distillation of a trained bundle into a 4-step student (TrigFlow, the
//!   released recipe);
//! - [`RlTrainer`]: GRPO post-training of a bundle with rewards judged against the simulator (the released
//!   rollout sampler, clipped ratio, group advantages, the DDRL data term);
//! - [`Session`]: AdamW with warm-up, decay, clipping and EMA, and checkpoints that resume exactly;
//! - [`merge`]: model merging (soup, task arithmetic, TIES, DARE), streamed tensor by tensor over any checkpoint
//!   format or model bundle.
//!
//! The modules follow the concerns, and their dependencies point one way: [`trainer`] (the machinery every run
//! shares) and [`surgery`] (growing a trained model) use neither trainer; [`dit`] and [`vae`] build on both and
//! not on each other.

pub mod distill;
pub mod dit;
mod error;
pub mod merge;
pub mod rl;
pub mod surgery;
pub mod trainer;
pub mod vae;

pub use distill::{DistillConfig, DistillTrainer};
pub use dit::{DitTrainConfig, DitTrainer};
pub use error::{Result, TrainError};
pub use rl::{RlConfig, RlTrainer};
pub use trainer::data::DataConfig;
pub use trainer::run::Run;
pub use trainer::session::{LossPoint, Session};
pub use trainer::videos::VideosConfig;
pub use vae::{VaeTrainConfig, VaeTrainer};

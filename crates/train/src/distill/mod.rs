//! Timestep distillation: DMD2 in TrigFlow form, the recipe of the released 4-step Cosmos-Predict2.5 model, for
//! orrery's own bundles. The student exports as a bundle whose default sampler is the distilled one. Built on
//! [`crate::trainer`] and the DiT's latent cache ([`crate::dit::latents`]).

pub mod config;
mod export;
pub mod loss;
pub mod trainer;

pub use config::{DistillConfig, Dmd2, ExportSteps};
pub use trainer::DistillTrainer;

//! orrery-train: training orrery's own world models on physics worlds.
//!
//! - [`vae_train::VaeTrainer`]: a small Wan-architecture causal video VAE (reconstruction + KL + edge loss);
//! - [`dit_train::DitTrainer`]: the Cosmos flow-matching DiT with the small word encoder trained jointly
//!   (logit-normal sigmas with shift, uniform weight, 0/1/2 conditioning latent frames, caption dropout,
//!   optional image batches), exported as a model bundle `orrery generate` runs;
//! - [`session::Session`]: AdamW with warm-up, decay, clipping and EMA, and checkpoints that resume exactly.

pub mod config;
pub mod data;
pub mod dit_train;
mod error;
pub mod foreground;
pub mod grow;
pub mod grow_width;
pub mod optim;
pub mod plot;
pub mod predicted;
pub mod run;
pub mod session;
pub mod vae_train;
pub mod widen;

pub use config::{DitTrainConfig, VaeTrainConfig};
pub use dit_train::DitTrainer;
pub use error::{Result, TrainError};
pub use run::Run;
pub use session::{LossPoint, Session};
pub use vae_train::VaeTrainer;

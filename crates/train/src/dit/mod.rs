//! Training the Cosmos flow-matching DiT with the small word encoder, or fine-tuning a released-format bundle
//! with its Reason1 frozen: the configuration, the latent cache of the
//! training clips, starting from a trained bundle, and the step with its samples and bundle export. Built on
//! [`crate::trainer`] and [`crate::surgery`]; it does not depend on the VAE trainer.

pub mod config;
pub(crate) mod init;
pub mod latents;
pub(crate) mod lora;
pub mod objects;
pub mod released;
pub mod trainer;

pub use config::{DitTrainConfig, FlowTraining, LoraTraining, TextShape};
pub use latents::LatentSet;
pub use released::{Reason1Captions, PROMPT_CACHE_DIR};
pub use trainer::{CaptionEncoder, DitTrainer};

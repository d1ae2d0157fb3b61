//! Training a small Wan-architecture VAE: the configuration, the loss terms, the foreground weights that keep
//! small objects, and the predictor whose latents a decoder can learn to decode. Built on [`crate::trainer`] and
//! [`crate::surgery`]; it does not depend on the DiT trainer (the predictor samples a frozen DiT through
//! `orrery-pipeline`).

pub mod config;
pub mod foreground;
pub mod loss;
pub mod predicted;
pub mod trainer;

pub use config::{PredictedLatents, Reconstruction, VaeLoss, VaeShape, VaeTrainConfig};
pub use trainer::{export_vae, VaeTrainer};

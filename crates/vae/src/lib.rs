//! orrery-vae: the Wan2.1 causal video VAE that Cosmos-Predict2.5 uses as its tokenizer (4x8x8 compression to
//! 16 channels).
//!
//! Every temporal layer is causal and keeps its state in an explicit [`layers::StreamCache`], so a clip can be
//! encoded or decoded in chunks (memory bounded by the chunk, not the clip) with exactly the whole-clip result;
//! [`tiling`] bounds memory for large frames. All ops are differentiable, so small VAEs of this architecture train.

pub mod config;
pub mod encoder_decoder;
mod error;
pub mod layers;
pub mod load;
pub mod model;
pub mod names;
pub mod tiling;

pub use config::VaeConfig;
pub use error::{Result, VaeError};
pub use load::{load_vae, VaeModelPath};
pub use model::{Chunking, WanVae};

//! orrery-dit: the Cosmos-Predict2.5 diffusion transformer (`MiniTrainDIT` as wrapped by `MinimalV1LVGDiT`).
//!
//! [`DitConfig`] holds the shape (presets for the released 2B and 14B networks, diffusers `config.json`),
//! [`CosmosDit`] the network, [`load`] reads its weights from official `.pt` checkpoints, official-named or
//! diffusers-named safetensors. Every op is differentiable, so the same network trains.

pub mod action;
pub mod attention;
pub mod bench_inputs;
pub mod block;
mod checkpointing;
pub mod config;
mod error;
pub mod load;
pub mod lora;
pub mod lora_train;
pub mod model;
pub mod patch;
pub mod rope;
pub mod time_embed;

pub use action::ActionConfig;
pub use config::DitConfig;
pub use error::{DitError, Result};
pub use load::{load_dit, load_dit_offloaded, load_dit_with_loras, DitModelDir};
pub use lora::{LoraAdapter, LoraSpec, ScaledLora};
pub use lora_train::{save_lora_weights, LoraShape, LORA_WEIGHTS_FILE};
pub use model::{CosmosDit, DitInput};

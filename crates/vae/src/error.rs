use std::path::PathBuf;

use orrery_nn::CheckpointError;

/// Errors of the VAE; each names the file, tensor or input and says what was expected and found.
#[derive(Debug, thiserror::Error)]
pub enum VaeError {
    #[error("invalid VAE configuration: {0}")]
    Config(String),
    #[error("{path}: {detail}")]
    ConfigFile { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    Weights { path: PathBuf, detail: String },
    #[error("input `{name}`: expected {expected}, found {found}")]
    Input {
        name: &'static str,
        expected: String,
        found: String,
    },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, VaeError>;

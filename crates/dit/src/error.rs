use std::path::PathBuf;

use orrery_nn::CheckpointError;

/// Errors of the DiT: bad configurations, bad inputs (each names the input and says what was expected and
/// found), and checkpoints that do not fit the configuration.
#[derive(Debug, thiserror::Error)]
pub enum DitError {
    #[error("invalid DiT configuration: {0}")]
    Config(String),
    #[error("{path}: {detail}")]
    ConfigFile { path: PathBuf, detail: String },
    #[error("input `{name}`: expected {expected}, found {found}")]
    Input {
        name: &'static str,
        expected: String,
        found: String,
    },
    #[error("{path}: {detail}")]
    Weights { path: PathBuf, detail: String },
    #[error("LoRA {path}: {detail}")]
    Lora { path: PathBuf, detail: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, DitError>;

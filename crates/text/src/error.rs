use std::path::PathBuf;

use orrery_nn::CheckpointError;

/// Errors of the text encoders; each names the file, tensor or prompt and says what was expected and found.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("{path}: {detail}")]
    Config { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    Tokenizer { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    Weights { path: PathBuf, detail: String },
    #[error("prompt: {0}")]
    Prompt(String),
    #[error("input `{name}`: expected {expected}, found {found}")]
    Input {
        name: &'static str,
        expected: String,
        found: String,
    },
    #[error("prompt cache {path}: {detail}")]
    Cache { path: PathBuf, detail: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, TextError>;

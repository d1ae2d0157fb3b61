use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalNetError {
    #[error("{path}: {detail}")]
    Weights { path: PathBuf, detail: String },
    #[error(transparent)]
    Checkpoint(#[from] orrery_nn::CheckpointError),
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, EvalNetError>;

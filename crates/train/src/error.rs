use std::path::PathBuf;

/// Errors of training runs; each names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("config {path}: {detail}")]
    Config { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    Checkpoint { path: PathBuf, detail: String },
    // The cause is in the message, not also a `source()`: a caller printing the chain would repeat it.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("data: {0}")]
    Data(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Flow(#[from] orrery_flow::FlowError),
    #[error(transparent)]
    Dit(#[from] orrery_dit::DitError),
    #[error(transparent)]
    Vae(#[from] orrery_vae::VaeError),
    #[error(transparent)]
    Text(#[from] orrery_text::TextError),
    #[error(transparent)]
    Pipeline(#[from] orrery_pipeline::PipelineError),
    #[error(transparent)]
    Weights(#[from] orrery_nn::CheckpointError),
    #[error(transparent)]
    Media(#[from] orrery_media::MediaError),
}

impl TrainError {
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |cause| Self::Io {
            path: path.to_owned(),
            cause,
        }
    }
}

pub type Result<T> = std::result::Result<T, TrainError>;

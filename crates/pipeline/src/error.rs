/// Errors of the generation pipeline; each names the input and says what was expected and found.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{0}")]
    Settings(String),
    #[error("input: {0}")]
    Input(String),
    #[error(transparent)]
    Dit(#[from] orrery_dit::DitError),
    #[error(transparent)]
    Vae(#[from] orrery_vae::VaeError),
    #[error(transparent)]
    Text(#[from] orrery_text::TextError),
    #[error("{path}: {detail}")]
    Bundle {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("{path}: {detail}")]
    Output {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error(transparent)]
    Flow(#[from] orrery_flow::FlowError),
    #[error(transparent)]
    Media(#[from] orrery_media::MediaError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, PipelineError>;

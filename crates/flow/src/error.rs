/// Errors of the flow-matching code: bad schedule parameters or sampler misuse.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("invalid schedule: {0}")]
    Schedule(String),
    #[error("sampler: {0}")]
    Sampler(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, FlowError>;

use std::path::PathBuf;

/// Everything that can go wrong while reading or writing a checkpoint. Each variant names the file or tensor
/// and says what was expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    // The cause is in the message, not also a `source()`: a caller printing the chain would repeat it.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: not a checkpoint orrery can read: {found} (expected safetensors, a sharded safetensors folder or a PyTorch zip checkpoint)")]
    UnknownFormat { path: PathBuf, found: String },
    #[error("{path}: corrupted or truncated {format} file: {detail}")]
    Corrupt {
        path: PathBuf,
        format: &'static str,
        detail: String,
    },
    #[error("{path}: unsupported {what}")]
    Unsupported { path: PathBuf, what: String },
    #[error("tensor `{name}` not found in {path}{hint}")]
    MissingTensor {
        name: String,
        path: PathBuf,
        hint: String,
    },
    #[error("tensor `{name}` appears twice in {path}")]
    DuplicateTensor { name: String, path: PathBuf },
    #[error("tensor `{name}`: expected shape {expected:?}, found {found:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor `{name}`: {detail}")]
    Tensor { name: String, detail: String },
    #[error("{path}: key `{key}` not found in the checkpoint (top-level entries: {available})")]
    MissingKey {
        path: PathBuf,
        key: String,
        available: String,
    },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl CheckpointError {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        format: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::Corrupt {
            path: path.into(),
            format,
            detail: detail.into(),
        }
    }
}

pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

use std::path::PathBuf;

/// Errors of media I/O; each names the file and what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    // The cause is in the message, not also a `source()`: a caller printing the chain would repeat it.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: not a {expected}: {found}")]
    WrongFormat {
        path: PathBuf,
        expected: &'static str,
        found: String,
    },
    #[error("{path}: cannot decode {format}: {detail}")]
    Decode {
        path: PathBuf,
        format: &'static str,
        detail: String,
    },
    #[error("{path}: cannot encode {format}: {detail}")]
    Encode {
        path: PathBuf,
        format: &'static str,
        detail: String,
    },
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

impl MediaError {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause,
        }
    }

    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            detail: detail.into(),
        }
    }
}

pub type Result<T, E = MediaError> = std::result::Result<T, E>;

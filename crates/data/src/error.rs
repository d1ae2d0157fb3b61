use std::path::PathBuf;

use crate::report::{DatasetReport, SkipReason};

/// Errors of dataset loading; each names the file or setting and what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// A file the policy says to refuse rather than skip.
    #[error("{}: {reason}", path.display())]
    Refused { path: PathBuf, reason: SkipReason },
    #[error("{}: no usable videos; {report}", dir.display())]
    Empty { dir: PathBuf, report: DatasetReport },
    #[error("clip {index} out of range: the dataset has {len}")]
    OutOfRange { index: usize, len: usize },
    #[error(transparent)]
    Media(#[from] orrery_media::MediaError),
}

pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            detail: detail.into(),
        }
    }
}

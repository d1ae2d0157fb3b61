use std::path::PathBuf;

use orrery_nn::DType;

/// What can stop a merge; each names the option, file or tensor at fault and what was expected and found.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{option}: {detail}")]
    Option {
        option: &'static str,
        detail: String,
    },
    #[error("{}: no tensors to merge", path.display())]
    Empty { path: PathBuf },
    #[error("tensor `{name}` is in {} but not in {}", present_in.display(), missing_from.display())]
    MissingTensor {
        name: String,
        present_in: PathBuf,
        missing_from: PathBuf,
    },
    #[error("tensor `{name}`: shape {expected:?} in {} but {found:?} in {}", reference.display(), path.display())]
    ShapeMismatch {
        name: String,
        reference: PathBuf,
        expected: Vec<usize>,
        path: PathBuf,
        found: Vec<usize>,
    },
    #[error(
        "tensor `{name}`: {expected} in {} but {found} in {} (every input must store a tensor in the same float type)",
        reference.display(), path.display()
    )]
    DTypeMismatch {
        name: String,
        reference: PathBuf,
        expected: DType,
        path: PathBuf,
        found: DType,
    },
    #[error(
        "tensor `{name}` in {} is {dtype}, not a float tensor (merging averages weights; integer and boolean \
         tensors have no average)",
        path.display()
    )]
    NotFloat {
        name: String,
        path: PathBuf,
        dtype: DType,
    },
    #[error("{}: {detail}", path.display())]
    Bundle { path: PathBuf, detail: String },
    #[error("{}: {detail}", path.display())]
    Output { path: PathBuf, detail: String },
    // The cause is in the message, not also a `source()`: a caller printing the chain would repeat it.
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Checkpoint(#[from] orrery_nn::CheckpointError),
}

impl MergeError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |cause| Self::Io {
            path: path.to_owned(),
            cause,
        }
    }

    pub(crate) fn option(option: &'static str, detail: impl Into<String>) -> Self {
        Self::Option {
            option,
            detail: detail.into(),
        }
    }
}

pub type Result<T, E = MergeError> = std::result::Result<T, E>;

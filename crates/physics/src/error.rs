/// Errors of the physics worlds: bad settings (named) and I/O while writing datasets.
#[derive(Debug, thiserror::Error)]
pub enum PhysicsError {
    #[error("{0}")]
    Settings(String),
    // The cause is in the message, not also a `source()`: a caller printing the chain would repeat it.
    #[error("{path}: {cause}")]
    Io {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, PhysicsError>;

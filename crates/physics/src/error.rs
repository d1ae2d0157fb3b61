/// Errors of the physics worlds: bad settings (named) and I/O while writing datasets.
#[derive(Debug, thiserror::Error)]
pub enum PhysicsError {
    #[error("{0}")]
    Settings(String),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, PhysicsError>;

//! Outputs appear whole or not at all: written to a temporary file beside the target, then renamed over it.

use std::io::Write;
use std::path::Path;

use crate::error::{MediaError, Result};

/// Runs `write` on a temporary file in `path`'s folder and renames it to `path` once `write` succeeds.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".orrery-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| MediaError::io(dir, e))?;
    {
        let mut out = std::io::BufWriter::new(tmp.as_file());
        write(&mut out)?;
        out.flush().map_err(|e| MediaError::io(path, e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| MediaError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| MediaError::io(path, e.error))?;
    Ok(())
}

//! Outputs appear whole or not at all (see `orrery-io`).

use std::io::Write;
use std::path::Path;

use orrery_io::AtomicFile;

use crate::error::{MediaError, Result};

/// Runs `write` on a temporary file in `path`'s folder and renames it to `path` once `write` succeeds.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> Result<()>,
) -> Result<()> {
    let tmp = AtomicFile::create(path).map_err(|e| MediaError::io(path, e))?;
    {
        let mut out = std::io::BufWriter::new(tmp.file());
        write(&mut out)?;
        out.flush().map_err(|e| MediaError::io(path, e))?;
    }
    tmp.commit(path).map_err(|e| MediaError::io(path, e))
}

//! orrery's cache folder: the unpacked embedded model and the converted FID/FVD networks live here.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// `$ORRERY_CACHE`, else `$XDG_CACHE_HOME/orrery`, else `~/.cache/orrery`.
pub fn cache_root() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ORRERY_CACHE") {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(p).join("orrery"));
    }
    let home = std::env::var_os("HOME")
        .context("no ORRERY_CACHE, XDG_CACHE_HOME or HOME for orrery's cache folder")?;
    Ok(PathBuf::from(home).join(".cache").join("orrery"))
}

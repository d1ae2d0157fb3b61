//! What every run's configuration shares: the run schedule, the checks that report a bad setting, and reading a
//! JSON file with relative paths resolved. Every field is explicit in the resolved configuration written beside
//! each checkpoint; unknown fields are refused so that a typo does not silently train something else.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Schedule of a run: length, batch, checkpoints and samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Where checkpoints, plots, samples and the final model go (relative paths: to the config file).
    pub out_dir: PathBuf,
    pub seed: u64,
    pub steps: usize,
    pub batch_size: usize,
    pub checkpoint_every: usize,
    pub keep_checkpoints: usize,
    /// Sample GIFs every this many steps (0: only at the end).
    pub sample_every: usize,
}

/// For `skip_serializing_if`: a setting at 0 (off) is left out of a written config.
pub(crate) fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// `Ok` when `cond` holds, else the message: each setting's rule reads as one condition.
pub(crate) fn check(cond: bool, msg: impl FnOnce() -> String) -> std::result::Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

/// Probabilities that are non-negative and sum to 1.
pub(crate) fn check_probabilities(name: &str, p: &[f64]) -> std::result::Result<(), String> {
    check(
        p.iter().all(|x| *x >= 0.0) && (p.iter().sum::<f64>() - 1.0).abs() < 1e-6,
        || format!("{name} {p:?} must be non-negative and sum to 1"),
    )
}

impl RunConfig {
    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        check(self.steps > 0, || "run.steps must be positive".into())?;
        check(self.batch_size > 0 && self.batch_size <= 4096, || {
            format!("run.batch_size {}: expected 1 to 4096", self.batch_size)
        })?;
        check(self.checkpoint_every > 0, || {
            "run.checkpoint_every must be positive".into()
        })
    }
}

/// Reads a JSON configuration, resolves relative paths against its folder and validates it.
pub fn read_config<T: DeserializeOwned>(
    path: &Path,
    validate: impl Fn(&mut T, &Path) -> std::result::Result<(), String>,
) -> Result<T> {
    let fail = |detail: String| TrainError::Config {
        path: path.to_owned(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let mut config: T = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    validate(&mut config, base).map_err(fail)?;
    Ok(config)
}

/// `path` relative to `base` unless absolute.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

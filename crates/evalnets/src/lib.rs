//! orrery-evalnets: the feature networks behind the standard generative metrics, ported to candle.
//!
//! - [`InceptionFid`]: the TF-FID InceptionV3 of FID (2048 pool features of 299x299 frames);
//! - [`I3d`]: the Kinetics-400 I3D of FVD (400 logits of 224x224 clips).
//!
//! Their weights come from registry packages, fetched and converted once by `tools/eval_weights/fetch.py` into
//! [`default_weights_dir`]; nothing is downloaded at run time.

mod error;
pub mod i3d;
pub mod inception;
pub mod ops;
mod weights;

use std::path::PathBuf;

pub use error::{EvalNetError, Result};
pub use i3d::{I3d, I3D_FEATURES, I3D_FILE, I3D_MIN_FRAMES};
pub use inception::{InceptionFid, INCEPTION_FEATURES, INCEPTION_FILE};

/// Where `tools/eval_weights/fetch.py` writes the converted networks: `<orrery cache>/eval-weights`.
pub fn default_weights_dir() -> Option<PathBuf> {
    orrery_io::cache_root().map(|root| root.join("eval-weights"))
}

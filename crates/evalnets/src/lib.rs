//! orrery-evalnets: the feature networks behind the standard generative metrics, ported to candle.
//!
//! - [`InceptionFid`]: the TF-FID InceptionV3 of FID (2048 pool features of 299x299 frames);
//! - [`I3d`]: the Kinetics-400 I3D of FVD (400 logits of 224x224 clips).
//!
//! Their weights come from registry packages, fetched and converted once by `tools/eval_weights/fetch.py` into
//! orrery's cache folder ([`EVAL_WEIGHTS_DIR`] inside it); nothing is downloaded at run time.

mod error;
pub mod i3d;
pub mod inception;
pub mod ops;
mod weights;

pub use error::{EvalNetError, Result};
pub use i3d::{I3d, I3D_FEATURES, I3D_FILE, I3D_MIN_FRAMES};
pub use inception::{InceptionFid, INCEPTION_FEATURES, INCEPTION_FILE};

/// The folder, inside orrery's cache folder, where `tools/eval_weights/fetch.py` writes the converted networks.
pub const EVAL_WEIGHTS_DIR: &str = "eval-weights";

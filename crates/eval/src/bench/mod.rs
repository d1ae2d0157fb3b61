//! The physics bench: a model's predictions of held-out physics clips scored against the real frames and the
//! simulator's ground truth, beside prediction baselines.
//!
//! - [`score`]: per-clip scores (PSNR, SSIM, trajectory error, grounded physics) and their summaries;
//! - [`method`]: the typed rows of the bench ([`Method`]) and which compare head to head;
//! - [`run`]: the methodology behind a [`WorldPredictor`] that a model implements: which frames are observed, how
//!   outputs align with the real clip, what counts as an object shown;
//! - [`report`]: the bench's JSON and HTML.

pub mod method;
pub mod report;
pub mod run;
pub mod score;

pub use method::Method;
pub use run::{
    run_bench, BenchOptions, BenchResult, BenchVideos, ModelSeconds, Prediction, WorldPredictor,
    OBSERVED_FRAMES,
};
pub use score::*;

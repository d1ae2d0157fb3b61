//! orrery-eval: measuring generated worlds.
//!
//! - [`metrics`]: PSNR and SSIM of frames and videos;
//! - [`track`]: objects of a physics world located in any frame by their colour;
//! - [`events`]: whether the events a caption tells happen in a video;
//! - [`baselines`]: copy-last-frame and constant-velocity predictions from observed frames only;
//! - [`bench`]: scoring predicted continuations of physics clips against the simulator's ground truth;
//! - [`policy`]: scripted gripper policies run in the simulator or a world model, judged from their videos.

pub mod baselines;
pub mod bench;
pub mod events;
pub mod frechet;
pub mod grounded;
pub mod latent_codes;
pub mod metrics;
pub mod motion;
pub mod policy;
pub mod report;
pub mod track;

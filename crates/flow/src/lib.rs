//! orrery-flow: the flow-matching conventions of Cosmos-Predict2.5, written once.
//!
//! Convention (rectified flow, sigma = 1 is pure noise):
//! - `x_sigma = (1 - sigma) * data + sigma * noise` ([`path::noisy`], per sample [`path::noisy_per_sample`]);
//! - the network predicts the velocity `noise - data` ([`path::velocity_target`]);
//! - the denoised estimate is `x_sigma - sigma * velocity` ([`path::denoised`]).
//!
//! [`schedule`] builds the inference sigmas exactly as the official `FlowUniPCMultistepScheduler` does (shift or
//! Karras), with the network timesteps it feeds (int64(sigma x 1000)); [`unipc`] and [`euler`] are the samplers;
//! [`timesteps`] samples training times; [`noise`] draws NumPy-compatible seeded Gaussians; [`trigflow`] is the time of the distilled 4-step models;
//! [`churn`] and [`flow_grpo`] are the stochastic samplers of RL post-training.

pub mod churn;
mod error;
pub mod euler;
pub mod flow_grpo;
pub mod noise;
pub mod path;
pub mod schedule;
pub mod timesteps;
pub mod trigflow;
pub mod unipc;

pub use error::{FlowError, Result};
pub use schedule::Schedule;

//! The machinery every trainer shares, whatever it trains: the run schedule and config reading, the training
//! data, AdamW with EMA, the run's random draws, the step loop, sessions with exact-resume checkpoints, and loss
//! plots. It depends on no trainer, so the DiT and VAE trainers (and model surgery) build on it without
//! depending on each other.

pub mod bundle_files;
pub mod config;
pub mod data;
pub mod optim;
pub mod plot;
pub mod random;
pub mod run;
pub mod samples;
pub mod session;
pub mod videos;

//! RL post-training (GRPO with the released DDRL regulariser) with rewards judged against the simulator.

pub mod config;
pub mod export;
pub mod grpo;
pub mod history;
pub mod rewards;
pub mod trainer;

pub use config::RlConfig;
pub use trainer::RlTrainer;

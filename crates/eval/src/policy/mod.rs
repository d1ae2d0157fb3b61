//! Policies evaluated in a world: scripted gripper policies run closed loop in the simulator or inside an
//! action-conditioned world model from the same start frame, and judged the same way in both.
//!
//! - [`world`]: what a world offers a policy ([`PolicyWorld`]) and the simulator's ([`SimWorld`]);
//! - [`run`]: episodes (the policy sees the object where the detector finds it in the latest frame), their
//!   success, completion time and effort, summaries per policy and the rank correlation between worlds;
//! - [`report`]: the evaluation's JSON and HTML with side-by-side GIFs;
//! - [`bench`]: the action bench: held-out clips predicted from their first frame and recorded actions.

pub mod bench;
pub mod report;
pub mod run;
pub mod world;

pub use run::{
    evaluate, run_episode, spearman, EpisodeOutcome, EvalOptions, PolicySummary, WorldResult,
};
pub use world::{PolicyWorld, SimWorld};

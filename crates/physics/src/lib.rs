//! orrery-physics: procedural rigid-body worlds with ground truth, to train world models on and to measure their
//! physical fidelity. No tensor library: scenes are simulated with rapier and rendered with tiny-skia. Besides the
//! passive families and the paddle ([`families::FAMILIES`]), [`manip`] has a robot gripper driven by per-frame
//! actions, its tasks, and scripted policies that play them ([`families::MANIPULATION_FAMILIES`]).

pub mod camera;
pub mod caption;
pub mod clip;
pub mod dataset;
mod error;
pub mod families;
pub mod manip;
pub mod render;
pub mod rng;
pub mod scene;
pub mod sim;

pub use camera::Camera;
pub use clip::{make_clip, make_clip_in_episode, Clip, ClipSettings, GroundTruth};
pub use error::{PhysicsError, Result};
pub use render::render_frame;
pub use scene::{ObjectSpec, SceneSpec, Shape};
pub use sim::{simulate, simulate_actions, Event, ObjectState, Simulation, Trajectory};

//! Manipulation worlds: a planar gripper that pushes, picks and places objects, driven by one action per frame;
//! the tasks it is given and how they are judged; scripted policies of several skills that drive it.
//!
//! - [`gripper`]: the gripper, its action vector (`[dx, dy, dtheta, grip]` per frame) and its state;
//! - [`task`]: push and pick-and-place scenes, success from the object's image position, effort;
//! - [`policy`]: closed-loop scripted policies from expert to poor;
//! - [`episode`]: a policy run in the simulator, with its actions, states and judgement.

pub mod episode;
pub mod gripper;
pub mod policy;
pub mod task;

pub use episode::{run_episode, Episode, ManipulationRecord};
pub use gripper::{GripperAction, GripperSpec, GripperState, GRIP_HOLD, MODEL_ACTION_DIM};
pub use policy::{Observation, ScriptedPolicy, Skill};
pub use task::{
    effort, task_scene, ManipulationSpec, Success, Task, WallSpec, ZoneJudge, ZoneSpec,
};

//! What a clip contains, before it is simulated: the world (gravity, extent, ground, ramp), its objects with
//! their physical properties, joints, an occluding screen, an actuated agent and a gripper with its task. Units: metres, kilograms,
//! seconds, radians; y points up.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Shape {
    Circle { radius: f32 },
    Box { half_width: f32, half_height: f32 },
}

impl Shape {
    pub fn name(&self) -> &'static str {
        match self {
            Shape::Circle { .. } => "ball",
            Shape::Box { .. } => "block",
        }
    }

    pub fn area(&self) -> f32 {
        match *self {
            Shape::Circle { radius } => std::f32::consts::PI * radius * radius,
            Shape::Box {
                half_width,
                half_height,
            } => 4.0 * half_width * half_height,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectSpec {
    pub name: String,
    pub shape: Shape,
    pub color: [u8; 3],
    pub color_name: String,
    pub density: f32,
    pub restitution: f32,
    pub friction: f32,
    pub position: [f32; 2],
    pub angle: f32,
    pub velocity: [f32; 2],
    pub angular_velocity: f32,
}

/// A fixed slope: a box rotated by `angle` around `center`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RampSpec {
    pub center: [f32; 2],
    pub half_length: f32,
    pub half_thickness: f32,
    pub angle: f32,
    pub friction: f32,
}

/// A pendulum: object `object` hangs from a fixed `pivot` by a rigid, massless rod.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PendulumSpec {
    pub object: usize,
    pub pivot: [f32; 2],
}

/// A screen drawn in front of everything, with no collider: objects pass behind it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OccluderSpec {
    pub center: [f32; 2],
    pub half_width: f32,
    pub half_height: f32,
    pub color: [u8; 3],
}

/// A kinematic paddle driven by one action per video frame: its horizontal velocity in m/s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub position: [f32; 2],
    pub half_width: f32,
    pub half_height: f32,
    pub color: [u8; 3],
    pub actions: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneSpec {
    pub family: String,
    pub seed: u64,
    pub gravity: f32,
    /// The visible world: x in [0, width], y in [0, height] metres; the ground is y = 0.
    pub width: f32,
    pub height: f32,
    pub ground: bool,
    pub ground_friction: f32,
    pub ground_restitution: f32,
    pub background: [u8; 3],
    pub ground_color: [u8; 3],
    pub objects: Vec<ObjectSpec>,
    pub ramp: Option<RampSpec>,
    pub pendulum: Option<PendulumSpec>,
    pub occluder: Option<OccluderSpec>,
    pub agent: Option<AgentSpec>,
    /// A gripper, its task, target zone and wall (the `gripper` family).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manipulation: Option<crate::manip::ManipulationSpec>,
}

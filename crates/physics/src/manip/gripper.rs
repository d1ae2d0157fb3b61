//! The planar gripper: a palm bar with two fingers hanging below it, seen from the side. It moves in the plane,
//! turns about the palm's centre and opens or closes its fingers, driven by one [`GripperAction`] per video frame.
//!
//! Frame of the gripper (x along the palm, y up; at angle 0 the fingers point down): the palm is a box centred at
//! the origin; finger `i` (0 left, 1 right) is a box whose inner face lies `fingers[i]` from the centre line, its
//! top under the palm. The opening is the distance between the inner faces.

use serde::{Deserialize, Serialize};

/// The geometry, limits and colour of a gripper (metres, seconds, radians).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GripperSpec {
    /// Initial pose of the palm's centre and angle.
    pub position: [f32; 2],
    pub angle: f32,
    pub palm_half: [f32; 2],
    pub finger_half: [f32; 2],
    /// Most the palm's centre moves per second along each axis.
    pub max_speed: f32,
    /// Most the gripper turns per second.
    pub max_turn_rate: f32,
    /// The gripper never turns further than this from upright.
    pub max_angle: f32,
    /// How fast each finger moves (m/s) when opening or closing.
    pub finger_speed: f32,
    pub density: f32,
    pub friction: f32,
    pub color: [u8; 3],
}

impl GripperSpec {
    /// The gripper of the manipulation worlds, upright at `position`, drawn in `color`: a palm 0.72 m wide with
    /// fingers 0.5 m long, at most 1.2 m/s, 1.5 rad/s and 0.8 rad from upright.
    pub fn standard(position: [f32; 2], color: [u8; 3]) -> Self {
        Self {
            position,
            angle: 0.0,
            palm_half: [0.36, 0.05],
            finger_half: [0.04, 0.25],
            max_speed: 1.2,
            max_turn_rate: 1.5,
            max_angle: 0.8,
            finger_speed: 1.0,
            density: 20.0,
            friction: 0.8,
            color,
        }
    }

    /// The gripper as a scene starts it: at its initial pose, fingers wide open, holding nothing.
    pub fn initial_state(&self) -> GripperState {
        GripperState {
            position: self.position,
            angle: self.angle,
            fingers: [self.max_finger_offset(); 2],
            grip: 0.0,
            holding: None,
        }
    }

    /// The farthest a finger's inner face gets from the centre line (its outer face stays under the palm).
    pub fn max_finger_offset(&self) -> f32 {
        self.palm_half[0] - 2.0 * self.finger_half[0]
    }

    /// The widest the fingers open.
    pub fn max_opening(&self) -> f32 {
        2.0 * self.max_finger_offset()
    }

    /// From the palm's centre down to the finger tips, at angle 0.
    pub fn reach(&self) -> f32 {
        self.palm_half[1] + 2.0 * self.finger_half[1]
    }

    /// Centre of finger `i` (0 left, 1 right) in the gripper's frame, for inner-face offset `offset`.
    pub fn finger_center(&self, i: usize, offset: f32) -> [f32; 2] {
        let side = if i == 0 { -1.0 } else { 1.0 };
        [
            side * (offset + self.finger_half[0]),
            -(self.palm_half[1] + self.finger_half[1]),
        ]
    }

    /// The largest per-frame action at `fps` frames per second: [dx, dy, dtheta] bounds.
    pub fn action_bounds(&self, fps: f32) -> [f32; 3] {
        [
            self.max_speed / fps,
            self.max_speed / fps,
            self.max_turn_rate / fps,
        ]
    }
}

/// One frame's command: `[dx, dy, dtheta, grip]`.
///
/// - `dx`, `dy`: metres the palm's centre moves during the frame (world axes, y up), at most
///   [`GripperSpec::max_speed`] / fps each;
/// - `dtheta`: radians it turns (counter-clockwise), at most [`GripperSpec::max_turn_rate`] / fps, and the angle
///   stays within [`GripperSpec::max_angle`];
/// - `grip`: in [0, 1], how closed the fingers are told to be (0 fully open, 1 closed). Fingers move towards
///   the commanded opening at [`GripperSpec::finger_speed`] and stop closing when they touch an object; at
///   `grip >= 0.5` with both fingers touching the same object the object is held, and it is let go when
///   `grip < 0.5`.
///
/// Out-of-range values are clamped (non-finite ones become 0) before they act; the clamped action is the one
/// recorded.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GripperAction(pub [f32; 4]);

/// Width of an action as an action-conditioned world model takes it ([`GripperAction::model_features`]).
pub const MODEL_ACTION_DIM: usize = 4;

/// Grip commands at or above this hold a touched object.
pub const GRIP_HOLD: f32 = 0.5;

impl GripperAction {
    pub fn new(dx: f32, dy: f32, dtheta: f32, grip: f32) -> Self {
        Self([dx, dy, dtheta, grip])
    }

    pub fn dx(&self) -> f32 {
        self.0[0]
    }
    pub fn dy(&self) -> f32 {
        self.0[1]
    }
    pub fn dtheta(&self) -> f32 {
        self.0[2]
    }
    pub fn grip(&self) -> f32 {
        self.0[3]
    }

    /// The action as an action-conditioned world model takes it, scaled as the official data pipeline scales the
    /// Bridge robot's (posttraining spec section 5): the translation in the frame of the gripper before the action
    /// (`R(angle)ᵀ (dx, dy)`) and the turn, times 20, then the grip, times 1.
    pub fn model_features(&self, angle: f32) -> [f32; MODEL_ACTION_DIM] {
        let (s, c) = angle.sin_cos();
        [
            20.0 * (c * self.dx() + s * self.dy()),
            20.0 * (-s * self.dx() + c * self.dy()),
            20.0 * self.dtheta(),
            self.grip(),
        ]
    }

    /// Within the gripper's limits at `fps`.
    pub fn clamped(&self, spec: &GripperSpec, fps: f32) -> Self {
        let b = spec.action_bounds(fps);
        let c = |v: f32, lo: f32, hi: f32| if v.is_finite() { v.clamp(lo, hi) } else { 0.0 };
        Self([
            c(self.0[0], -b[0], b[0]),
            c(self.0[1], -b[1], b[1]),
            c(self.0[2], -b[2], b[2]),
            c(self.0[3], 0.0, 1.0),
        ])
    }
}

/// The gripper at one video frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GripperState {
    /// The palm's centre.
    pub position: [f32; 2],
    pub angle: f32,
    /// Inner-face offsets of the left and right fingers from the centre line.
    pub fingers: [f32; 2],
    /// The grip command in force.
    pub grip: f32,
    /// The object held (index into the scene's objects).
    pub holding: Option<usize>,
}

impl GripperState {
    pub fn opening(&self) -> f32 {
        self.fingers[0] + self.fingers[1]
    }

    /// Where `action` takes the gripper when nothing is in its way (dead reckoning: what a robot knows of itself
    /// from its commands): the clamped motion within the workspace (`width` x `height` metres) and angle limit,
    /// the fingers moved towards the commanded opening. The grip and the held object are kept as they were.
    pub fn predicted(
        &self,
        action: GripperAction,
        spec: &GripperSpec,
        fps: f32,
        width: f32,
        height: f32,
    ) -> Self {
        let a = action.clamped(spec, fps);
        let m = spec.palm_half[0];
        let goal = (1.0 - a.grip()) * spec.max_finger_offset();
        let step = spec.finger_speed / fps;
        Self {
            position: [
                (self.position[0] + a.dx()).clamp(m, (width - m).max(m)),
                (self.position[1] + a.dy())
                    .min(height - spec.palm_half[1])
                    .max(spec.reach()),
            ],
            angle: (self.angle + a.dtheta()).clamp(-spec.max_angle, spec.max_angle),
            fingers: self.fingers.map(|o| {
                if goal < o {
                    (o - step).max(goal)
                } else {
                    (o + step).min(goal)
                }
            }),
            grip: a.grip(),
            holding: self.holding,
        }
    }

    /// A point of the gripper's frame in world coordinates.
    pub fn to_world(&self, local: [f32; 2]) -> [f32; 2] {
        let (s, c) = self.angle.sin_cos();
        [
            self.position[0] + c * local[0] - s * local[1],
            self.position[1] + s * local[0] + c * local[1],
        ]
    }

    /// The world-space boxes (centre, half sizes, angle) of the palm and the two fingers, to draw.
    pub fn boxes(&self, spec: &GripperSpec) -> [([f32; 2], [f32; 2], f32); 3] {
        let finger = |i: usize| {
            (
                self.to_world(spec.finger_center(i, self.fingers[i])),
                spec.finger_half,
                self.angle,
            )
        };
        [
            (self.position, spec.palm_half, self.angle),
            finger(0),
            finger(1),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> GripperSpec {
        GripperSpec::standard([1.0, 2.0], [170, 170, 190])
    }

    #[test]
    fn actions_are_clamped_to_the_limits_of_one_frame() {
        let s = spec();
        let a = GripperAction::new(1.0, -1.0, 9.0, 3.0).clamped(&s, 16.0);
        assert_eq!(a, GripperAction::new(0.075, -0.075, 1.5 / 16.0, 1.0));
        let nan = GripperAction::new(f32::NAN, 0.01, f32::INFINITY, -1.0).clamped(&s, 16.0);
        assert_eq!(nan, GripperAction::new(0.0, 0.01, 0.0, 0.0));
    }

    #[test]
    fn fingers_hang_under_the_palm_and_turn_with_it() {
        let s = spec();
        assert!((s.max_opening() - 0.56).abs() < 1e-6);
        assert!((s.reach() - 0.55).abs() < 1e-6);
        let mut g = GripperState {
            position: [1.0, 2.0],
            angle: 0.0,
            fingers: [0.1, 0.1],
            grip: 0.0,
            holding: None,
        };
        let [_, left, right] = g.boxes(&s);
        assert!((left.0[0] - (1.0 - 0.14)).abs() < 1e-6 && (right.0[0] - 1.14).abs() < 1e-6);
        assert!((left.0[1] - (2.0 - 0.3)).abs() < 1e-6);
        g.angle = std::f32::consts::FRAC_PI_2;
        // Turned a quarter counter-clockwise, the fingers point right.
        let [_, left, _] = g.boxes(&s);
        assert!((left.0[0] - 1.3).abs() < 1e-5 && (left.0[1] - 1.86).abs() < 1e-5);
    }
}

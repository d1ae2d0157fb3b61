//! Manipulation tasks: the scene of a task (an object, a target zone drawn on the floor, for pick and place a wall
//! between them), and how success, completion time and effort are judged.
//!
//! - **push**: the gripper pushes the object along the floor into the zone;
//! - **pick-place**: a wall taller than the object stands between it and the zone, so the object cannot be pushed
//!   there: the gripper must grip it, lift it over the wall, lower it into the zone and let it go. The world is
//!   seen from the side, so a lift is visible and gravity acts on a dropped object.
//!
//! Success is judged on the target object's image position, so that a rendered or generated video is judged the
//! same way as the simulator's state: the object's centre (the centroid of its pixels in a video, its projected
//! centre in the state) is over the zone and low enough to rest on the floor, in each of the last
//! [`SETTLE_FRAMES`] frames. Completion is the first frame from which that holds to the end.

use serde::{Deserialize, Serialize};

use super::gripper::{GripperAction, GripperSpec};
use crate::camera::Camera;
use crate::families::{colors, object, BACKGROUNDS};
use crate::rng::Rng;
use crate::scene::{SceneSpec, Shape};

/// The two manipulation tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Push,
    PickPlace,
}

impl Task {
    pub const ALL: [Task; 2] = [Task::Push, Task::PickPlace];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Task::Push => "push",
            Task::PickPlace => "pick-place",
        }
    }

    pub fn parse(name: &str) -> Option<Task> {
        Task::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// The target zone: the floor between `x0` and `x1`, drawn in `color` (a colour no object has).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ZoneSpec {
    pub x0: f32,
    pub x1: f32,
    pub color: [u8; 3],
}

impl ZoneSpec {
    pub fn center(&self) -> f32 {
        0.5 * (self.x0 + self.x1)
    }
}

/// A fixed wall standing on the floor (drawn in the ground's colour).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WallSpec {
    pub center_x: f32,
    pub half_width: f32,
    pub height: f32,
}

/// What a manipulation scene adds to a scene: the task, its target object, the zone, the wall and the gripper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManipulationSpec {
    pub task: Task,
    /// Index of the object to move into the zone.
    pub target: usize,
    pub zone: ZoneSpec,
    pub wall: Option<WallSpec>,
    pub gripper: GripperSpec,
}

/// The zone's colour: pink, more than the detector's tolerance away from every object colour and the ground.
pub const ZONE_COLOR: [u8; 3] = [200, 90, 160];
/// The gripper's colour: light steel, unlike every object colour.
pub const GRIPPER_COLOR: [u8; 3] = [170, 170, 190];

/// Frames at the end of an episode in which the object must be in the zone.
pub const SETTLE_FRAMES: usize = 4;

/// The scene of `task` from `seed`; `aspect` = image height / width.
pub fn task_scene(task: Task, seed: u64, aspect: f32) -> SceneSpec {
    let mut rng = Rng::new(seed ^ 0x0067_7269_7070_6572);
    let width = rng.range(3.0, 3.6);
    let height = width * aspect;
    let color = colors(&mut rng, 1)[0];
    let shape = Shape::Box {
        half_width: rng.range(0.14, 0.2),
        half_height: rng.range(0.12, 0.2),
    };
    let Shape::Box {
        half_width: hw,
        half_height: hh,
    } = shape
    else {
        unreachable!("a box")
    };
    // Object on one side, zone on the other; mirrored half of the time.
    let mirror = rng.chance(0.5);
    let side = |x: f32| if mirror { width - x } else { x };
    // Far enough from the edge for the gripper to get behind the object (its palm stays in the world).
    let object_x = side(rng.range(0.85, 1.25));
    let zone_half = hw + rng.range(0.12, 0.2);
    let zone_x = side(width * rng.range(0.7, 0.8));
    let mut o = object(&mut rng, color, shape, [object_x, hh], [0.0, 0.0]);
    o.density = rng.range(0.5, 2.0);
    o.restitution = rng.range(0.05, 0.2);
    o.friction = rng.range(0.4, 0.9);
    let wall = (task == Task::PickPlace).then(|| WallSpec {
        center_x: 0.5 * (object_x + zone_x),
        half_width: 0.05,
        height: 2.0 * hh + rng.range(0.15, 0.3),
    });
    let position = [width * rng.range(0.4, 0.6), height * rng.range(0.6, 0.72)];
    let gripper = GripperSpec::standard(position, GRIPPER_COLOR);
    SceneSpec {
        family: "gripper".into(),
        seed,
        gravity: 9.81,
        width,
        height,
        ground: true,
        ground_friction: rng.range(0.4, 0.8),
        ground_restitution: 0.1,
        background: BACKGROUNDS[rng.index(BACKGROUNDS.len())],
        ground_color: [120, 110, 100],
        objects: vec![o],
        ramp: None,
        pendulum: None,
        occluder: None,
        agent: None,
        manipulation: Some(ManipulationSpec {
            task,
            target: 0,
            zone: ZoneSpec {
                x0: zone_x - zone_half,
                x1: zone_x + zone_half,
                color: ZONE_COLOR,
            },
            wall,
            gripper,
        }),
    }
}

/// Judges, frame by frame, whether the target object is in the zone from its image position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZoneJudge {
    /// The zone's columns (pixels).
    pub x0_px: f64,
    pub x1_px: f64,
    /// The ground line's row (pixels).
    pub ground_px: f64,
    /// Highest the object's centre may be above the ground line and still rest on the floor (pixels).
    pub rest_px: f64,
}

impl ZoneJudge {
    /// The judge of a manipulation scene seen by `camera`; `None` for other scenes.
    pub fn new(scene: &SceneSpec, camera: &Camera) -> Option<Self> {
        let m = scene.manipulation.as_ref()?;
        let target = scene.objects.get(m.target)?;
        // A box resting on the floor, on any side: its centre is at most its half diagonal up.
        let extent = match target.shape {
            Shape::Circle { radius } => radius,
            Shape::Box {
                half_width,
                half_height,
            } => half_width.hypot(half_height),
        };
        Some(Self {
            x0_px: camera.to_pixel([m.zone.x0, 0.0])[0] as f64,
            x1_px: camera.to_pixel([m.zone.x1, 0.0])[0] as f64,
            ground_px: camera.to_pixel([0.0, 0.0])[1] as f64,
            rest_px: extent as f64 * camera.scale as f64 + 1.5,
        })
    }

    /// How far (pixels) `center` is from the boundary of [`Self::in_zone`]'s region: positive inside, negative
    /// outside. A detector that finds centres to within a pixel can judge differently from the true state only
    /// where this is under a pixel.
    pub fn margin_px(&self, center: [f64; 2]) -> f64 {
        let [x, y] = center;
        (x - self.x0_px)
            .min(self.x1_px - x)
            .min(self.rest_px - (self.ground_px - y))
    }

    /// Whether an object seen at `center` (pixels; `None`: not seen) is in the zone, resting on the floor.
    pub fn in_zone(&self, center: Option<[f64; 2]>) -> bool {
        center.is_some_and(|[x, y]| {
            x >= self.x0_px && x <= self.x1_px && self.ground_px - y <= self.rest_px
        })
    }
}

/// Success and completion from the per-frame in-zone judgements of an episode.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Success {
    pub success: bool,
    /// The first frame from which the object stays in the zone to the end (when successful).
    pub completion_frame: Option<usize>,
}

impl Success {
    /// Successful when the object is in the zone in each of the last [`SETTLE_FRAMES`] frames.
    pub fn judge(in_zone: &[bool]) -> Self {
        let streak = in_zone.iter().rev().take_while(|&&b| b).count();
        let success = streak >= SETTLE_FRAMES.min(in_zone.len()) && streak > 0;
        Self {
            success,
            completion_frame: success.then(|| in_zone.len() - streak),
        }
    }
}

/// The effort of an episode's actions (m²/s): the sum over frames of the palm tip's squared speed times the
/// frame's duration, `Σ (dx² + dy² + (r dθ)²) · fps` with `r` the palm's half width (so a turn costs what the
/// palm's end travels). It is proportional to the kinetic energy a unit mass moved along would take, depends on
/// the actions alone, and so is the same whichever world the actions run in.
pub fn effort(actions: &[GripperAction], spec: &GripperSpec, fps: f32) -> f64 {
    let r = spec.palm_half[0] as f64;
    actions
        .iter()
        .map(|a| {
            let (dx, dy, dt) = (a.dx() as f64, a.dy() as f64, a.dtheta() as f64);
            (dx * dx + dy * dy + r * r * dt * dt) * fps as f64
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_needs_the_last_frames_in_the_zone_and_completion_is_where_they_start() {
        let s = Success::judge(&[false, true, false, true, true, true, true]);
        assert!(s.success);
        assert_eq!(s.completion_frame, Some(3));
        let s = Success::judge(&[true, true, true, true, true, false]);
        assert!(!s.success && s.completion_frame.is_none());
        assert!(!Success::judge(&[false, true, true, true]).success);
        assert!(!Success::judge(&[]).success);
    }

    #[test]
    fn task_names_round_trip_and_scenes_are_deterministic() {
        for t in Task::ALL {
            assert_eq!(Task::parse(t.name()), Some(t));
            assert_eq!(task_scene(t, 3, 1.0), task_scene(t, 3, 1.0));
            assert_ne!(task_scene(t, 3, 1.0), task_scene(t, 4, 1.0));
        }
        assert!(task_scene(Task::PickPlace, 1, 1.0)
            .manipulation
            .unwrap()
            .wall
            .is_some());
        assert!(task_scene(Task::Push, 1, 1.0)
            .manipulation
            .unwrap()
            .wall
            .is_none());
    }

    #[test]
    fn the_zone_and_gripper_colours_are_far_from_every_object_colour() {
        for (_, c) in crate::families::COLORS {
            for other in [ZONE_COLOR, GRIPPER_COLOR] {
                let d: f32 = (0..3)
                    .map(|i| (c[i] as f32 - other[i] as f32).powi(2))
                    .sum::<f32>()
                    .sqrt();
                assert!(d > 60.0, "{c:?} vs {other:?}: {d}");
            }
        }
    }

    #[test]
    fn effort_sums_squared_speeds() {
        let spec = task_scene(Task::Push, 0, 1.0).manipulation.unwrap().gripper;
        let a = [GripperAction::new(0.1, 0.0, 0.0, 1.0); 4];
        assert!((effort(&a, &spec, 10.0) - 4.0 * 0.01 * 10.0).abs() < 1e-6);
        assert_eq!(effort(&[GripperAction::default()], &spec, 10.0), 0.0);
    }
}

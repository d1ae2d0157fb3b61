//! A scripted policy run in the simulator, closed loop on the simulator's state, and what a clip records of it.

use serde::{Deserialize, Serialize};

use super::gripper::{GripperAction, GripperState, MODEL_ACTION_DIM};
use super::policy::{Observation, ScriptedPolicy, Skill};
use super::task::{effort, Success, Task, ZoneJudge};
use crate::camera::Camera;
use crate::scene::{SceneSpec, Shape};
use crate::sim::{Simulation, Trajectory};

/// The actions and states of a manipulation clip, beside its ground truth (the objects' states are its tracks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManipulationRecord {
    pub task: Task,
    /// The scripted policy that drove the gripper.
    pub skill: Skill,
    /// The clamped action applied from frame f to frame f + 1 (one fewer than the frames):
    /// `[dx (m), dy (m), dtheta (rad), grip (0 open .. 1 closed)]`.
    pub actions: Vec<GripperAction>,
    /// The gripper at every frame.
    pub gripper: Vec<GripperState>,
    /// Per frame, whether the target object is in the zone by its true (projected) position.
    pub in_zone: Vec<bool>,
    pub success: Success,
    /// [`effort`] of the actions (m²/s).
    pub effort: f64,
}

/// A simulated episode.
#[derive(Debug, Clone)]
pub struct Episode {
    pub trajectory: Trajectory,
    pub actions: Vec<GripperAction>,
}

impl Episode {
    /// Frames `start..start + len` and the `len - 1` actions between them: an episode of its own, whose record
    /// judges success and effort on those frames alone.
    pub fn window(&self, start: usize, len: usize) -> Episode {
        let end = (start + len.saturating_sub(1)).min(self.actions.len());
        Episode {
            trajectory: self.trajectory.window(start, len),
            actions: self.actions[start.min(end)..end].to_vec(),
        }
    }
}

/// The half width and height of an object's bounding box.
pub fn half_extents(shape: Shape) -> [f32; 2] {
    match shape {
        Shape::Circle { radius } => [radius, radius],
        Shape::Box {
            half_width,
            half_height,
        } => [half_width, half_height],
    }
}

/// The policy for the target object of a manipulation scene (`None` for other scenes).
pub fn policy_for(scene: &SceneSpec, skill: Skill, fps: f32, seed: u64) -> Option<ScriptedPolicy> {
    let m = scene.manipulation.as_ref()?;
    let target = scene.objects.get(m.target)?;
    Some(ScriptedPolicy::new(
        skill,
        m,
        half_extents(target.shape),
        fps,
        seed,
    ))
}

/// Runs `policy` on `scene` for `frames` frames at `fps`, observing the simulator's state each frame.
pub fn run_episode(
    scene: &SceneSpec,
    policy: &mut ScriptedPolicy,
    frames: usize,
    fps: f32,
) -> Episode {
    let target = scene.manipulation.as_ref().map_or(0, |m| m.target);
    let mut sim = Simulation::new(scene, fps);
    let mut actions = Vec::with_capacity(frames.saturating_sub(1));
    let spec = scene.manipulation.as_ref().map(|m| m.gripper);
    for f in 1..frames {
        let t = sim.trajectory();
        let obs = Observation {
            frame: f - 1,
            gripper: sim.gripper_state().unwrap_or(GripperState {
                position: [0.0; 2],
                angle: 0.0,
                fingers: [0.0; 2],
                grip: 0.0,
                holding: None,
            }),
            object: t
                .states
                .last()
                .and_then(|s| s.get(target))
                .map(|s| s.position),
            fresh: true,
        };
        let action = policy.act(&obs);
        let action = spec.map_or(action, |s| action.clamped(&s, fps));
        sim.advance(action);
        actions.push(action);
    }
    Episode {
        trajectory: sim.finish(),
        actions,
    }
}

/// Per frame, whether the target object's true centre, projected by `camera`, is in the zone.
pub fn state_in_zone(scene: &SceneSpec, trajectory: &Trajectory, camera: &Camera) -> Vec<bool> {
    let (Some(judge), Some(m)) = (ZoneJudge::new(scene, camera), &scene.manipulation) else {
        return vec![false; trajectory.states.len()];
    };
    trajectory
        .states
        .iter()
        .map(|s| {
            let c = camera.to_pixel(s[m.target].position);
            judge.in_zone(Some([c[0] as f64, c[1] as f64]))
        })
        .collect()
}

impl ManipulationRecord {
    /// The actions as an action-conditioned model takes them ([`GripperAction::model_features`], each in the
    /// gripper's frame before it): the rows `orrery generate --actions` reads as `{"actions": rows}`.
    pub fn model_actions(&self) -> Vec<[f32; MODEL_ACTION_DIM]> {
        self.actions
            .iter()
            .zip(&self.gripper)
            .map(|(a, g)| a.model_features(g.angle))
            .collect()
    }

    /// The record of `episode` on `scene` (seen by `camera`), played by `skill`.
    pub fn new(
        scene: &SceneSpec,
        episode: &Episode,
        skill: Skill,
        camera: &Camera,
    ) -> Option<Self> {
        let m = scene.manipulation.as_ref()?;
        let in_zone = state_in_zone(scene, &episode.trajectory, camera);
        Some(Self {
            task: m.task,
            skill,
            actions: episode.actions.clone(),
            gripper: episode.trajectory.gripper.clone(),
            success: Success::judge(&in_zone),
            in_zone,
            effort: effort(&episode.actions, &m.gripper, episode.trajectory.fps),
        })
    }
}

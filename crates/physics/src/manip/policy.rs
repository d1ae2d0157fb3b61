//! Scripted closed-loop policies: each frame a policy reads an [`Observation`] (the gripper's own pose and where
//! the target object is seen) and answers the next [`GripperAction`]. One script per task, played at four
//! skills that differ in action noise, reaction delay, aim, approach and patience; every random choice comes
//! from the policy's seed, so an episode is reproducible.
//!
//! - **expert**: no noise or delay, aims at the object's centre, slows down near the target, and when a grip
//!   failed (the object does not rise with the gripper) lets go and tries again;
//! - **good**: a little noise, one frame of delay, small aim errors, still retries;
//! - **sloppy**: more noise, one frame of delay, larger aim errors, sometimes lets go early while carrying,
//!   sometimes pushes too high (tipping the object) or grips off-centre, never retries;
//! - **poor**: much noise, two frames of delay, large aim errors, often lets go early or approaches wrongly,
//!   never retries.

use serde::{Deserialize, Serialize};

use super::gripper::{GripperAction, GripperState};
use super::task::{ManipulationSpec, Task};
use crate::rng::Rng;

/// How well a scripted policy plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skill {
    Expert,
    Good,
    Sloppy,
    Poor,
}

impl Skill {
    pub const ALL: [Skill; 4] = [Skill::Expert, Skill::Good, Skill::Sloppy, Skill::Poor];

    pub fn name(self) -> &'static str {
        match self {
            Skill::Expert => "expert",
            Skill::Good => "good",
            Skill::Sloppy => "sloppy",
            Skill::Poor => "poor",
        }
    }

    pub fn parse(name: &str) -> Option<Skill> {
        Skill::ALL.into_iter().find(|s| s.name() == name)
    }

    fn params(self) -> Params {
        let p = |noise, delay, aim, early_release, wrong, retries| Params {
            noise,
            delay,
            aim,
            early_release,
            wrong,
            retries,
        };
        match self {
            Skill::Expert => p(0.0, 0, 0.0, 0.0, 0.0, 3),
            Skill::Good => p(0.15, 1, 0.04, 0.0, 0.0, 2),
            Skill::Sloppy => p(0.3, 1, 0.12, 0.3, 0.15, 0),
            Skill::Poor => p(0.6, 2, 0.22, 0.6, 0.5, 0),
        }
    }
}

/// What a skill changes.
#[derive(Debug, Clone, Copy)]
struct Params {
    /// Standard deviation of the motion noise, as a fraction of the largest step.
    noise: f32,
    /// Frames between an observation and the action answering it.
    delay: usize,
    /// Largest aim error along x (metres), drawn once per episode.
    aim: f32,
    /// Chance of letting go while carrying (pick and place).
    early_release: f32,
    /// Chance of a wrong approach: pushing near the object's top, gripping off-centre.
    wrong: f32,
    /// Times a failed grip is tried again.
    retries: usize,
}

/// What a policy sees at a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub frame: usize,
    /// The gripper's pose and finger offsets (its `grip` and `holding` are not looked at).
    pub gripper: GripperState,
    /// The target object's centre (world metres), where it is seen; `None` when it is not.
    pub object: Option<[f32; 2]>,
    /// Whether `object` was seen at this frame. A policy that plans several actions from one frame (a world
    /// model's chunk) is given that frame's sighting for each, not fresh: it then predicts where the object is
    /// from where the gripper has gone since (a pushed object ahead of the fingers, a held one with them).
    pub fresh: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    // Push.
    Behind,
    Down,
    Push,
    // Pick and place.
    Above,
    Descend,
    Close,
    Lift,
    Carry,
    Lower,
    Release,
    // Both.
    Retreat,
    Idle,
}

/// A scripted policy for one episode.
#[derive(Debug, Clone)]
pub struct ScriptedPolicy {
    skill: Skill,
    params: Params,
    task: ManipulationSpec,
    /// The object's half width and height.
    object_half: [f32; 2],
    /// Largest step per frame: [dx, dy, dtheta].
    bounds: [f32; 3],
    rng: Rng,
    phase: Phase,
    /// Frames spent in the current phase.
    in_phase: usize,
    grip: f32,
    aim: f32,
    wrong: bool,
    early: Option<f32>,
    retries: usize,
    /// Push direction (+1 right, -1 left), fixed at the first observation.
    dir: f32,
    /// Where the carry started, and the object's height when the lift started.
    carry_from: f32,
    lift_object_y: f32,
    last_y: f32,
    stuck: usize,
    queue: std::collections::VecDeque<GripperAction>,
    started: bool,
    /// The last fresh sighting of the object and where the gripper was then.
    seen: Option<([f32; 2], [f32; 2])>,
}

fn toward(from: f32, to: f32, max: f32) -> f32 {
    (to - from).clamp(-max, max)
}

impl ScriptedPolicy {
    /// A policy of `skill` for the task `task` (whose target object has half sizes `object_half`) at `fps`.
    pub fn new(
        skill: Skill,
        task: &ManipulationSpec,
        object_half: [f32; 2],
        fps: f32,
        seed: u64,
    ) -> Self {
        let params = skill.params();
        let mut rng = Rng::new(seed ^ 0x706f_6c69_6379);
        let aim = rng.range(-params.aim, params.aim.max(1e-9));
        let aim = if params.aim == 0.0 { 0.0 } else { aim };
        let wrong = rng.chance(params.wrong);
        let early = rng
            .chance(params.early_release)
            .then(|| rng.range(0.15, 0.75));
        let first = match task.task {
            Task::Push => Phase::Behind,
            Task::PickPlace => Phase::Above,
        };
        Self {
            skill,
            params,
            task: task.clone(),
            object_half,
            bounds: task.gripper.action_bounds(fps),
            rng,
            phase: first,
            in_phase: 0,
            grip: 0.0,
            aim,
            wrong,
            early,
            retries: params.retries,
            dir: 1.0,
            carry_from: 0.0,
            lift_object_y: 0.0,
            last_y: f32::NAN,
            stuck: 0,
            queue: std::iter::repeat_n(GripperAction::default(), params.delay).collect(),
            started: false,
            seen: None,
        }
    }

    pub fn skill(&self) -> Skill {
        self.skill
    }

    /// The action for the frame after `obs` (after the skill's delay and noise).
    pub fn act(&mut self, obs: &Observation) -> GripperAction {
        let planned = self.plan(obs);
        let noisy = self.add_noise(planned);
        self.queue.push_back(noisy);
        self.queue.pop_front().unwrap_or_default()
    }

    fn normal(&mut self) -> f32 {
        // Box-Muller.
        let u1 = self.rng.range(1e-7, 1.0);
        let u2 = self.rng.range(0.0, 1.0);
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }

    fn add_noise(&mut self, a: GripperAction) -> GripperAction {
        if self.params.noise == 0.0 {
            return a;
        }
        let n = self.params.noise;
        let [bx, by, bt] = self.bounds;
        let (nx, ny, nt) = (self.normal(), self.normal(), self.normal());
        GripperAction::new(
            (a.dx() + n * bx * nx).clamp(-bx, bx),
            (a.dy() + n * by * ny).clamp(-by, by),
            (a.dtheta() + 0.3 * n * bt * nt).clamp(-bt, bt),
            a.grip(),
        )
    }

    fn set(&mut self, phase: Phase) {
        self.phase = phase;
        self.in_phase = 0;
        self.stuck = 0;
    }

    /// The move towards (x, y) at the largest step, the gripper kept upright.
    fn go(&self, g: &GripperState, x: f32, y: f32) -> GripperAction {
        let [bx, by, bt] = self.bounds;
        GripperAction::new(
            toward(g.position[0], x, bx),
            toward(g.position[1], y, by),
            toward(g.angle, 0.0, bt),
            self.grip,
        )
    }

    fn near(g: &GripperState, x: f32, y: f32) -> bool {
        (g.position[0] - x).abs() < 0.02 && (g.position[1] - y).abs() < 0.02
    }

    /// The plan before delay and noise.
    fn plan(&mut self, obs: &Observation) -> GripperAction {
        let g = obs.gripper;
        let object = match (obs.object, obs.fresh) {
            (Some(o), true) => {
                self.seen = Some((o, g.position));
                o
            }
            _ => match self.seen {
                Some((o, at)) => self.predict(o, at, &g),
                // Nothing seen yet: stay.
                None => return GripperAction::new(0.0, 0.0, 0.0, self.grip),
            },
        };
        let moved = (g.position[1] - self.last_y).abs();
        self.stuck = if moved < 0.004 { self.stuck + 1 } else { 0 };
        self.last_y = g.position[1];
        self.in_phase += 1;
        let zone = self.task.zone.center();
        if !self.started {
            self.started = true;
            self.dir = if zone >= object[0] { 1.0 } else { -1.0 };
        }
        let [hw, hh] = self.object_half;
        let spec = self.task.gripper;
        let reach = spec.reach();
        let fw = 2.0 * spec.finger_half[0];
        // Palm heights that put the finger tips at height h.
        let tips_at = |h: f32| h + reach;
        let clear = tips_at(2.0 * hh + 0.15);
        match self.phase {
            Phase::Behind => {
                self.grip = 1.0;
                let x = object[0] - self.dir * (hw + fw + 0.12) + self.aim;
                if Self::near(&g, x, clear) {
                    self.set(Phase::Down);
                }
                self.go(&g, x, clear)
            }
            Phase::Down => {
                let h = if self.wrong { 1.6 * hh } else { 0.03 };
                let y = tips_at(h);
                if (g.position[1] - y).abs() < 0.02 || self.stuck >= 3 {
                    self.set(Phase::Push);
                }
                self.go(&g, g.position[0], y)
            }
            Phase::Push => {
                let target = zone + self.aim;
                let left = self.dir * (target - object[0]);
                if left < 0.03 {
                    self.set(Phase::Retreat);
                    return GripperAction::new(0.0, 0.0, 0.0, self.grip);
                }
                // Slow down near the target (the object slides on a little when the push stops).
                let step = (0.6 * left).min(self.bounds[0]);
                let a = self.go(&g, g.position[0], g.position[1]);
                GripperAction::new(self.dir * step, a.dy(), a.dtheta(), self.grip)
            }
            Phase::Above => {
                self.grip = 0.0;
                let off = if self.wrong { hw + 0.08 } else { 0.0 };
                let x = object[0] + self.aim + off;
                let y = tips_at(self.over_wall());
                if Self::near(&g, x, y) {
                    self.set(Phase::Descend);
                }
                self.go(&g, x, y)
            }
            Phase::Descend => {
                let y = tips_at(0.03);
                if (g.position[1] - y).abs() < 0.02 || (self.stuck >= 3 && self.in_phase > 3) {
                    self.set(Phase::Close);
                }
                self.go(&g, g.position[0], y)
            }
            Phase::Close => {
                self.grip = 1.0;
                if g.opening() <= 2.0 * hw + 0.03 || self.in_phase >= 8 {
                    self.lift_object_y = object[1];
                    self.set(Phase::Lift);
                }
                GripperAction::new(0.0, 0.0, 0.0, self.grip)
            }
            Phase::Lift => {
                let y = tips_at(self.over_wall());
                let risen = g.position[1] - tips_at(0.03);
                // The object should rise with the gripper; if it does not, the grip failed.
                if obs.fresh
                    && risen > 0.25
                    && object[1] - self.lift_object_y < 0.5 * risen
                    && self.retries > 0
                {
                    self.retries -= 1;
                    self.grip = 0.0;
                    self.set(Phase::Above);
                    return GripperAction::new(0.0, 0.0, 0.0, self.grip);
                }
                if (g.position[1] - y).abs() < 0.02 {
                    self.carry_from = g.position[0];
                    self.set(Phase::Carry);
                }
                self.go(&g, g.position[0], y)
            }
            Phase::Carry => {
                let x = zone + self.aim;
                let total = (x - self.carry_from).abs().max(1e-3);
                let done = 1.0 - (x - g.position[0]).abs() / total;
                if self.early.is_some_and(|f| done >= f) {
                    self.set(Phase::Release);
                } else if (g.position[0] - x).abs() < 0.02 {
                    self.set(Phase::Lower);
                }
                self.go(&g, x, g.position[1])
            }
            Phase::Lower => {
                let y = tips_at(0.05);
                if (g.position[1] - y).abs() < 0.02 || (self.stuck >= 3 && self.in_phase > 3) {
                    self.set(Phase::Release);
                }
                self.go(&g, g.position[0], y)
            }
            Phase::Release => {
                self.grip = 0.0;
                if g.opening() >= 2.0 * hw + 0.1 || self.in_phase >= 6 {
                    self.set(Phase::Retreat);
                }
                GripperAction::new(0.0, 0.0, 0.0, self.grip)
            }
            Phase::Retreat => {
                let x = g.position[0] - self.dir * 0.2 * f32::from(self.task.task == Task::Push);
                let y = clear;
                if self.in_phase > 4 && Self::near(&g, g.position[0], y) {
                    self.set(Phase::Idle);
                }
                let a = self.go(&g, x, y);
                // Back off first, then up, so a push does not drag the object.
                if self.in_phase <= 4 && self.task.task == Task::Push {
                    GripperAction::new(-self.dir * self.bounds[0] * 0.5, 0.0, a.dtheta(), self.grip)
                } else {
                    a
                }
            }
            Phase::Idle => {
                GripperAction::new(0.0, 0.0, toward(g.angle, 0.0, self.bounds[2]), self.grip)
            }
        }
    }

    /// Where the object seen at `o` (with the gripper at `at`) is now that the gripper is at `g`: pushed ahead of
    /// the fingers while pushing, carried along while held, else where it was.
    fn predict(&self, o: [f32; 2], at: [f32; 2], g: &GripperState) -> [f32; 2] {
        match self.phase {
            Phase::Push => {
                let face = g.position[0]
                    + self.dir * (2.0 * self.task.gripper.finger_half[0] + self.object_half[0]);
                let x = if self.dir > 0.0 {
                    o[0].max(face)
                } else {
                    o[0].min(face)
                };
                [x, o[1]]
            }
            Phase::Lift | Phase::Carry | Phase::Lower => {
                [o[0] + g.position[0] - at[0], o[1] + g.position[1] - at[1]]
            }
            _ => o,
        }
    }

    /// Finger-tip height that carries the object over the wall (or just over itself where there is none).
    fn over_wall(&self) -> f32 {
        let hh = self.object_half[1];
        let wall = self.task.wall.map_or(0.0, |w| w.height);
        wall.max(2.0 * hh) + 0.2
    }
}

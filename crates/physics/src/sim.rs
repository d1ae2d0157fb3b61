//! Simulates a scene with rapier at a fixed physics rate, sub-stepped independently of the video frame rate,
//! recording the state of every object at every video frame and the events that happen between frames.

use std::collections::{HashMap, HashSet};

use rapier2d::prelude::*;
use serde::{Deserialize, Serialize};

use crate::scene::{SceneSpec, Shape};

/// Physics steps per second; each video frame is ceil(rate / fps) sub-steps.
pub const PHYSICS_RATE: f32 = 240.0;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ObjectState {
    pub position: [f32; 2],
    pub angle: f32,
    pub velocity: [f32; 2],
    pub angular_velocity: f32,
}

/// Something that happened, at the first video frame at which it is visible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// Two objects touch (indices into the scene's objects).
    Collision { frame: usize, a: usize, b: usize },
    /// An object touches the ground.
    HitsGround { frame: usize, object: usize },
    /// An object touches the ramp.
    HitsRamp { frame: usize, object: usize },
    /// An object touches the agent's paddle.
    Pushed { frame: usize, object: usize },
    /// An object's centre leaves the visible world.
    LeavesFrame { frame: usize, object: usize },
    /// An object that was moving comes to rest.
    Stops { frame: usize, object: usize },
    /// A block's tilt passes 45 degrees.
    FallsOver { frame: usize, object: usize },
}

impl Event {
    pub fn frame(&self) -> usize {
        match *self {
            Event::Collision { frame, .. }
            | Event::HitsGround { frame, .. }
            | Event::HitsRamp { frame, .. }
            | Event::Pushed { frame, .. }
            | Event::LeavesFrame { frame, .. }
            | Event::Stops { frame, .. }
            | Event::FallsOver { frame, .. } => frame,
        }
    }
}

/// The simulated clip: per frame, the state of every object (and of the agent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    pub fps: f32,
    pub substeps: usize,
    pub states: Vec<Vec<ObjectState>>,
    pub agent: Vec<[f32; 2]>,
    pub events: Vec<Event>,
}

/// What a collider is, for event reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Part {
    Object(usize),
    Ground,
    Ramp,
    Agent,
}

fn collider_for(shape: Shape) -> ColliderBuilder {
    match shape {
        Shape::Circle { radius } => ColliderBuilder::ball(radius),
        Shape::Box {
            half_width,
            half_height,
        } => ColliderBuilder::cuboid(half_width, half_height),
    }
}

fn state(body: &RigidBody) -> ObjectState {
    let p = body.translation();
    let v = body.linvel();
    ObjectState {
        position: [p.x, p.y],
        angle: body.rotation().angle(),
        velocity: [v.x, v.y],
        angular_velocity: body.angvel(),
    }
}

/// Simulates `frames` video frames at `fps` (frame 0 is the initial state).
pub fn simulate(scene: &SceneSpec, frames: usize, fps: f32) -> Trajectory {
    let mut world = PhysicsWorld::new();
    world.gravity = Vector::new(0.0, -scene.gravity);
    let substeps = (PHYSICS_RATE / fps).ceil().max(1.0) as usize;
    world.integration_parameters.dt = 1.0 / (fps * substeps as f32);
    let mut parts: HashMap<ColliderHandle, Part> = HashMap::new();

    if scene.ground {
        let ground = ColliderBuilder::cuboid(scene.width * 4.0, 1.0)
            .translation(Vector::new(scene.width / 2.0, -1.0))
            .friction(scene.ground_friction)
            .restitution(scene.ground_restitution);
        parts.insert(world.insert_collider(ground, None), Part::Ground);
    }
    if let Some(r) = scene.ramp {
        let ramp = ColliderBuilder::cuboid(r.half_length, r.half_thickness)
            .translation(Vector::new(r.center[0], r.center[1]))
            .rotation(r.angle)
            .friction(r.friction);
        parts.insert(world.insert_collider(ramp, None), Part::Ramp);
    }
    let mut bodies = Vec::new();
    for (i, o) in scene.objects.iter().enumerate() {
        let body = RigidBodyBuilder::dynamic()
            .translation(Vector::new(o.position[0], o.position[1]))
            .rotation(o.angle)
            .linvel(Vector::new(o.velocity[0], o.velocity[1]))
            .angvel(o.angular_velocity)
            .can_sleep(false)
            .ccd_enabled(true);
        let collider = collider_for(o.shape)
            .density(o.density)
            .restitution(o.restitution)
            .friction(o.friction)
            .restitution_combine_rule(CoefficientCombineRule::Max);
        let (b, c) = world.insert(body, collider);
        parts.insert(c, Part::Object(i));
        bodies.push(b);
    }
    if let Some(p) = scene.pendulum {
        let anchor = world.insert_body(
            RigidBodyBuilder::fixed().translation(Vector::new(p.pivot[0], p.pivot[1])),
        );
        let o = &scene.objects[p.object].position;
        let joint = RevoluteJointBuilder::new()
            .local_anchor2(Vector::new(p.pivot[0] - o[0], p.pivot[1] - o[1]));
        world.insert_impulse_joint(anchor, bodies[p.object], joint);
    }
    let agent = scene.agent.as_ref().map(|a| {
        let body = RigidBodyBuilder::kinematic_velocity_based()
            .translation(Vector::new(a.position[0], a.position[1]));
        let (b, c) = world.insert(
            body,
            ColliderBuilder::cuboid(a.half_width, a.half_height).friction(0.8),
        );
        parts.insert(c, Part::Agent);
        b
    });

    let mut out = Trajectory {
        fps,
        substeps,
        states: Vec::with_capacity(frames),
        agent: Vec::new(),
        events: Vec::new(),
    };
    let mut touching: HashSet<(Part, Part)> = HashSet::new();
    let mut moving = vec![false; bodies.len()];
    let mut stopped = vec![false; bodies.len()];
    // Consecutive slow frames: a pendulum at its turning point is slow for one frame, a body at rest for many.
    let mut slow = vec![0usize; bodies.len()];
    let mut left = vec![false; bodies.len()];
    let mut fallen = vec![false; bodies.len()];
    let contacts = |world: &PhysicsWorld| -> HashSet<(Part, Part)> {
        world
            .narrow_phase
            .contact_pairs()
            .filter(|p| p.has_any_active_contact())
            .filter_map(|p| {
                let (a, b) = (*parts.get(&p.collider1)?, *parts.get(&p.collider2)?);
                Some((a.min(b), a.max(b)))
            })
            .collect()
    };
    for frame in 0..frames {
        // Contacts that begin during this frame's sub-steps (an elastic bounce may last one sub-step).
        let mut began: Vec<(Part, Part)> = Vec::new();
        if frame > 0 {
            if let (Some(h), Some(a)) = (agent, scene.agent.as_ref()) {
                let vx = a.actions.get(frame - 1).copied().unwrap_or(0.0);
                world.bodies[h].set_linvel(Vector::new(vx, 0.0), true);
            }
            for _ in 0..substeps {
                world.step();
                let now = contacts(&world);
                began.extend(now.difference(&touching).copied());
                touching = now;
            }
        } else {
            touching = contacts(&world);
        }
        began.sort();
        began.dedup();
        for pair in began {
            let event = match pair {
                (Part::Object(a), Part::Object(b)) => Event::Collision {
                    frame,
                    a: a.min(b),
                    b: a.max(b),
                },
                (Part::Object(o), Part::Ground) | (Part::Ground, Part::Object(o)) => {
                    Event::HitsGround { frame, object: o }
                }
                (Part::Object(o), Part::Ramp) | (Part::Ramp, Part::Object(o)) => {
                    Event::HitsRamp { frame, object: o }
                }
                (Part::Object(o), Part::Agent) | (Part::Agent, Part::Object(o)) => {
                    Event::Pushed { frame, object: o }
                }
                _ => continue,
            };
            out.events.push(event);
        }
        let states: Vec<ObjectState> = bodies.iter().map(|b| state(&world.bodies[*b])).collect();
        for (i, s) in states.iter().enumerate() {
            let speed = (s.velocity[0].powi(2) + s.velocity[1].powi(2)).sqrt();
            if speed > 0.3 {
                moving[i] = true;
                stopped[i] = false;
            }
            slow[i] = if speed < 0.05 && s.angular_velocity.abs() < 0.1 {
                slow[i] + 1
            } else {
                0
            };
            if moving[i] && !stopped[i] && slow[i] == 3 {
                stopped[i] = true;
                out.events.push(Event::Stops {
                    frame: frame - 2,
                    object: i,
                });
            }
            let [x, y] = s.position;
            if !left[i] && (x < 0.0 || x > scene.width || y > scene.height * 1.5) {
                left[i] = true;
                out.events.push(Event::LeavesFrame { frame, object: i });
            }
            let tilt = (s.angle - scene.objects[i].angle).rem_euclid(std::f32::consts::TAU);
            let tilt = tilt.min(std::f32::consts::TAU - tilt);
            if matches!(scene.objects[i].shape, Shape::Box { .. })
                && !fallen[i]
                && tilt > std::f32::consts::FRAC_PI_4
            {
                fallen[i] = true;
                out.events.push(Event::FallsOver { frame, object: i });
            }
        }
        out.states.push(states);
        if let Some(h) = agent {
            let p = world.bodies[h].translation();
            out.agent.push([p.x, p.y]);
        }
    }
    out
}

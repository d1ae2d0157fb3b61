//! Simulates a scene with rapier at a fixed physics rate, sub-stepped independently of the video frame rate,
//! recording the state of every object at every video frame and the events that happen between frames. A
//! [`Simulation`] advances one frame at a time, so that a policy can choose each action from what it sees.

use std::collections::{HashMap, HashSet};

use rapier2d::prelude::*;
use serde::{Deserialize, Serialize};

use crate::manip::{GripperAction, GripperSpec, GripperState, GRIP_HOLD};
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
    /// An object touches a manipulation scene's wall.
    HitsWall { frame: usize, object: usize },
    /// The gripper takes hold of an object.
    Grasped { frame: usize, object: usize },
    /// The gripper lets go of an object.
    Released { frame: usize, object: usize },
}

impl Event {
    pub fn frame(&self) -> usize {
        // Events are a few integers: the copy is what one accessor for both costs.
        *self.clone().frame_mut()
    }

    fn frame_mut(&mut self) -> &mut usize {
        match self {
            Event::Collision { frame, .. }
            | Event::HitsGround { frame, .. }
            | Event::HitsRamp { frame, .. }
            | Event::Pushed { frame, .. }
            | Event::LeavesFrame { frame, .. }
            | Event::Stops { frame, .. }
            | Event::FallsOver { frame, .. }
            | Event::HitsWall { frame, .. }
            | Event::Grasped { frame, .. }
            | Event::Released { frame, .. } => frame,
        }
    }
}

/// `v[start..start + len]`, or `v` itself where it is empty (a per-frame record the scene does not keep).
fn frames_of<T: Clone>(v: &[T], start: usize, len: usize) -> Vec<T> {
    if v.is_empty() {
        return Vec::new();
    }
    v[start.min(v.len())..(start + len).min(v.len())].to_vec()
}

impl Trajectory {
    /// Frames `start..start + len` as a trajectory of their own: the events in them, numbered from `start`.
    pub fn window(&self, start: usize, len: usize) -> Trajectory {
        Trajectory {
            fps: self.fps,
            substeps: self.substeps,
            states: frames_of(&self.states, start, len),
            agent: frames_of(&self.agent, start, len),
            gripper: frames_of(&self.gripper, start, len),
            events: self
                .events
                .iter()
                .filter(|e| (start..start + len).contains(&e.frame()))
                .map(|e| {
                    let mut e = e.clone();
                    *e.frame_mut() -= start;
                    e
                })
                .collect(),
        }
    }
}

/// The simulated clip: per frame, the state of every object (and of the paddle or the gripper).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    pub fps: f32,
    pub substeps: usize,
    pub states: Vec<Vec<ObjectState>>,
    pub agent: Vec<[f32; 2]>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gripper: Vec<GripperState>,
    pub events: Vec<Event>,
}

/// What a collider is, for event reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Part {
    Object(usize),
    Ground,
    Ramp,
    Agent,
    Wall,
    Gripper,
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

/// Simulates `frames` video frames at `fps` (frame 0 is the initial state); a gripper stays still with its fingers
/// open (see [`simulate_actions`] to drive it).
pub fn simulate(scene: &SceneSpec, frames: usize, fps: f32) -> Trajectory {
    simulate_actions(scene, frames, fps, &[])
}

/// Simulates `frames` video frames at `fps`, the gripper (if the scene has one) driven by `actions[f - 1]` from
/// frame f - 1 to frame f (missing actions are zero).
pub fn simulate_actions(
    scene: &SceneSpec,
    frames: usize,
    fps: f32,
    actions: &[GripperAction],
) -> Trajectory {
    let mut sim = Simulation::new(scene, fps);
    for f in 1..frames {
        sim.advance(actions.get(f - 1).copied().unwrap_or_default());
    }
    let mut out = sim.finish();
    out.states.truncate(frames);
    out.agent.truncate(frames);
    out.gripper.truncate(frames);
    out
}

/// The gripper's body in the world: one dynamic body (no gravity) with the palm and two finger colliders, whose
/// velocity is set every physics step to follow the commanded pose, so that floor, walls and objects stop it.
struct GripperBody {
    spec: GripperSpec,
    body: RigidBodyHandle,
    fingers: [ColliderHandle; 2],
    offsets: [f32; 2],
    grip: f32,
    /// The held object, the joint that holds it and the object's collider.
    grasp: Option<(usize, ImpulseJointHandle, ColliderHandle)>,
}

/// A simulation advanced one video frame at a time, recording every frame.
pub struct Simulation {
    scene: SceneSpec,
    world: PhysicsWorld,
    parts: HashMap<ColliderHandle, Part>,
    bodies: Vec<RigidBodyHandle>,
    agent: Option<RigidBodyHandle>,
    gripper: Option<GripperBody>,
    touching: HashSet<(Part, Part)>,
    moving: Vec<bool>,
    stopped: Vec<bool>,
    /// Consecutive slow frames: a pendulum at its turning point is slow for one frame, a body at rest for many.
    slow: Vec<usize>,
    left: Vec<bool>,
    fallen: Vec<bool>,
    frame: usize,
    out: Trajectory,
}

fn contacts(world: &PhysicsWorld, parts: &HashMap<ColliderHandle, Part>) -> HashSet<(Part, Part)> {
    world
        .narrow_phase
        .contact_pairs()
        .filter(|p| p.has_any_active_contact())
        .filter_map(|p| {
            let (a, b) = (*parts.get(&p.collider1)?, *parts.get(&p.collider2)?);
            Some((a.min(b), a.max(b)))
        })
        .collect()
}

impl Simulation {
    /// Builds the world of `scene` and records frame 0.
    pub fn new(scene: &SceneSpec, fps: f32) -> Self {
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
        if let Some(w) = scene.manipulation.as_ref().and_then(|m| m.wall) {
            let wall = ColliderBuilder::cuboid(w.half_width, w.height / 2.0)
                .translation(Vector::new(w.center_x, w.height / 2.0))
                .friction(scene.ground_friction);
            parts.insert(world.insert_collider(wall, None), Part::Wall);
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
        let gripper = scene.manipulation.as_ref().map(|m| {
            let g = m.gripper;
            let body = world.insert_body(
                RigidBodyBuilder::dynamic()
                    .translation(Vector::new(g.position[0], g.position[1]))
                    .rotation(g.angle)
                    .gravity_scale(0.0)
                    .can_sleep(false)
                    .ccd_enabled(true),
            );
            let palm = world.insert_collider(
                ColliderBuilder::cuboid(g.palm_half[0], g.palm_half[1])
                    .density(g.density)
                    .friction(g.friction),
                Some(body),
            );
            parts.insert(palm, Part::Gripper);
            let offset = g.max_finger_offset();
            let fingers = [0, 1].map(|i| {
                let c = g.finger_center(i, offset);
                let finger = world.insert_collider(
                    ColliderBuilder::cuboid(g.finger_half[0], g.finger_half[1])
                        .position(Pose::new(Vector::new(c[0], c[1]), 0.0))
                        .density(g.density)
                        .friction(g.friction),
                    Some(body),
                );
                parts.insert(finger, Part::Gripper);
                finger
            });
            GripperBody {
                spec: g,
                body,
                fingers,
                offsets: [offset; 2],
                grip: 0.0,
                grasp: None,
            }
        });
        let substeps_out = substeps;
        let n = bodies.len();
        let mut sim = Self {
            scene: scene.clone(),
            world,
            parts,
            bodies,
            agent,
            gripper,
            touching: HashSet::new(),
            moving: vec![false; n],
            stopped: vec![false; n],
            slow: vec![0; n],
            left: vec![false; n],
            fallen: vec![false; n],
            frame: 0,
            out: Trajectory {
                fps,
                substeps: substeps_out,
                states: Vec::new(),
                agent: Vec::new(),
                gripper: Vec::new(),
                events: Vec::new(),
            },
        };
        sim.touching = contacts(&sim.world, &sim.parts);
        sim.record(Vec::new());
        sim
    }

    /// The frame last recorded.
    pub fn frame(&self) -> usize {
        self.frame
    }

    /// What has been recorded so far.
    pub fn trajectory(&self) -> &Trajectory {
        &self.out
    }

    /// The gripper's state at the last recorded frame.
    pub fn gripper_state(&self) -> Option<GripperState> {
        self.out.gripper.last().copied()
    }

    /// The recorded trajectory.
    pub fn finish(self) -> Trajectory {
        self.out
    }

    /// Simulates one more video frame, the gripper (if any) driven by `action` (clamped to its limits), the
    /// paddle by the scene's next action, and records it.
    pub fn advance(&mut self, action: GripperAction) {
        self.frame += 1;
        let frame = self.frame;
        let fps = self.out.fps;
        let substeps = self.out.substeps;
        if let (Some(h), Some(a)) = (self.agent, self.scene.agent.as_ref()) {
            let vx = a.actions.get(frame - 1).copied().unwrap_or(0.0);
            self.world.bodies[h].set_linvel(Vector::new(vx, 0.0), true);
        }
        // The gripper's commanded pose at the end of the frame, from where it is now.
        let plan = self.gripper.as_mut().map(|g| {
            let a = action.clamped(&g.spec, fps);
            g.grip = a.grip();
            let b = &self.world.bodies[g.body];
            let (p, angle) = (b.translation(), b.rotation().angle());
            let (m, w, h) = (g.spec.palm_half[0], self.scene.width, self.scene.height);
            let goal = [
                (p.x + a.dx()).clamp(m, (w - m).max(m)),
                (p.y + a.dy()).min(h - g.spec.palm_half[1]),
                (angle + a.dtheta()).clamp(-g.spec.max_angle, g.spec.max_angle),
            ];
            ([p.x, p.y, angle], goal)
        });
        let mut began: Vec<(Part, Part)> = Vec::new();
        for k in 0..substeps {
            if let (Some(g), Some((from, to))) = (self.gripper.as_mut(), plan) {
                let t = (k + 1) as f32 / substeps as f32;
                let target = [0, 1, 2].map(|i| from[i] + t * (to[i] - from[i]));
                drive_gripper(&mut self.world, &self.parts, g, target);
            }
            self.world.step();
            if let Some(g) = self.gripper.as_mut() {
                if let Some(e) = update_grasp(&mut self.world, &self.parts, g, frame) {
                    self.out.events.push(e);
                }
            }
            let now = contacts(&self.world, &self.parts);
            began.extend(now.difference(&self.touching).copied());
            self.touching = now;
        }
        began.sort();
        began.dedup();
        self.record(began);
    }

    /// Records the current frame: the events of contacts that began, every object's state and the agents'.
    fn record(&mut self, began: Vec<(Part, Part)>) {
        let frame = self.frame;
        let gripper_family = self.gripper.is_some();
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
                (Part::Object(o), Part::Wall) | (Part::Wall, Part::Object(o)) => {
                    Event::HitsWall { frame, object: o }
                }
                // A held object touches the fingers all along: only contacts of free objects are pushes.
                (Part::Object(o), Part::Gripper) | (Part::Gripper, Part::Object(o))
                    if gripper_family
                        && self
                            .gripper
                            .as_ref()
                            .is_none_or(|g| g.grasp.is_none_or(|(h, _, _)| h != o)) =>
                {
                    Event::Pushed { frame, object: o }
                }
                _ => continue,
            };
            self.out.events.push(event);
        }
        let world = &self.world;
        let states: Vec<ObjectState> = self
            .bodies
            .iter()
            .map(|b| state(&world.bodies[*b]))
            .collect();
        for (i, s) in states.iter().enumerate() {
            let speed = (s.velocity[0].powi(2) + s.velocity[1].powi(2)).sqrt();
            if speed > 0.3 {
                self.moving[i] = true;
                self.stopped[i] = false;
            }
            self.slow[i] = if speed < 0.05 && s.angular_velocity.abs() < 0.1 {
                self.slow[i] + 1
            } else {
                0
            };
            if self.moving[i] && !self.stopped[i] && self.slow[i] == 3 {
                self.stopped[i] = true;
                self.out.events.push(Event::Stops {
                    frame: frame - 2,
                    object: i,
                });
            }
            let [x, y] = s.position;
            if !self.left[i] && (x < 0.0 || x > self.scene.width || y > self.scene.height * 1.5) {
                self.left[i] = true;
                self.out
                    .events
                    .push(Event::LeavesFrame { frame, object: i });
            }
            let tilt = (s.angle - self.scene.objects[i].angle).rem_euclid(std::f32::consts::TAU);
            let tilt = tilt.min(std::f32::consts::TAU - tilt);
            if matches!(self.scene.objects[i].shape, Shape::Box { .. })
                && !self.fallen[i]
                && tilt > std::f32::consts::FRAC_PI_4
            {
                self.fallen[i] = true;
                self.out.events.push(Event::FallsOver { frame, object: i });
            }
        }
        self.out.states.push(states);
        if let Some(h) = self.agent {
            let p = self.world.bodies[h].translation();
            self.out.agent.push([p.x, p.y]);
        }
        if let Some(g) = &self.gripper {
            let b = &self.world.bodies[g.body];
            let p = b.translation();
            self.out.gripper.push(GripperState {
                position: [p.x, p.y],
                angle: b.rotation().angle(),
                fingers: g.offsets,
                grip: g.grip,
                holding: g.grasp.map(|(o, _, _)| o),
            });
        }
    }
}

/// The object finger `finger` touches, if any.
fn touched(
    world: &PhysicsWorld,
    parts: &HashMap<ColliderHandle, Part>,
    finger: ColliderHandle,
) -> Option<usize> {
    world
        .narrow_phase
        .contact_pairs_with(finger)
        .filter(|p| p.has_any_active_contact())
        .find_map(|p| {
            let other = if p.collider1 == finger {
                p.collider2
            } else {
                p.collider1
            };
            match parts.get(&other) {
                Some(Part::Object(o)) => Some(*o),
                _ => None,
            }
        })
}

/// One physics step of the gripper's control: fingers towards the commanded opening (a closing finger stops at
/// the object it touches; a held object keeps them where they are), and the body's velocity set so that its
/// origin reaches `target` (x, y, angle) at the end of the step.
fn drive_gripper(
    world: &mut PhysicsWorld,
    parts: &HashMap<ColliderHandle, Part>,
    g: &mut GripperBody,
    target: [f32; 3],
) {
    let dt = world.integration_parameters.dt;
    let goal = (1.0 - g.grip) * g.spec.max_finger_offset();
    let step = g.spec.finger_speed * dt;
    if g.grasp.is_none() || g.grip < GRIP_HOLD {
        for i in 0..2 {
            let o = g.offsets[i];
            let next = if goal < o {
                if touched(world, parts, g.fingers[i]).is_some() {
                    o
                } else {
                    (o - step).max(goal)
                }
            } else {
                (o + step).min(goal)
            };
            if next != o {
                g.offsets[i] = next;
                let c = g.spec.finger_center(i, next);
                if let Some(col) = world.colliders.get_mut(g.fingers[i]) {
                    col.set_position_wrt_parent(Pose::new(Vector::new(c[0], c[1]), 0.0));
                }
            }
        }
    }
    let body = &world.bodies[g.body];
    let p = body.translation();
    let angle = body.rotation().angle();
    let omega = (target[2] - angle) / dt;
    let mut v_origin = Vector::new((target[0] - p.x) / dt, (target[1] - p.y) / dt);
    // The gripper gives way where it would crush: it does not press a held object into what that touches, nor a
    // free object into the floor, the wall or a held object (velocity control alone has no force limit).
    for n in blocked_directions(world, parts, g) {
        let into = v_origin.dot(n);
        if into > 0.0 {
            v_origin -= n * into;
        }
    }
    let body = &mut world.bodies[g.body];
    // Rapier's linear velocity is the centre of mass's: the origin's plus omega x (com - origin).
    let r = body.center_of_mass() - p;
    body.set_linvel(v_origin + Vector::new(-omega * r.y, omega * r.x), true);
    body.set_angvel(omega, true);
}

/// The active contact normals of `collider`'s contacts, pointing from it to the other collider, with the other's
/// part.
fn normals_from(
    world: &PhysicsWorld,
    parts: &HashMap<ColliderHandle, Part>,
    collider: ColliderHandle,
) -> Vec<(Vector, ColliderHandle, Option<Part>)> {
    let mut out = Vec::new();
    for pair in world.narrow_phase.contact_pairs_with(collider) {
        if !pair.has_any_active_contact() {
            continue;
        }
        let (other, sign) = if pair.collider1 == collider {
            (pair.collider2, 1.0)
        } else {
            (pair.collider1, -1.0)
        };
        for manifold in pair.manifolds() {
            // Rapier's normal points from collider1 to collider2.
            out.push((
                manifold.data.normal * sign,
                other,
                parts.get(&other).copied(),
            ));
        }
    }
    out
}

/// Directions (unit, world) in which the gripper must not move: into what a held object touches, and into a free
/// object it touches where that object is pressed against the floor, the wall or the held object.
fn blocked_directions(
    world: &PhysicsWorld,
    parts: &HashMap<ColliderHandle, Part>,
    g: &GripperBody,
) -> Vec<Vector> {
    let mut blocked = Vec::new();
    let held = g.grasp.map(|(_, _, c)| c);
    if let Some(h) = held {
        for (n, _, part) in normals_from(world, parts, h) {
            if part != Some(Part::Gripper) {
                blocked.push(n);
            }
        }
    }
    let mut sources: Vec<ColliderHandle> = world.bodies[g.body].colliders().to_vec();
    sources.extend(held);
    for source in sources {
        for (n, other, part) in normals_from(world, parts, source) {
            if !matches!(part, Some(Part::Object(_))) || Some(other) == held {
                continue;
            }
            let pressed = normals_from(world, parts, other).iter().any(|(m, o, p)| {
                let support =
                    matches!(p, Some(Part::Ground | Part::Wall | Part::Ramp)) || Some(*o) == held;
                support && n.dot(*m) > 0.3
            });
            if pressed {
                blocked.push(n);
            }
        }
    }
    blocked
}

/// After a physics step: grips the object both fingers touch when told to hold, lets go when told to open.
fn update_grasp(
    world: &mut PhysicsWorld,
    parts: &HashMap<ColliderHandle, Part>,
    g: &mut GripperBody,
    frame: usize,
) -> Option<Event> {
    match g.grasp {
        Some((object, joint, _)) if g.grip < GRIP_HOLD => {
            world.remove_impulse_joint(joint);
            g.grasp = None;
            Some(Event::Released { frame, object })
        }
        None if g.grip >= GRIP_HOLD => {
            let a = touched(world, parts, g.fingers[0])?;
            let b = touched(world, parts, g.fingers[1])?;
            if a != b {
                return None;
            }
            let (collider, object_body) = world.colliders.iter().find_map(|(h, c)| {
                (parts.get(&h) == Some(&Part::Object(a))).then(|| Some((h, c.parent()?)))?
            })?;
            let gripper_pose = *world.bodies[g.body].position();
            let object_pose = *world.bodies[object_body].position();
            // Held only when the object is between the fingers (not, say, under both finger tips).
            let local = gripper_pose.inverse_transform_point(object_pose.translation);
            let tol = 0.02;
            if local.x < -g.offsets[0] - tol
                || local.x > g.offsets[1] + tol
                || local.y > -g.spec.palm_half[1]
                || local.y < -g.spec.reach()
            {
                return None;
            }
            let joint = FixedJointBuilder::new()
                .local_frame1(gripper_pose.inverse() * object_pose)
                .local_frame2(Pose::IDENTITY)
                .contacts_enabled(false);
            let handle = world.insert_impulse_joint(g.body, object_body, joint);
            g.grasp = Some((a, handle, collider));
            Some(Event::Grasped { frame, object: a })
        }
        _ => None,
    }
}

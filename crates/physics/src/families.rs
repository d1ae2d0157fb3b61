//! Scene families: each turns a seed into a scene that shows one basic phenomenon, with objects varied in shape,
//! size, colour, mass, restitution and friction, and backgrounds and framing varied too.

use crate::rng::Rng;
use crate::scene::{AgentSpec, ObjectSpec, OccluderSpec, PendulumSpec, RampSpec, SceneSpec, Shape};

/// The families of passive worlds and the paddle, by their names on the command line: those a dataset, a training
/// run or a bench takes when none are named.
pub const FAMILIES: [&str; 7] = [
    "fall",
    "ramp",
    "collision",
    "stack",
    "pendulum",
    "occlusion",
    "pusher",
];

/// Families of manipulation worlds (a gripper driven by a scripted policy, [`crate::manip`]), made when named.
pub const MANIPULATION_FAMILIES: [&str; 1] = ["gripper"];

/// Whether `name` is a family ([`FAMILIES`] or [`MANIPULATION_FAMILIES`]).
pub fn is_family(name: &str) -> bool {
    FAMILIES.contains(&name) || MANIPULATION_FAMILIES.contains(&name)
}

/// Every family's name, for error messages.
pub fn all_families() -> String {
    FAMILIES
        .iter()
        .chain(&MANIPULATION_FAMILIES)
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) const COLORS: [(&str, [u8; 3]); 8] = [
    ("red", [220, 40, 40]),
    ("green", [40, 180, 60]),
    ("blue", [40, 80, 230]),
    ("yellow", [240, 210, 30]),
    ("orange", [245, 140, 20]),
    ("purple", [150, 60, 200]),
    ("cyan", [30, 200, 210]),
    ("white", [245, 245, 245]),
];

pub(crate) const BACKGROUNDS: [[u8; 3]; 4] =
    [[30, 30, 38], [52, 58, 70], [22, 40, 34], [60, 44, 40]];

/// Picks `n` distinct colours.
pub(crate) fn colors(rng: &mut Rng, n: usize) -> Vec<(&'static str, [u8; 3])> {
    let mut idx: Vec<usize> = (0..COLORS.len()).collect();
    for i in (1..idx.len()).rev() {
        idx.swap(i, rng.index(i + 1));
    }
    idx.into_iter().take(n).map(|i| COLORS[i]).collect()
}

fn shape(rng: &mut Rng, size: f32, allow_box: bool) -> Shape {
    if allow_box && rng.chance(0.4) {
        Shape::Box {
            half_width: size * rng.range(0.8, 1.2),
            half_height: size * rng.range(0.8, 1.2),
        }
    } else {
        Shape::Circle { radius: size }
    }
}

pub(crate) fn object(
    rng: &mut Rng,
    color: (&str, [u8; 3]),
    shape: Shape,
    position: [f32; 2],
    velocity: [f32; 2],
) -> ObjectSpec {
    ObjectSpec {
        name: format!("{} {}", color.0, shape.name()),
        shape,
        color: color.1,
        color_name: color.0.into(),
        density: rng.range(0.5, 3.0),
        restitution: rng.range(0.1, 0.85),
        friction: rng.range(0.1, 0.9),
        position,
        angle: 0.0,
        velocity,
        angular_velocity: 0.0,
    }
}

/// Generates a scene of `family` from `seed`; `aspect` = image height / width.
pub fn generate(family: &str, seed: u64, aspect: f32, frames: usize) -> Option<SceneSpec> {
    let mut rng = Rng::new(seed);
    let width = rng.range(3.0, 5.0);
    let height = width * aspect;
    let mut scene = SceneSpec {
        family: family.into(),
        seed,
        gravity: 9.81,
        width,
        height,
        ground: true,
        ground_friction: rng.range(0.3, 0.9),
        ground_restitution: rng.range(0.2, 0.7),
        background: BACKGROUNDS[rng.index(BACKGROUNDS.len())],
        ground_color: [120, 110, 100],
        objects: Vec::new(),
        ramp: None,
        pendulum: None,
        occluder: None,
        agent: None,
        manipulation: None,
    };
    let size = width * rng.range(0.04, 0.07);
    match family {
        "fall" => {
            let n = 1 + rng.index(3);
            for (i, c) in colors(&mut rng, n).into_iter().enumerate() {
                let x = width * (i as f32 + 0.5 + rng.range(-0.2, 0.2)) / n as f32;
                let y = height * rng.range(0.45, 0.8);
                let s = shape(&mut rng, size, true);
                let vx = rng.range(-0.3, 0.3);
                scene
                    .objects
                    .push(object(&mut rng, c, s, [x, y], [vx, 0.0]));
            }
        }
        "ramp" => {
            let angle = rng.range(0.25, 0.5);
            let half_length = width * 0.3;
            let center = [width * 0.3, half_length * angle.sin() + 0.05];
            scene.ramp = Some(RampSpec {
                center,
                half_length,
                half_thickness: 0.05,
                angle: -angle,
                friction: rng.range(0.2, 0.8),
            });
            let c = colors(&mut rng, 1)[0];
            let s = shape(&mut rng, size, true);
            let top = [
                center[0] - half_length * angle.cos() * 0.85,
                center[1] + half_length * angle.sin() * 0.85 + size * 1.6,
            ];
            scene.objects.push(object(&mut rng, c, s, top, [0.0, 0.0]));
        }
        "collision" => {
            let cs = colors(&mut rng, 2);
            let speed = rng.range(1.0, 2.5);
            for (i, c) in cs.into_iter().enumerate() {
                let scaled = size * rng.range(0.8, 1.4);
                let s = shape(&mut rng, scaled, false);
                let r = match s {
                    Shape::Circle { radius } => radius,
                    _ => size,
                };
                let x = if i == 0 { width * 0.2 } else { width * 0.8 };
                let v = if i == 0 {
                    speed
                } else {
                    -speed * rng.range(0.5, 1.2)
                };
                scene.objects.push(object(&mut rng, c, s, [x, r], [v, 0.0]));
            }
        }
        "stack" => {
            let n = 2 + rng.index(3);
            let cs = colors(&mut rng, n + 1);
            let base = width * rng.range(0.45, 0.6);
            let mut y = 0.0;
            for c in cs.iter().take(n) {
                let hw = size * rng.range(1.0, 1.6);
                let hh = size * rng.range(0.8, 1.2);
                let x = base + rng.range(-0.9, 0.9) * hw;
                let mut o = object(
                    &mut rng,
                    *c,
                    Shape::Box {
                        half_width: hw,
                        half_height: hh,
                    },
                    [x, y + hh],
                    [0.0, 0.0],
                );
                o.restitution = 0.1;
                scene.objects.push(o);
                y += 2.0 * hh;
            }
            if rng.chance(0.5) {
                let s = Shape::Circle { radius: size * 0.8 };
                let vx = rng.range(2.0, 4.0);
                scene.objects.push(object(
                    &mut rng,
                    cs[n],
                    s,
                    [width * 0.08, y * 0.6 + size],
                    [vx, 1.0],
                ));
            }
        }
        "pendulum" => {
            let c = colors(&mut rng, 1)[0];
            let length = height * rng.range(0.3, 0.5);
            let pivot = [width * 0.5, height * 0.8];
            let theta = rng.range(0.4, 1.1) * if rng.chance(0.5) { 1.0 } else { -1.0 };
            let pos = [
                pivot[0] + length * theta.sin(),
                pivot[1] - length * theta.cos(),
            ];
            let s = Shape::Circle { radius: size };
            scene.objects.push(object(&mut rng, c, s, pos, [0.0, 0.0]));
            scene.pendulum = Some(PendulumSpec { object: 0, pivot });
        }
        "occlusion" => {
            let c = colors(&mut rng, 1)[0];
            let s = Shape::Circle { radius: size };
            let duration = frames as f32 / 16.0;
            let speed = width * rng.range(0.5, 0.8) / duration.max(0.5);
            let mut o = object(&mut rng, c, s, [width * 0.12, size], [speed, 0.0]);
            o.friction = 0.05;
            scene.objects.push(o);
            scene.occluder = Some(OccluderSpec {
                center: [width * rng.range(0.45, 0.6), height * 0.3],
                half_width: width * rng.range(0.08, 0.14),
                half_height: height * 0.3,
                color: [150, 150, 160],
            });
        }
        "pusher" => {
            let c = colors(&mut rng, 1)[0];
            let s = shape(&mut rng, size, true);
            let h = match s {
                Shape::Circle { radius } => radius,
                Shape::Box { half_height, .. } => half_height,
            };
            scene
                .objects
                .push(object(&mut rng, c, s, [width * 0.5, h], [0.0, 0.0]));
            let mut v = 0.0;
            let actions = (0..frames)
                .map(|_| {
                    v = (0.8 * v + rng.range(-0.6, 1.0)).clamp(-1.5, 2.0);
                    v
                })
                .collect();
            scene.agent = Some(AgentSpec {
                position: [width * 0.2, size * 0.75],
                half_width: size * 0.4,
                half_height: size * 0.75,
                color: [200, 200, 200],
                actions,
            });
        }
        "gripper" => {
            let task = if rng.chance(0.5) {
                crate::manip::Task::Push
            } else {
                crate::manip::Task::PickPlace
            };
            return Some(crate::manip::task_scene(task, seed, aspect));
        }
        _ => return None,
    }
    Some(scene)
}

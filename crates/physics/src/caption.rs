//! Captions written from what actually happened in the simulation, in three lengths, in the style of the
//! reference's video captions ("The video shows ...").

use crate::scene::{SceneSpec, Shape};
use crate::sim::{Event, Trajectory};

/// Short, medium and long captions of a simulated clip.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Captions {
    pub short: String,
    pub medium: String,
    pub long: String,
}

fn list(names: &[String]) -> String {
    match names.len() {
        0 => String::new(),
        1 => names[0].clone(),
        n => format!("{} and {}", names[..n - 1].join(", "), names[n - 1]),
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn the(scene: &SceneSpec, i: usize) -> String {
    format!("the {}", scene.objects[i].name)
}

/// The words a caption tells `e` with ("the red ball lands on the floor"); `None` for events captions leave out.
pub fn event_sentence(scene: &SceneSpec, e: &Event) -> Option<String> {
    Some(match *e {
        // Contacts present from the start (a resting stack) are not events worth telling.
        Event::Collision { a, b, frame } if frame > 1 => {
            format!("{} hits {}", the(scene, a), the(scene, b))
        }
        Event::HitsGround { object, frame } if frame > 1 => {
            format!("{} lands on the floor", the(scene, object))
        }
        Event::HitsRamp { object, .. } => format!("{} slides down the ramp", the(scene, object)),
        Event::Pushed { object, .. } if scene.manipulation.is_some() => {
            format!("the gripper pushes {}", the(scene, object))
        }
        Event::Pushed { object, .. } => format!("the paddle pushes {}", the(scene, object)),
        Event::HitsWall { object, .. } => format!("{} hits the wall", the(scene, object)),
        Event::Grasped { object, .. } => format!("the gripper picks up {}", the(scene, object)),
        Event::Released { object, .. } => format!("the gripper lets go of {}", the(scene, object)),
        Event::LeavesFrame { object, .. } => format!("{} leaves the frame", the(scene, object)),
        Event::Stops { object, .. } => format!("{} comes to rest", the(scene, object)),
        Event::FallsOver { object, .. } => format!("{} falls over", the(scene, object)),
        _ => return None,
    })
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

pub fn caption(scene: &SceneSpec, traj: &Trajectory) -> Captions {
    let names: Vec<String> = scene
        .objects
        .iter()
        .map(|o| format!("{} {}", article(&o.name), o.name))
        .collect();
    let setting = match scene.family.as_str() {
        "ramp" => "on a ramp",
        "pendulum" => "swinging from a pivot",
        "occlusion" => "rolling towards a grey screen",
        "pusher" => "next to a moving paddle",
        "gripper" => match scene.manipulation.as_ref().map(|m| m.task) {
            Some(crate::manip::Task::PickPlace) => {
                "on the floor, a robot gripper above it, a wall and a pink target zone beyond"
            }
            _ => "on the floor, a robot gripper above it and a pink target zone on the floor",
        },
        "stack" => "stacked on the floor",
        _ => "above the floor",
    };
    let short = format!("{} {setting}.", capitalise(&list(&names)));
    let mut seen = std::collections::HashSet::new();
    let events: Vec<String> = traj
        .events
        .iter()
        .filter_map(|e| event_sentence(scene, e))
        .filter(|s| seen.insert(s.clone()))
        .collect();
    let medium = if events.is_empty() {
        format!("The video shows {} {setting}.", list(&names))
    } else {
        format!(
            "The video shows {} {setting}. {}.",
            list(&names),
            capitalise(
                &events
                    .iter()
                    .take(2)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", then ")
            )
        )
    };
    let mut long = format!(
        "The video shows {} {setting}, seen from the side against a plain background.",
        list(&names)
    );
    if !events.is_empty() {
        long.push_str(&format!(" {}.", capitalise(&events.join(", then "))));
    }
    if scene.occluder.is_some() {
        long.push_str(" The object passes behind the screen and keeps moving.");
    }
    for o in &scene.objects {
        let kind = match o.shape {
            Shape::Circle { .. } => "round",
            Shape::Box { .. } => "square-edged",
        };
        let bounce = if o.restitution > 0.6 {
            "bouncy"
        } else if o.restitution < 0.3 {
            "dull"
        } else {
            "firm"
        };
        long.push_str(&format!(" The {} is {kind} and {bounce}.", o.name));
    }
    Captions {
        short,
        medium,
        long,
    }
}

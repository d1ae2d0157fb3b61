//! The caption-event judge on simulated clips: the events a caption tells are found in the simulator's own video
//! (the perfect world), and a frozen or emptied video shows few or none. The tolerances were set on seeds 900-905
//! of each passive family (every event found); these clips (seeds 5000-5005, and the gripper's) were not looked
//! at before: 95% found in 33-frame clips (the misses: two slow slides down a ramp, and a grasp in the clip's
//! last frames, before any lift), all in 121-frame gripper episodes.

use orrery_eval::events::{captioned_events, captioned_events_shown, happens};
use orrery_media::RgbImage;
use orrery_physics::families::{FAMILIES, MANIPULATION_FAMILIES};
use orrery_physics::{make_clip, Clip, ClipSettings, Event};

/// `seeds` clips of `frames` frames of each of `families`.
fn clips_of(families: &[&str], frames: usize, seeds: u64) -> Vec<Clip> {
    let settings = ClipSettings {
        frames,
        width: 64,
        height: 64,
        fps: 16.0,
    };
    let settings = &settings;
    families
        .iter()
        .flat_map(|family| {
            (0..seeds).map(move |seed| make_clip("c", family, 5000 + seed, settings).unwrap())
        })
        .collect()
}

fn clips() -> Vec<Clip> {
    let families: Vec<&str> = FAMILIES
        .iter()
        .chain(&MANIPULATION_FAMILIES)
        .copied()
        .collect();
    clips_of(&families, 33, 6)
}

fn kind(e: &Event) -> &'static str {
    match e {
        Event::Collision { .. } => "hits",
        Event::HitsGround { .. } => "lands",
        Event::HitsRamp { .. } => "slides",
        Event::Pushed { .. } => "pushed",
        Event::LeavesFrame { .. } => "leaves",
        Event::Stops { .. } => "rests",
        Event::FallsOver { .. } => "falls over",
        Event::HitsWall { .. } => "hits the wall",
        Event::Grasped { .. } => "picks up",
        Event::Released { .. } => "lets go",
    }
}

#[test]
fn the_simulators_videos_show_the_events_their_captions_tell() {
    judge_the_simulators_videos(clips(), 0.9);
}

#[test]
fn gripper_episodes_show_their_grasps_releases_and_walls() {
    judge_the_simulators_videos(clips_of(&MANIPULATION_FAMILIES, 121, 8), 0.9);
}

fn judge_the_simulators_videos(clips: Vec<Clip>, least: f64) {
    let mut per_kind: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    let (mut real, mut frozen, mut empty, mut judged) = (0.0, 0.0, 0.0, 0);
    for clip in clips {
        let frames = clip.images();
        let caption = &clip.truth.captions.long;
        for e in captioned_events(&clip.truth, caption) {
            let entry = per_kind.entry(kind(e)).or_default();
            entry.1 += 1;
            if happens(e, &frames, &clip.truth) {
                entry.0 += 1;
            } else {
                println!("missed {} {e:?}", clip.truth.scene.family);
            }
        }
        let Some(score) = captioned_events_shown(&frames, &clip.truth, caption) else {
            continue;
        };
        let still: Vec<RgbImage> = vec![frames[0].clone(); frames.len()];
        let background = RgbImage::from_pixel(64, 64, *frames[0].get_pixel(0, 0));
        let blank: Vec<RgbImage> = vec![background; frames.len()];
        real += score;
        frozen += captioned_events_shown(&still, &clip.truth, caption).unwrap();
        empty += captioned_events_shown(&blank, &clip.truth, caption).unwrap();
        judged += 1;
    }
    let n = judged as f64;
    println!("per kind (shown/told): {per_kind:?}");
    println!(
        "{judged} clips: simulator {:.3}, frozen first frame {:.3}, empty {:.3}",
        real / n,
        frozen / n,
        empty / n
    );
    assert!(judged >= 6, "{judged} clips tell events");
    assert!(
        real / n >= least,
        "the simulator's own video shows {:.3}",
        real / n
    );
    assert!(frozen / n <= 0.1, "a frozen video shows {:.3}", frozen / n);
    assert_eq!(empty, 0.0);
}

#[test]
fn a_caption_that_tells_no_event_is_not_judged() {
    let clip = &clips()[0];
    let frames = clip.images();
    assert!(captioned_events_shown(&frames, &clip.truth, "A red ball above the floor.").is_none());
}

//! The gripper worlds: deterministic, physical (nothing passes through the gripper, the floor or the wall; a
//! held object moves with the gripper), the expert succeeds where the poor policy mostly fails, and a clip's
//! actions and states come back from its shard and replay to the same states; a clip cut from a longer episode is
//! that episode's frames, actions and events.

use orrery_physics::dataset::{read_shard, write_dataset, DatasetSpec};
use orrery_physics::manip::episode::{half_extents, policy_for, run_episode, ManipulationRecord};
use orrery_physics::manip::{task_scene, GripperState, Skill, Task};
use orrery_physics::{make_clip, make_clip_in_episode, simulate_actions, Camera, ClipSettings};

const FRAMES: usize = 121;
const FPS: f32 = 16.0;

fn episode(
    task: Task,
    skill: Skill,
    seed: u64,
) -> (
    orrery_physics::SceneSpec,
    ManipulationRecord,
    orrery_physics::Trajectory,
) {
    let scene = task_scene(task, seed, 1.0);
    let mut policy = policy_for(&scene, skill, FPS, seed).unwrap();
    let ep = run_episode(&scene, &mut policy, FRAMES, FPS);
    let record = ManipulationRecord::new(&scene, &ep, skill, &Camera::new(&scene, 64, 64)).unwrap();
    (scene, record, ep.trajectory)
}

/// Distance from `p` to a box (centre, half sizes, angle); negative inside.
fn box_distance(p: [f32; 2], center: [f32; 2], half: [f32; 2], angle: f32) -> f32 {
    let (s, c) = angle.sin_cos();
    let (dx, dy) = (p[0] - center[0], p[1] - center[1]);
    let local = [c * dx + s * dy, -s * dx + c * dy];
    let q = [local[0].abs() - half[0], local[1].abs() - half[1]];
    let outside = q[0].max(0.0).hypot(q[1].max(0.0));
    outside + q[0].max(q[1]).min(0.0)
}

#[test]
fn the_expert_succeeds_on_most_seeds_and_the_poor_policy_on_clearly_fewer() {
    for task in Task::ALL {
        let wins = |skill| {
            (0..8)
                .filter(|&seed| episode(task, skill, seed).1.success.success)
                .count()
        };
        let (expert, poor) = (wins(Skill::Expert), wins(Skill::Poor));
        assert!(expert >= 7, "{}: expert {expert}/8", task.name());
        assert!(
            poor + 3 <= expert,
            "{}: expert {expert}/8, poor {poor}/8",
            task.name()
        );
    }
}

#[test]
fn nothing_passes_through_the_gripper_the_floor_or_the_wall() {
    for (task, skill, seed) in [
        (Task::Push, Skill::Expert, 0),
        (Task::Push, Skill::Poor, 1),
        (Task::PickPlace, Skill::Expert, 2),
        (Task::PickPlace, Skill::Sloppy, 3),
        (Task::PickPlace, Skill::Poor, 1),
    ] {
        let (scene, record, traj) = episode(task, skill, seed);
        let m = scene.manipulation.as_ref().unwrap();
        let [hw, hh] = half_extents(scene.objects[0].shape);
        for (f, (states, g)) in traj.states.iter().zip(&record.gripper).enumerate() {
            let o = states[0];
            // The floor: the object's lowest corner and the finger tips stay above it (a few mm of solver slack).
            let (s, c) = o.angle.sin_cos();
            let lowest = o.position[1] - (hw * s.abs() + hh * c.abs());
            assert!(
                lowest > -0.02,
                "{} {seed} frame {f}: object at {lowest}",
                task.name()
            );
            for (center, half, angle) in g.boxes(&m.gripper) {
                let (s, c) = angle.sin_cos();
                assert!(center[1] - (half[0] * s.abs() + half[1] * c.abs()) > -0.02);
                // The gripper: the object's centre stays at least its smaller half size from every part.
                let d = box_distance(o.position, center, half, angle);
                assert!(
                    d > hw.min(hh) - 0.03,
                    "{} {seed} frame {f}: {d}",
                    task.name()
                );
            }
            // The wall: while lower than its top, the object stays on its side.
            if let Some(w) = m.wall {
                if lowest < w.height - 0.02 {
                    let inside =
                        (o.position[0] - w.center_x).abs() < w.half_width + hw.min(hh) - 0.03;
                    assert!(!inside, "{} {seed} frame {f}: in the wall", task.name());
                }
            }
        }
    }
}

#[test]
fn a_held_object_moves_with_the_gripper() {
    let (scene, record, traj) = episode(Task::PickPlace, Skill::Expert, 0);
    let wall = scene.manipulation.as_ref().unwrap().wall.unwrap();
    let local = |g: &GripperState, p: [f32; 2]| {
        let (s, c) = g.angle.sin_cos();
        let (dx, dy) = (p[0] - g.position[0], p[1] - g.position[1]);
        [c * dx + s * dy, -s * dx + c * dy]
    };
    let held: Vec<usize> = (0..FRAMES)
        .filter(|&f| record.gripper[f].holding == Some(0))
        .collect();
    assert!(held.len() > 20, "held for {} frames", held.len());
    let first = local(&record.gripper[held[0]], traj.states[held[0]][0].position);
    let mut highest = f32::MIN;
    for &f in &held {
        let l = local(&record.gripper[f], traj.states[f][0].position);
        assert!(
            (l[0] - first[0]).abs() < 0.02 && (l[1] - first[1]).abs() < 0.02,
            "frame {f}: {l:?} vs {first:?}"
        );
        highest = highest.max(traj.states[f][0].position[1]);
    }
    assert!(
        highest > wall.height,
        "lifted to {highest}, the wall is {}",
        wall.height
    );
    assert!(record.success.success);
}

#[test]
fn clips_are_deterministic_and_their_actions_replay_to_the_same_states() {
    let settings = ClipSettings {
        frames: 49,
        width: 64,
        height: 64,
        fps: FPS,
    };
    for seed in [3, 4] {
        let a = make_clip("g", "gripper", seed, &settings).unwrap();
        let b = make_clip("g", "gripper", seed, &settings).unwrap();
        assert_eq!(a.truth, b.truth);
        assert_eq!(a.frames, b.frames);
        let m = a.truth.manipulation.as_ref().unwrap();
        assert_eq!(m.actions.len(), 48);
        assert_eq!(m.gripper.len(), 49);
        // The model's view of the actions: in the gripper's frame, translation and turn times 20.
        let rows = m.model_actions();
        assert_eq!(rows.len(), 48);
        for (row, action) in rows.iter().zip(&m.actions) {
            assert_eq!(row[3], action.grip());
            assert!((row[0].hypot(row[1]) - 20.0 * action.dx().hypot(action.dy())).abs() < 1e-4);
            assert!((row[2] - 20.0 * action.dtheta()).abs() < 1e-6);
        }
        let replay = simulate_actions(&a.truth.scene, 49, FPS, &m.actions);
        assert_eq!(replay.gripper, m.gripper);
        for (i, track) in a.truth.tracks.iter().enumerate() {
            let replayed: Vec<[f32; 2]> = replay.states.iter().map(|s| s[i].position).collect();
            assert_eq!(replayed, track.position);
        }
    }
}

#[test]
fn a_gripper_shard_gives_back_actions_and_states() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DatasetSpec {
        clips: 2,
        clips_per_shard: 2,
        families: vec!["gripper".into()],
        seed: 11,
        settings: ClipSettings {
            frames: 17,
            width: 64,
            height: 64,
            fps: FPS,
        },
        workers: 1,
    };
    let shards = write_dataset(&spec, dir.path(), || ()).unwrap();
    let samples = read_shard(&shards[0]).unwrap();
    assert_eq!(samples.len(), 2);
    for (i, s) in samples.iter().enumerate() {
        let (family, seed, key) = spec.clip_id(i);
        let clip = make_clip(&key, &family, seed, &spec.settings).unwrap();
        let truth = s.truth().unwrap();
        assert_eq!(truth, clip.truth);
        let m = truth.manipulation.unwrap();
        assert_eq!(
            (
                m.actions.len(),
                m.gripper.len(),
                truth.tracks[0].position.len()
            ),
            (16, 17, 17)
        );
        assert!(s.caption.contains("gripper"), "{}", s.caption);
    }
}

#[test]
fn a_clip_cut_from_a_longer_episode_is_that_episodes_frames_actions_and_events() {
    let settings = |frames| ClipSettings {
        frames,
        width: 48,
        height: 48,
        fps: FPS,
    };
    let mut offsets = Vec::new();
    for seed in [3, 4, 5, 6] {
        let whole = make_clip("whole", "gripper", seed, &settings(65)).unwrap();
        let cut = make_clip_in_episode("cut", "gripper", seed, &settings(17), 65).unwrap();
        let start = (0..=48)
            .find(|&s| whole.frames[s..s + 17] == cut.frames[..])
            .expect("the cut's frames are a stretch of the episode's");
        offsets.push(start);
        let (w, c) = (
            whole.truth.manipulation.as_ref().unwrap(),
            cut.truth.manipulation.as_ref().unwrap(),
        );
        assert_eq!(c.actions, w.actions[start..start + 16]);
        assert_eq!(c.gripper, w.gripper[start..start + 17]);
        assert_eq!(c.in_zone, w.in_zone[start..start + 17]);
        assert_eq!(c.model_actions(), w.model_actions()[start..start + 16]);
        for (tw, tc) in whole.truth.tracks.iter().zip(&cut.truth.tracks) {
            assert_eq!(tc.pixel, tw.pixel[start..start + 17]);
        }
        let shifted: Vec<_> = whole
            .truth
            .events
            .iter()
            .filter(|e| (start..start + 17).contains(&e.frame()))
            .map(|e| e.frame() - start)
            .collect();
        let cut_frames: Vec<_> = cut.truth.events.iter().map(|e| e.frame()).collect();
        assert_eq!(cut_frames, shifted);
    }
    assert!(offsets.iter().any(|&s| s > 0), "offsets {offsets:?}");
    // An episode as long as the clip is the clip make_clip gives.
    let plain = make_clip("a", "gripper", 3, &settings(17)).unwrap();
    let same = make_clip_in_episode("a", "gripper", 3, &settings(17), 17).unwrap();
    assert_eq!(plain.frames, same.frames);
    assert!(make_clip_in_episode("a", "gripper", 3, &settings(17), 9).is_err());
}

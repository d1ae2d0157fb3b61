//! `orrery generate --actions`: action rollouts on a tiny bundle whose DiT is action-conditioned (random weights,
//! the tiny VAE and Qwen2.5-VL fixtures), and clear errors on bad action files.

mod common;

use std::path::Path;

use common::{assert_fails_with, run_ok, testdata};

/// The tiny action bundle of [`common::action_bundle`] with 3-wide actions, or without action embedders.
fn bundle(root: &Path, action: bool) {
    common::action_bundle(root, action.then_some(3));
}

fn write_actions(path: &Path, n: usize) {
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..3).map(|j| ((i * 3 + j) as f64 * 0.37).sin()).collect())
        .collect();
    std::fs::write(path, serde_json::json!({ "actions": rows }).to_string()).unwrap();
}

fn rollout_args<'a>(
    bundle: &'a str,
    image: &'a str,
    actions: &'a str,
    out: &'a str,
) -> Vec<&'a str> {
    vec![
        "generate",
        "--model",
        bundle,
        "--image",
        image,
        "--actions",
        actions,
        "--out",
        out,
        "--prompt",
        "a robot arm",
        "--dtype",
        "f32",
        "--seed",
        "0",
    ]
}

fn frames(path: &Path) -> Vec<Vec<u8>> {
    orrery_media::read_video(path)
        .unwrap()
        .frames
        .into_iter()
        .map(|f| f.into_raw())
        .collect()
}

#[test]
fn actions_roll_out_one_frame_each_and_repeat_per_seed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bundle");
    bundle(&root, true);
    let actions = dir.path().join("actions.json");
    write_actions(&actions, 10); // 2 chunks of 8 actions, the second padded
    let image = testdata("media/robot_welding.jpg");
    let (b, i, a) = (
        root.to_str().unwrap(),
        image.to_str().unwrap(),
        actions.to_str().unwrap(),
    );
    let out = dir.path().join("rollout.mp4");
    let run = run_ok(&rollout_args(b, i, a, out.to_str().unwrap()));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("11 frames") && stdout.contains("2 chunks"),
        "{stdout}"
    );
    let first = frames(&out);
    assert_eq!(first.len(), 11);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(record["rollout"]["actions"], 10);
    assert_eq!(record["rollout"]["chunk_actions"], 8);
    assert_eq!(record["chunks"], serde_json::json!([9, 9]));
    assert_eq!(record["prompt"], "a robot arm");

    let again = dir.path().join("again.mp4");
    run_ok(&rollout_args(b, i, a, again.to_str().unwrap()));
    assert_eq!(frames(&again), first, "same seed, same video");
    let other = dir.path().join("other.mp4");
    let mut args = rollout_args(b, i, a, other.to_str().unwrap());
    *args.last_mut().unwrap() = "3";
    run_ok(&args);
    assert_ne!(frames(&other), first, "another seed, another video");
}

#[test]
fn bad_action_files_and_models_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let action_model = dir.path().join("action");
    bundle(&action_model, true);
    let plain_model = dir.path().join("plain");
    bundle(&plain_model, false);
    let image = testdata("media/robot_welding.jpg");
    let out = dir.path().join("out.mp4");
    let good = dir.path().join("good.json");
    write_actions(&good, 3);
    let i = image.to_str().unwrap();
    let o = out.to_str().unwrap();
    let am = action_model.to_str().unwrap();
    for (name, text, expect) in [
        ("bad.json", "{\"actions\": [[1, 2, 3]", "bad.json"),
        ("empty.json", r#"{"actions": []}"#, "`actions` is empty"),
        (
            "ragged.json",
            r#"{"actions": [[1, 2, 3], [1, 2]]}"#,
            "action 1 has 2 values",
        ),
        (
            "wide.json",
            r#"{"actions": [[1, 2, 3, 4]]}"#,
            "action_dim = 3",
        ),
        (
            "typo.json",
            r#"{"action": [[1, 2, 3]]}"#,
            "unknown field `action`",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        assert_fails_with(&rollout_args(am, i, path.to_str().unwrap(), o), expect);
    }
    let missing = dir.path().join("missing.json");
    assert_fails_with(
        &rollout_args(am, i, missing.to_str().unwrap(), o),
        "missing.json",
    );
    // A model without action embedders takes no actions; an action model takes nothing but actions.
    let g = good.to_str().unwrap();
    assert_fails_with(
        &rollout_args(plain_model.to_str().unwrap(), i, g, o),
        "action-conditioned",
    );
    assert_fails_with(
        &[
            "generate", "--model", am, "--prompt", "a robot", "--image", i, "--out", o,
        ],
        "--actions",
    );
    // The official default prompt is empty, which the Reason1 tokenizer refuses: say so before loading.
    assert_fails_with(
        &[
            "generate",
            "--model",
            am,
            "--image",
            i,
            "--actions",
            g,
            "--out",
            o,
        ],
        "describe the scene with --prompt",
    );
    // --actions needs --image and takes no --frames.
    assert_fails_with(
        &["generate", "--model", am, "--actions", g, "--out", o],
        "--image",
    );
    assert_fails_with(
        &[
            "generate",
            "--model",
            am,
            "--image",
            i,
            "--actions",
            g,
            "--frames",
            "17",
            "--out",
            o,
        ],
        "--frames",
    );
    assert!(!out.exists());
}

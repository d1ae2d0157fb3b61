//! `orrery policy eval`: scripted policies in the simulator and inside a tiny random action-conditioned model,
//! written as JSON and HTML; `orrery policy bench`: the action bench of such a model beside one without actions;
//! clear errors for bad arguments.

mod common;

use common::{action_bundle, assert_fails_with, run_ok};

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn policies_are_evaluated_in_the_simulator_with_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = (dir.path().join("eval.json"), dir.path().join("eval.html"));
    let run = run_ok(&[
        "policy",
        "eval",
        "--task",
        "pick-place",
        "--policy",
        "expert,poor",
        "--episodes",
        "2",
        "--frames",
        "121",
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("simulator") && stdout.contains("expert"),
        "{stdout}"
    );
    let json = read_json(&out);
    assert_eq!(json["task"], "pick-place");
    let summaries = json["worlds"][0]["summaries"].as_array().unwrap();
    assert_eq!(summaries.len(), 2);
    assert_eq!(summaries[0]["policy"], "expert");
    assert_eq!(summaries[0]["success_rate"], 1.0);
    assert!(summaries[0]["mean_completion_seconds"].as_f64().unwrap() > 1.0);
    assert_eq!(json["worlds"][0]["episodes"].as_array().unwrap().len(), 4);
    assert!(json["comparisons"].as_array().unwrap().is_empty());
    let html = std::fs::read_to_string(&report).unwrap();
    assert_eq!(
        html.matches("data:image/gif;base64,").count(),
        2,
        "one GIF per episode"
    );
}

#[test]
fn policies_run_inside_an_action_model_beside_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    action_bundle(&model, Some(4));
    let out = dir.path().join("eval.json");
    let report = dir.path().join("eval.html");
    let m = model.to_str().unwrap();
    let run = run_ok(&[
        "policy",
        "eval",
        "--task",
        "push",
        "--policy",
        "expert,poor",
        "--episodes",
        "1",
        "--frames",
        "17",
        "--model",
        m,
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("Spearman"), "{stdout}");
    let json = read_json(&out);
    // The model's size and frame rate.
    assert_eq!(json["size"], serde_json::json!([32, 32]));
    assert_eq!(json["fps"], 20.0);
    let worlds = json["worlds"].as_array().unwrap();
    assert_eq!(worlds.len(), 2);
    assert!(worlds[1]["world"].as_str().unwrap().starts_with("model "));
    for w in worlds {
        for e in w["episodes"].as_array().unwrap() {
            assert_eq!(e["actions"].as_array().unwrap().len(), 16);
        }
    }
    // The model has no true state; the simulator does.
    assert!(worlds[1]["episodes"][0]["state_success"].is_null());
    assert!(worlds[0]["episodes"][0]["state_success"].is_boolean());
    // The simulator under the model's control: 8 actions planned per observed frame.
    assert_eq!(
        json["comparisons"][0]["reference"],
        "simulator (8 actions per observation)"
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("rows: simulator (8 actions per observation) | model"),
        "a row per world"
    );

    // With --vae-ceiling, the simulator seen through the model's VAE is a third world, judged by the same detector and
    // with the simulator's true state; a last chunk shorter than the VAE's frame grouping (11 actions in chunks of 8:
    // 3 frames after the start) still answers one frame per action.
    let ceiling_out = dir.path().join("ceiling.json");
    run_ok(&[
        "policy",
        "eval",
        "--task",
        "push",
        "--policy",
        "expert",
        "--episodes",
        "1",
        "--frames",
        "12",
        "--model",
        m,
        "--vae-ceiling",
        "--out",
        ceiling_out.to_str().unwrap(),
    ]);
    let json = read_json(&ceiling_out);
    let worlds = json["worlds"].as_array().unwrap();
    assert_eq!(worlds.len(), 3);
    assert!(worlds[1]["world"]
        .as_str()
        .unwrap()
        .starts_with("simulator through the VAE of "));
    let episode = &worlds[1]["episodes"][0];
    assert_eq!(episode["actions"].as_array().unwrap().len(), 11);
    assert!(episode["state_success"].is_boolean());
    assert_eq!(json["comparisons"].as_array().unwrap().len(), 2);

    // A model of another action width or without action embedders, or asked for another size, is refused.
    let other = dir.path().join("other");
    action_bundle(&other, Some(3));
    let o = out.to_str().unwrap();
    assert_fails_with(
        &[
            "policy",
            "eval",
            "--task",
            "push",
            "--episodes",
            "1",
            "--frames",
            "9",
            "--out",
            o,
            "--model",
            other.to_str().unwrap(),
        ],
        "3-wide actions",
    );
    let plain = dir.path().join("plain");
    action_bundle(&plain, None);
    assert_fails_with(
        &[
            "policy",
            "eval",
            "--task",
            "push",
            "--out",
            o,
            "--model",
            plain.to_str().unwrap(),
        ],
        "not action-conditioned",
    );
    assert_fails_with(
        &[
            "policy", "eval", "--task", "push", "--out", o, "--model", m, "--size", "64x64",
        ],
        "the model generates 32x32",
    );
    assert_fails_with(
        &[
            "policy",
            "eval",
            "--task",
            "push",
            "--out",
            o,
            "--vae-ceiling",
        ],
        "--model",
    );
}

#[test]
fn the_action_bench_scores_an_action_model_beside_one_without_actions() {
    let dir = tempfile::tempdir().unwrap();
    let (model, plain) = (dir.path().join("model"), dir.path().join("plain"));
    action_bundle(&model, Some(4));
    action_bundle(&plain, None);
    let (out, report, videos) = (
        dir.path().join("bench.json"),
        dir.path().join("bench.html"),
        dir.path().join("videos"),
    );
    let (m, p, o) = (
        model.to_str().unwrap(),
        plain.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let run = run_ok(&[
        "policy",
        "bench",
        "--model",
        m,
        "--compare",
        p,
        "--clips",
        "2",
        "--out",
        o,
        "--report",
        report.to_str().unwrap(),
        "--videos",
        videos.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("latent L2"), "{stdout}");
    let json = read_json(&out);
    assert_eq!(json["clips"], 2);
    let methods: Vec<&str> = json["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods.len(), 5, "{methods:?}");
    assert!(methods[0].starts_with("actions: ") && methods[1].starts_with("no actions: "));
    for m in json["methods"].as_array().unwrap() {
        assert!(m["psnr"].as_f64().unwrap() > 0.0 && m["latent_l2"].as_f64().unwrap() >= 0.0);
    }
    // The bundle's 9 frames, scored from frame 2: 7 per video, one folder per row and the real clips.
    for sub in [
        "real",
        "actions",
        "no-actions-1",
        "copy-first-frame",
        "constant-velocity",
        "vae-round-trip",
    ] {
        let video = orrery_media::read_video(&videos.join(sub).join("clip-0001.mp4")).unwrap();
        assert_eq!(video.frames.len(), 7, "{sub}");
    }
    assert!(std::fs::read_to_string(&report)
        .unwrap()
        .contains("image/gif"));

    // The action model must take actions; compared models must match its size.
    assert_fails_with(
        &["policy", "bench", "--model", p, "--out", o],
        "takes no actions",
    );
}

#[test]
fn bad_arguments_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eval.json");
    let o = out.to_str().unwrap();
    let eval = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = ["policy", "eval", "--out", o]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    for (extra, expect) in [
        (
            &["--task", "stack"][..],
            "unknown task \"stack\" (known: push, pick-place)",
        ),
        (
            &["--task", "push", "--policy", "expert,clumsy"][..],
            "unknown policy \"clumsy\"",
        ),
        (
            &["--task", "push", "--policy", "good,good"][..],
            "good is given twice",
        ),
        (
            &["--task", "push", "--episodes", "0"][..],
            "--episodes must be at least 1",
        ),
        (
            &["--task", "push", "--frames", "1"][..],
            "at least 2 frames",
        ),
        (&["--task", "push", "--size", "63x64"][..], "63x64"),
        (&["--task", "push", "--fps", "0"][..], "fps 0"),
    ] {
        let args = eval(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_fails_with(&args, expect);
    }
    assert!(!out.exists(), "nothing written on failure");
    let missing = dir.path().join("no/such/dir/eval.json");
    assert_fails_with(
        &[
            "policy",
            "eval",
            "--task",
            "push",
            "--out",
            missing.to_str().unwrap(),
        ],
        "no/such/dir",
    );
}

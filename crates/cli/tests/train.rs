//! `orrery train`, the embedded default model behind `orrery generate`, and `orrery physics bench`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{assert_fails_with, run_ok};

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .display()
        .to_string()
}

#[test]
fn dry_run_smoke_and_bad_configs() {
    let out = run_ok(&[
        "train",
        "vae",
        "--config",
        &repo("configs/nano-vae.json"),
        "--dry-run",
    ]);
    let resolved: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(resolved["run"]["out_dir"]
        .as_str()
        .unwrap()
        .ends_with("runs/nano-vae"));
    let out = run_ok(&[
        "train",
        "dit",
        "--config",
        &repo("configs/nano-dit.json"),
        "--dry-run",
    ]);
    let resolved: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(resolved["model"]["in_channels"], 8);

    let dir = tempfile::tempdir().unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("configs/nano-vae.json")).unwrap())
            .unwrap();
    config["run"]["out_dir"] = dir.path().join("run").display().to_string().into();
    config["data"]["frames"] = 9.into();
    config["crop_frames"] = 5.into();
    config["crop_size"] = 16.into();
    let path = dir.path().join("vae.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = run_ok(&[
        "train",
        "vae",
        "--config",
        path.to_str().unwrap(),
        "--smoke",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("smoke step: loss"));

    config["run"]["batch_sise"] = 3.into();
    std::fs::write(&path, config.to_string()).unwrap();
    assert_fails_with(
        &["train", "vae", "--config", path.to_str().unwrap()],
        "unknown field `batch_sise`",
    );
    std::fs::write(&path, "{\"run\": ").unwrap();
    assert_fails_with(
        &["train", "vae", "--config", path.to_str().unwrap()],
        "EOF while parsing",
    );
    config["run"].as_object_mut().unwrap().remove("batch_sise");
    config["crop_frames"] = 4.into();
    std::fs::write(&path, config.to_string()).unwrap();
    assert_fails_with(
        &["train", "vae", "--config", path.to_str().unwrap()],
        "crop_frames 4 must be 1 + 4 k",
    );
}

#[test]
fn embedded_model_generates_in_all_three_modes_and_benches() {
    let dir = tempfile::tempdir().unwrap();
    let orrery = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_orrery"))
            .args(args)
            .env("ORRERY_CACHE", dir.path().join("cache"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let t2w = dir.path().join("t2w.mp4");
    let prompt = "The video shows a red ball above the floor. The red ball lands on the floor.";
    orrery(&[
        "generate",
        "--prompt",
        prompt,
        "--out",
        t2w.to_str().unwrap(),
        "--steps",
        "2",
    ]);
    let video = orrery_media::read_video(&t2w).unwrap();
    assert_eq!(video.frames.len(), 33);
    assert_eq!(video.frames[0].dimensions(), (64, 64));
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t2w.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(settings["mode"], "text2world");
    assert_eq!(settings["negative_prompt"], "");
    let i2w = dir.path().join("i2w.mp4");
    let frame = dir.path().join("frame.png");
    orrery_media::write_png(&frame, &video.frames[0]).unwrap();
    orrery(&[
        "generate",
        "--prompt",
        prompt,
        "--image",
        frame.to_str().unwrap(),
        "--out",
        i2w.to_str().unwrap(),
        "--steps",
        "2",
    ]);
    // Video2World from the Text2World clip, with `extra` arguments; the generation record it writes.
    let video2world = |name: &str, extra: &[&str]| -> serde_json::Value {
        let out = dir.path().join(name);
        let mut args = vec![
            "generate",
            "--prompt",
            prompt,
            "--video",
            t2w.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "2",
        ];
        args.extend(extra);
        orrery(&args);
        assert_eq!(orrery_media::read_video(&out).unwrap().frames.len(), 33);
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap()).unwrap()
    };
    // The nano bundle keeps the observed pixels where its output does not change; `off` gives the decoder's.
    let v2w = video2world("v2w.mp4", &[]);
    assert!(v2w["keep_observed"]["threshold"].as_f64().unwrap() > 0.0);
    assert!(
        settings["keep_observed"].is_null(),
        "Text2World has nothing observed"
    );
    let v2w_off = video2world("v2w-off.mp4", &["--keep-observed", "off"]);
    assert!(v2w_off["keep_observed"].is_null());

    let report = dir.path().join("bench.json");
    orrery(&[
        "physics",
        "bench",
        "--clips",
        "2",
        "--text-clips",
        "1",
        "--steps",
        "2",
        "--guidance",
        "1.5",
        "--out",
        report.to_str().unwrap(),
        "--report",
        dir.path().join("bench.html").to_str().unwrap(),
        "--videos",
        dir.path().join("videos").to_str().unwrap(),
    ]);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let methods = r["methods"].as_array().unwrap();
    // The six rows, then the models on the decoder's pixels alone (the bundle keeps the observed ones).
    assert_eq!(methods.len(), 8);
    assert_eq!(
        methods[6]["method"],
        "video2world: model, decoder pixels only"
    );
    for mode in ["text2world", "image2world", "video2world"] {
        let m = &r["sampling"][mode];
        assert_eq!(
            (m["steps"].as_u64(), m["guidance"].as_f64()),
            (Some(2), Some(1.5)),
            "{mode}"
        );
    }
    assert!(methods[1]["psnr"].as_f64().unwrap() > 10.0);
    // The VAE round trip bounds what a latent prediction can reach.
    assert_eq!(
        methods[3]["method"],
        "video2world: VAE round trip (ceiling)"
    );
    assert!(methods[3]["psnr"].as_f64().unwrap() > 15.0);
    assert!(methods[3]["pooled_psnr"].as_f64().unwrap() > 15.0);
    assert!(methods[3]["median_psnr"].as_f64().unwrap() > 15.0);
    // Per-clip head to head: each count is of the 2 clips.
    let wins = r["clips_won"].as_object().unwrap();
    assert_eq!(wins.len(), 6);
    assert!(wins.values().all(|w| w.as_u64().unwrap() <= 2), "{wins:?}");
    // Trajectory head to head on the object-frames both methods find: an error for each side exactly when
    // there are such object-frames.
    let matched = r["trajectory_matched"].as_object().unwrap();
    assert_eq!(matched.len(), 6);
    for m in matched.values() {
        let shared = m["object_frames"].as_u64().unwrap() > 0;
        assert_eq!(m["error_a_px"].is_f64(), shared, "{m}");
        assert_eq!(m["error_b_px"].is_f64(), shared, "{m}");
    }
    // Each method's PSNR by frames ahead: one value per predicted frame, in dB.
    let horizon = r["psnr_by_horizon"].as_object().unwrap();
    assert_eq!(horizon.len(), 8);
    let copy_last = horizon["video2world: copy last frame"].as_array().unwrap();
    assert!(!copy_last.is_empty());
    assert!(copy_last
        .iter()
        .all(|p| (0.0..=100.0).contains(&p.as_f64().unwrap())));
    let html = std::fs::read_to_string(dir.path().join("bench.html")).unwrap();
    assert!(html.contains("copy last frame") && html.contains("data:image/gif;base64,"));
    assert!(html.contains("object-frames both find"));
    eval_reads_the_bench_videos(&dir.path().join("videos"), dir.path());
}

/// `orrery eval` on the bench's continuations: numbers in the HTML equal the JSON's; bad inputs fail clearly.
fn eval_reads_the_bench_videos(videos: &Path, out: &Path) {
    let (real, model) = (videos.join("real"), videos.join("model"));
    let html_path = out.join("eval/report.html");
    run_ok(&[
        "eval",
        "--real",
        real.to_str().unwrap(),
        "--generated",
        model.to_str().unwrap(),
        "--real-take2",
        videos.join("constant-velocity").to_str().unwrap(),
        "--metrics",
        "psnr,ssim,motion",
        "--report",
        html_path.to_str().unwrap(),
    ]);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval/report.json")).unwrap())
            .unwrap();
    let html = std::fs::read_to_string(&html_path).unwrap();
    let per_video = json["per_video"].as_array().unwrap();
    assert_eq!(per_video.len(), 2);
    let mean_psnr = per_video
        .iter()
        .map(|v| v["psnr"].as_f64().unwrap())
        .sum::<f64>()
        / 2.0;
    assert!((json["summary"]["psnr"].as_f64().unwrap() - mean_psnr).abs() < 1e-9);
    for key in [
        "psnr",
        "ssim",
        "spatial_iou",
        "spatiotemporal_iou",
        "physics_iq",
    ] {
        let v = json["summary"][key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing"));
        assert!(
            html.contains(&format!("<td>{key}</td><td>{v:.4}</td>")),
            "{key} = {v:.4} not in the report"
        );
    }
    assert!(html.contains("<svg") && html.matches("data:image/gif;base64,").count() == 2);

    // `orrery eval --real REAL --generated MODEL --report HTML EXTRA...` must fail, saying `expect`.
    let eval_fails = |extra: &[&str], expect: &str| {
        let mut args = vec![
            "eval",
            "--real",
            real.to_str().unwrap(),
            "--generated",
            model.to_str().unwrap(),
            "--report",
            html_path.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        assert_fails_with(&args, expect);
    };
    let missing = out.join("absent-weights");
    eval_fails(
        &["--metrics", "fid", "--weights", missing.to_str().unwrap()],
        "tools/eval_weights/fetch.py",
    );
    std::fs::remove_file(model.join("clip-0001.mp4")).unwrap();
    eval_fails(&[], "no generated video for the real clip-0001.mp4");
    std::fs::write(model.join("clip-0001.mp4"), b"not a video").unwrap();
    eval_fails(&["--metrics", "psnr"], "clip-0001.mp4");
}

/// A released-layout bundle of the tiny fixtures (`common::tiny_reason1_bundle`), sampling in 2 steps.
fn released_bundle(root: &Path) {
    common::tiny_reason1_bundle(
        root,
        None,
        r#"{"schedule": 5.0, "steps": 2, "guidance": 2.0, "cond_timestep": 0.1, "frames": 9, "width": 32, "height": 32, "fps": 16}"#,
    );
}

#[test]
fn a_released_bundle_fine_tunes_with_lora_and_both_exports_generate() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    released_bundle(&bundle);
    let mut config = serde_json::json!({
        "run": {"out_dir": dir.path().join("run"), "seed": 0, "steps": 1, "batch_size": 1,
                "checkpoint_every": 1, "keep_checkpoints": 1, "sample_every": 0},
        "data": {"clips": 2, "frames": 9, "width": 32, "height": 32, "fps": 16.0, "seed": 0},
        "init_from": bundle,
        "lora": {"rank": 4},
        "sample_steps": 2
    });
    let path = dir.path().join("lora.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let path = path.to_str().unwrap();
    let out = run_ok(&["train", "dit", "--config", path, "--dry-run"]);
    let resolved: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(resolved["model"]["num_blocks"], 2);
    assert_eq!(resolved["optim"]["decay"], "lambda-linear");
    assert!(resolved.get("text").is_none());
    run_ok(&["train", "dit", "--config", path]);
    let run = dir.path().join("run");
    let adapter = run.join("final/pytorch_lora_weights.safetensors");
    assert!(run.join("prompt_cache").is_dir());
    for (model, lora) in [
        (run.join("final"), None),
        (bundle.clone(), Some(adapter.to_str().unwrap())),
    ] {
        let video = dir.path().join("clip.mp4");
        let mut args = vec![
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "a red ball rolls across the floor",
            "--dtype",
            "f32",
            "--truncate",
            "--out",
            video.to_str().unwrap(),
        ];
        if let Some(lora) = lora {
            args.extend(["--lora", lora]);
        }
        run_ok(&args);
        assert!(video.is_file());
    }
    config["text"] = serde_json::json!({"width": 192, "layers": 1, "heads": 2, "max_tokens": 64});
    config["run"]["out_dir"] = dir.path().join("other").display().to_string().into();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, config.to_string()).unwrap();
    assert_fails_with(
        &[
            "train",
            "dit",
            "--config",
            bad.to_str().unwrap(),
            "--dry-run",
        ],
        "leave out `text`",
    );
}

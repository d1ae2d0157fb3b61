//! `orrery generate` end to end on a tiny bundle (tiny DiT with random weights, the tiny VAE and tiny Qwen2.5-VL
//! fixtures): all three modes, the batch spec, long videos, and clear errors on bad input.

mod common;

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use common::{assert_fails_with, orrery, run_ok, testdata};
use orrery_dit::{CosmosDit, DitConfig};

/// Writes a bundle whose DiT reads the tiny Qwen's 3 x 64 = 192-wide prompt embeddings.
fn tiny_bundle(root: &Path) {
    let transformer = root.join("transformer");
    std::fs::create_dir_all(&transformer).unwrap();
    let mut config = DitConfig::from_diffusers_file(&testdata("dit_tiny/config.json")).unwrap();
    config.crossattn_proj_in_channels = Some(192);
    std::fs::write(transformer.join("config.json"), config.to_diffusers_json()).unwrap();
    let varmap = VarMap::new();
    CosmosDit::new(
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        &config,
    )
    .unwrap();
    varmap
        .save(transformer.join("diffusion_pytorch_model.safetensors"))
        .unwrap();
    for (dir, files) in [
        (
            "vae",
            &["config.json", "diffusion_pytorch_model.safetensors"][..],
        ),
        (
            "text_encoder",
            &[
                "config.json",
                "tokenizer.json",
                "tokenizer_config.json",
                "model.safetensors",
            ][..],
        ),
    ] {
        let src = testdata(if dir == "vae" {
            "vae_tiny"
        } else {
            "qwen_tiny"
        });
        std::fs::create_dir_all(root.join(dir)).unwrap();
        for f in files {
            std::fs::copy(src.join(f), root.join(dir).join(f)).unwrap();
        }
    }
    std::fs::write(
        root.join("orrery_sampling.json"),
        r#"{"schedule": 5.0, "steps": 3, "guidance": 2.0, "cond_timestep": 0.1, "frames": 9, "width": 32, "height": 32, "fps": 16}"#,
    )
    .unwrap();
}

fn frames_of(path: &Path) -> (usize, u32, u32) {
    let v = orrery_media::read_video(path).unwrap();
    (v.frames.len(), v.width(), v.height())
}

fn ffprobe_accepts(path: &Path) {
    if let Ok(out) = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_streams"])
        .arg(path)
        .output()
    {
        assert!(
            out.status.success(),
            "ffprobe rejects {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn three_modes_and_a_long_video() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    tiny_bundle(&bundle);
    let b = bundle.to_str().unwrap();
    let image = testdata("media/robot_welding.jpg");
    let video = testdata("media/video2world_nemo_2b.mp4");
    let cases: [(&str, Vec<&str>, usize); 4] = [
        ("t2w", vec![], 9),
        ("i2w", vec!["--image", image.to_str().unwrap()], 9),
        ("v2w", vec!["--video", video.to_str().unwrap()], 9),
        ("long", vec!["--frames", "17", "--noise", "fast"], 17),
    ];
    for (name, extra, frames) in cases {
        let out = dir.path().join(format!("{name}.mp4"));
        let latents = dir.path().join(format!("{name}.safetensors"));
        let mut args = vec![
            "generate",
            "--model",
            b,
            "--prompt",
            "a red ball bounces on the floor",
            "--dtype",
            "f32",
            "--out",
            out.to_str().unwrap(),
            "--save-latents",
            latents.to_str().unwrap(),
            "--cache",
        ];
        let cache = dir.path().join("cache");
        args.push(cache.to_str().unwrap());
        args.extend(extra);
        let run = orrery(&args);
        assert!(
            run.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert_eq!(frames_of(&out), (frames, 32, 32), "{name}");
        ffprobe_accepts(&out);
        let settings: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
                .unwrap();
        assert_eq!(settings["frames"], frames, "{name}");
        let l = orrery_nn::Checkpoint::open(&latents).unwrap();
        assert_eq!(
            l.get("latents").unwrap().shape,
            vec![1, 4, 3, 4, 4],
            "{name}"
        );
    }
    let t2w: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("t2w.json")).unwrap())
            .unwrap();
    assert_eq!(t2w["mode"], "text2world");
    assert_eq!(t2w["schedule"], 5.0);
}

#[test]
fn batch_spec_writes_one_video_per_sample() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    tiny_bundle(&bundle);
    std::fs::write(dir.path().join("welding.txt"), "A robot welds a seam.\n").unwrap();
    let spec = dir.path().join("spec.json");
    std::fs::write(
        &spec,
        serde_json::json!({
            "inference_type": "image2world",
            "samples": {
                "welding": {"prompt_path": "welding.txt", "input_path": testdata("media/robot_welding.jpg")},
                "droid": {"prompt": "A robot arm moves a cup.", "input_path": testdata("media/droid_episode_000408.png")}
            }
        })
        .to_string(),
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    run_ok(&as_refs(&spec_args(&bundle, &spec, &out_dir)));
    for name in ["welding", "droid"] {
        assert_eq!(frames_of(&out_dir.join(format!("{name}.mp4"))), (9, 32, 32));
        let s: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out_dir.join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(s["mode"], "image2world");
    }
}

#[test]
fn bad_inputs_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    tiny_bundle(&bundle);
    let b = bundle.to_str().unwrap();
    let out = dir.path().join("out.mp4");
    let o = out.to_str().unwrap();
    let text = testdata("dit_tiny/config.json");
    let bad_json = dir.path().join("bad.json");
    std::fs::write(&bad_json, "{ not json").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--image", "/nonexistent/picture.png"],
            "/nonexistent/picture.png",
        ),
        (vec!["--size", "30x32"], "multiples of 16"),
        (vec!["--frames", "10"], "1 + 4k"),
        (vec!["--image", text.to_str().unwrap()], "config.json"),
        (vec!["--keep-observed", "5"], "THRESHOLD[,MARGIN]"),
        (vec!["--keep-observed", "0.3,x"], "THRESHOLD[,MARGIN]"),
        (vec!["--steps", "0"], "--steps"),
        (vec!["--size", "64"], "WxH"),
        (vec!["--noise", "pink"], "numpy or fast"),
        (vec!["--guidance", "NaN"], "guidance"),
    ];
    for (extra, expect) in cases {
        let mut args = vec![
            "generate", "--model", b, "--prompt", "a ball", "--dtype", "f32", "--out", o,
        ];
        args.extend(extra);
        assert_fails_with(&args, expect);
        assert!(!out.exists());
    }
    assert_fails_with(
        &[
            "generate",
            "--model",
            b,
            "--spec",
            bad_json.to_str().unwrap(),
            "--out-dir",
            o,
            "--dtype",
            "f32",
        ],
        "bad.json",
    );
    assert_fails_with(
        &[
            "generate", "--model", b, "--prompt", "a ball", "--dtype", "f16", "--out", o,
        ],
        "bf16 or f32",
    );
    assert_fails_with(
        &[
            "generate",
            "--model",
            "/nonexistent/bundle",
            "--prompt",
            "x",
            "--out",
            o,
        ],
        "not a folder",
    );
}

#[test]
fn problems_are_reported_before_any_network_loads() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    tiny_bundle(&bundle);
    let b = bundle.to_str().unwrap();
    // An output folder that does not exist: refused before the text encoder runs.
    assert_fails_with(
        &[
            "generate",
            "--model",
            b,
            "--prompt",
            "a ball",
            "--out",
            "/nonexistent/folder/out.mp4",
        ],
        "/nonexistent/folder",
    );
    // A sampling file with a fractional step count or an unknown key names the key.
    let out = dir.path().join("out.mp4");
    let o = out.to_str().unwrap();
    for (file, key) in [
        (r#"{"steps": 2.7, "frames": 9}"#, "steps"),
        (r#"{"frames": 9, "stepz": 3}"#, "stepz"),
    ] {
        std::fs::write(bundle.join("orrery_sampling.json"), file).unwrap();
        assert_fails_with(
            &["generate", "--model", b, "--prompt", "a ball", "--out", o],
            key,
        );
    }
    assert!(!out.exists());
}

#[test]
fn truncate_cuts_an_over_long_prompt_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    tiny_bundle(&bundle);
    let b = bundle.to_str().unwrap();
    let out = dir.path().join("long.mp4");
    let o = out.to_str().unwrap();
    let prompt = "a red ball rolls down a long wooden ramp and bounces ".repeat(60);
    let base = [
        "generate", "--model", b, "--prompt", &prompt, "--dtype", "f32", "--steps", "1", "--out", o,
    ];
    assert_fails_with(&base, "too long");
    let mut args = base.to_vec();
    args.push("--truncate");
    let run = run_ok(&args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("prompt cut"), "{stderr}");
    assert!(
        !stderr.contains("OpenH264"),
        "the encoder's own log stays quiet: {stderr}"
    );
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(record["truncate"], true);
    assert_eq!(frames_of(&out), (9, 32, 32));
}

#[test]
fn the_official_image2world_spec_runs_with_truncate() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    tiny_bundle(&bundle);
    let spec = testdata("specs/image2world.json");
    let out_dir = dir.path().join("out");
    let mut args = spec_args(&bundle, &spec, &out_dir);
    args.extend(["--steps".into(), "1".into()]);
    // The tiny tokenizer splits the official prompts into more than 512 tokens.
    assert_fails_with(&as_refs(&args), "too long");
    args.push("--truncate".into());
    run_ok(&as_refs(&args));
    for name in ["robot_welding", "bus_terminal"] {
        assert_eq!(frames_of(&out_dir.join(format!("{name}.mp4"))), (9, 32, 32));
    }
}

#[test]
fn a_lora_changes_the_output_and_a_missing_one_fails_first() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    tiny_bundle(&bundle);
    let b = bundle.to_str().unwrap();
    let lora = testdata("dit_lora/pytorch_lora_weights.safetensors");
    let base_out = dir.path().join("base.mp4");
    let lora_out = dir.path().join("lora.mp4");
    let args = |out: &Path| {
        vec![
            "generate".to_owned(),
            "--model".into(),
            b.into(),
            "--prompt".into(),
            "a ball".into(),
            "--dtype".into(),
            "f32".into(),
            "--steps".into(),
            "1".into(),
            "--save-latents".into(),
            out.with_extension("safetensors").to_str().unwrap().into(),
            "--out".into(),
            out.to_str().unwrap().into(),
        ]
    };
    run_ok(&as_refs(&args(&base_out)));
    let mut with_lora = args(&lora_out);
    with_lora.extend(["--lora".into(), format!("{}:0.5", lora.display())]);
    run_ok(&as_refs(&with_lora));
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lora_out.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(record["loras"][0][1], 0.5);
    let latents = |p: &Path| {
        orrery_nn::Checkpoint::open(p.with_extension("safetensors"))
            .unwrap()
            .load_as(
                "latents",
                candle_core::DType::F32,
                &candle_core::Device::Cpu,
            )
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_ne!(
        latents(&base_out),
        latents(&lora_out),
        "the adapter changes the DiT"
    );
    let mut missing = args(&dir.path().join("never.mp4"));
    missing.extend(["--lora".into(), "/nonexistent/adapter.safetensors".into()]);
    assert_fails_with(&as_refs(&missing), "/nonexistent/adapter.safetensors");
}

fn as_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `generate --model BUNDLE --spec SPEC --out-dir OUT --dtype f32`.
fn spec_args(bundle: &Path, spec: &Path, out_dir: &Path) -> Vec<String> {
    [
        "generate",
        "--model",
        bundle.to_str().unwrap(),
        "--spec",
        spec.to_str().unwrap(),
        "--out-dir",
        out_dir.to_str().unwrap(),
        "--dtype",
        "f32",
    ]
    .map(str::to_owned)
    .to_vec()
}

//! `orrery train dit` with `model.action`: a tiny action-conditioned model trained on gripper clips exports a bundle
//! that `orrery generate --image --actions` and `orrery policy eval --model` run; a family without actions is
//! refused by name.

mod common;

use std::path::Path;

use common::{assert_fails_with, run_ok};
use serde_json::json;

const OPTIM: &str = r#"{"lr": 1e-3, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "weight_decay": 0.01,
    "warmup_steps": 1, "decay": "cosine", "min_lr_ratio": 0.1, "grad_clip": 1.0, "ema_decay": 0.9}"#;

fn run_section(out: &Path) -> serde_json::Value {
    json!({"out_dir": out, "seed": 1, "steps": 1, "batch_size": 2, "checkpoint_every": 1,
           "keep_checkpoints": 1, "sample_every": 0})
}

fn write_config(path: &Path, config: &serde_json::Value) {
    std::fs::write(path, serde_json::to_string_pretty(config).unwrap()).unwrap();
}

/// A tiny DiT config with 4-wide actions, 4 per latent frame, on 9-frame 16x16 clips of `families`.
fn action_dit_config(out: &Path, vae: &Path, families: serde_json::Value) -> serde_json::Value {
    json!({
        "run": run_section(out),
        "data": {"clips": 4, "frames": 9, "width": 16, "height": 16, "fps": 16.0, "families": families,
                 "seed": 0},
        "optim": serde_json::from_str::<serde_json::Value>(OPTIM).unwrap(),
        "vae": vae,
        "model": {"in_channels": 4, "out_channels": 4, "model_channels": 24, "num_blocks": 1, "num_heads": 2,
                  "mlp_ratio": 2.0, "patch_spatial": 2, "patch_temporal": 1, "adaln_lora_dim": 8,
                  "rope_extrapolation": [1.0, 1.0, 1.0], "max_size": [8, 8, 8], "crossattn_emb_channels": 24,
                  "crossattn_proj_in_channels": 16, "concat_padding_mask": true,
                  "action": {"action_dim": 4, "temporal_compression_ratio": 4,
                             "hidden_dim_in_action_embedder": 16}},
        "text": {"width": 16, "layers": 1, "heads": 2, "max_tokens": 96},
        "flow": {"shift": 1.0, "high_sigma_prob": 0.0, "caption_dropout": 0.2, "cond_probs": [0.0, 1.0],
                 "cond_timestep": 0.1, "timestep_scale": 0.001, "image_batch_prob": 0.0},
        "sample_steps": 2, "sample_guidance": 1.5
    })
}

#[test]
fn the_embedded_action_config_resolves() {
    let config =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/nano-action-gripper.json");
    let out = run_ok(&[
        "train",
        "dit",
        "--config",
        config.to_str().unwrap(),
        "--dry-run",
    ]);
    let resolved: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        resolved["model"]["action"],
        json!({"action_dim": 4, "temporal_compression_ratio": 2, "hidden_dim_in_action_embedder": 1024})
    );
    // The embedded bundle's chunk: 33 frames, 32 actions.
    assert_eq!(resolved["data"]["frames"], 33);
    assert_eq!(resolved["data"]["families"], json!(["gripper"]));
}

#[test]
fn a_trained_action_model_rolls_out_in_generate_and_policy_eval() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let vae_config = json!({
        "run": run_section(&root.join("vae")),
        "data": {"clips": 4, "frames": 9, "width": 16, "height": 16, "fps": 16.0, "seed": 0},
        "optim": serde_json::from_str::<serde_json::Value>(OPTIM).unwrap(),
        "model": {"base_dim": 4, "z_dim": 4, "dim_mult": [1, 2, 2], "num_res_blocks": 1,
                  "temporal_downsample": [true, true]},
        "loss": {"reconstruction": "mse", "kl_weight": 1e-4, "edge_weight": 0.5, "object_weight": 4.0,
                 "object_max_fraction": 0.05},
        "crop_frames": 5, "crop_size": 16, "stats_clips": 2
    });
    let path = root.join("vae.json");
    write_config(&path, &vae_config);
    run_ok(&["train", "vae", "--config", path.to_str().unwrap()]);
    let vae = root.join("vae/final");

    // A family without actions is refused by name, before anything is encoded.
    let path = root.join("dit.json");
    write_config(
        &path,
        &action_dit_config(&root.join("bad"), &vae, json!(["gripper", "pusher"])),
    );
    assert_fails_with(
        &["train", "dit", "--config", path.to_str().unwrap()],
        "the family \"pusher\" records no actions",
    );

    write_config(
        &path,
        &action_dit_config(&root.join("dit"), &vae, json!(["gripper"])),
    );
    run_ok(&["train", "dit", "--config", path.to_str().unwrap()]);
    let model = root.join("dit/final");
    let m = model.to_str().unwrap();
    let config = std::fs::read_to_string(model.join("transformer/config.json")).unwrap();
    assert!(config.contains("\"action_dim\": 4"), "{config}");

    // orrery generate --image --actions: 10 actions from a start frame, 11 frames.
    let start = root.join("start.png");
    let image = orrery_media::RgbImage::from_fn(16, 16, |x, y| {
        orrery_media::Rgb([(x * 16) as u8, (y * 16) as u8, 128])
    });
    orrery_media::write_png(&start, &image).unwrap();
    let actions = root.join("actions.json");
    let rows: Vec<Vec<f64>> = (0..10)
        .map(|k| vec![1.0, -1.0, 0.1 * k as f64, 1.0])
        .collect();
    std::fs::write(&actions, json!({ "actions": rows }).to_string()).unwrap();
    let video = root.join("rollout.mp4");
    run_ok(&[
        "generate",
        "--model",
        m,
        "--image",
        start.to_str().unwrap(),
        "--actions",
        actions.to_str().unwrap(),
        "--prompt",
        "A robot gripper pushes a block.",
        "--out",
        video.to_str().unwrap(),
    ]);
    assert_eq!(orrery_media::read_video(&video).unwrap().frames.len(), 11);

    // orrery policy eval --model: the policy runs inside the model beside the simulator.
    let out = root.join("eval.json");
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
        "17",
        "--model",
        m,
        "--out",
        out.to_str().unwrap(),
    ]);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let worlds = json["worlds"].as_array().unwrap();
    assert_eq!(worlds.len(), 2);
    assert!(worlds[1]["world"].as_str().unwrap().starts_with("model "));
    assert_eq!(
        worlds[1]["episodes"][0]["actions"]
            .as_array()
            .unwrap()
            .len(),
        16
    );
}

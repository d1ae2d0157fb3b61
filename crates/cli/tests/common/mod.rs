//! Helpers shared by the CLI test files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use orrery_dit::{ActionConfig, CosmosDit, DitConfig};
use orrery_nn::Checkpoint;

pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

pub fn orrery(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orrery"))
        .args(args)
        .output()
        .expect("run orrery")
}

/// Runs a command that must succeed; the failure message is its standard error.
pub fn run_ok(args: &[&str]) -> Output {
    let run = orrery(args);
    assert!(
        run.status.success(),
        "orrery {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&run.stderr)
    );
    run
}

/// `orrery forward NET --model MODEL --inputs INPUTS --out OUT`, which must succeed.
pub fn forward(net: &str, model: &Path, inputs: &Path, out: &Path) {
    run_ok(&[
        "forward",
        net,
        "--model",
        model.to_str().unwrap(),
        "--inputs",
        inputs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
}

/// max |out[out_name] - reference[ref_name]| / max |reference|.
pub fn rel_err(out: &Path, out_name: &str, reference: &Path, ref_name: &str) -> f64 {
    let load = |p: &Path, n: &str| {
        Checkpoint::open(p)
            .unwrap()
            .load_as(n, DType::F64, &Device::Cpu)
            .unwrap()
    };
    orrery_nn::compare::max_rel_err(&load(out, out_name), &load(reference, ref_name)).unwrap()
}

/// Runs a command that must fail: non-zero exit, `expect` in the message, no panic.
pub fn assert_fails_with(args: &[&str], expect: &str) {
    let run = orrery(args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{expect}: succeeded");
    assert!(stderr.contains(expect), "{expect}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A bundle of 9-frame 32x32 chunks (8 actions a chunk), 3 steps, guidance 2, random weights, the tiny VAE and
/// Qwen2.5-VL fixtures; its DiT takes `action_dim`-wide actions (none: no action embedders) and reads the tiny
/// Qwen's 192-wide prompt embeddings.
pub fn action_bundle(root: &Path, action_dim: Option<usize>) {
    tiny_reason1_bundle(
        root,
        action_dim,
        r#"{"schedule": 5.0, "steps": 3, "guidance": 2.0, "cond_timestep": -1, "frames": 9, "width": 32, "height": 32, "fps": 20}"#,
    );
}

/// A diffusers-style bundle of the tiny fixtures, as a released model is laid out: a random DiT (with
/// `action_dim`-wide action embedders, if any) reading the tiny Qwen's 192-wide embeddings, the tiny VAE, the tiny
/// Qwen as its Reason1 text encoder, and `sampling` as its `orrery_sampling.json`.
pub fn tiny_reason1_bundle(root: &Path, action_dim: Option<usize>, sampling: &str) {
    let transformer = root.join("transformer");
    std::fs::create_dir_all(&transformer).unwrap();
    let mut config = DitConfig::from_diffusers_file(&testdata("dit_tiny/config.json")).unwrap();
    config.crossattn_proj_in_channels = Some(192);
    config.action = action_dim.map(|action_dim| ActionConfig {
        action_dim,
        temporal_compression_ratio: 4,
        hidden_dim_in_action_embedder: 16,
    });
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
    for (dir, src, files) in [
        (
            "vae",
            "vae_tiny",
            &["config.json", "diffusion_pytorch_model.safetensors"][..],
        ),
        (
            "text_encoder",
            "qwen_tiny",
            &[
                "config.json",
                "tokenizer.json",
                "tokenizer_config.json",
                "model.safetensors",
            ][..],
        ),
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        for f in files {
            std::fs::copy(testdata(src).join(f), root.join(dir).join(f)).unwrap();
        }
    }
    std::fs::write(root.join("orrery_sampling.json"), sampling).unwrap();
}

/// The latents (as stored) and the frames of `generate` with `extra` flags.
pub fn generate(bundle: &Path, out: &Path, extra: &[&str]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let latents = out.with_extension("safetensors");
    let mut args = vec![
        "generate",
        "--model",
        bundle.to_str().unwrap(),
        "--prompt",
        "a red ball bounces on the floor",
        "--out",
        out.to_str().unwrap(),
        "--save-latents",
        latents.to_str().unwrap(),
    ];
    args.extend(extra);
    run_ok(&args);
    let frames = orrery_media::read_video(out)
        .unwrap()
        .frames
        .into_iter()
        .map(|f| f.into_raw())
        .collect();
    let stored = orrery_nn::Checkpoint::open(&latents)
        .unwrap()
        .bytes("latents")
        .unwrap()
        .into_owned();
    (stored, frames)
}

//! Training action-conditioned DiTs (`model.action`) on gripper clips: a run from a bundle without action
//! embedders starts as that bundle's network, gives every parameter (both action embedders included) a gradient,
//! resumes bit for bit, and exports a bundle whose rollouts run through the pipeline; clear refusals for data
//! without actions, a ratio that is not the VAE's, and a bundle DiT of another shape.

mod common;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::{dit_config, losses, trained_dit, velocity_of};
use orrery_pipeline::{ActionSequence, Engine, GenerationOptions, Mode, WeightType};
use orrery_train::{DitTrainConfig, DitTrainer, Run};
use serde_json::json;

/// The tiny DiT of `common::dit_config` with 4-wide actions, 4 per latent frame (the test VAE's compression),
/// trained on 4 gripper clips of 9 frames with the official conditioning, from `bundle` if given.
fn action_config(out: &Path, vae: &Path, bundle: Option<&Path>) -> DitTrainConfig {
    let mut c = serde_json::to_value(dit_config(out, vae)).unwrap();
    c["run"]["steps"] = 2.into();
    c["run"]["batch_size"] = 2.into();
    c["run"]["checkpoint_every"] = 1.into();
    c["data"]["clips"] = 4.into();
    c["data"]["families"] = json!(["gripper"]);
    c["model"]["action"] = json!({"action_dim": 4, "temporal_compression_ratio": 4,
                                  "hidden_dim_in_action_embedder": 16});
    c["flow"]["cond_probs"] = json!([0.0, 1.0]);
    c["flow"]["image_batch_prob"] = 0.0.into();
    if let Some(b) = bundle {
        c["init_from"] = b.display().to_string().into();
    }
    serde_json::from_value(c).unwrap()
}

/// `common::velocity_of`'s input with 8 non-zero actions, (1, 8, 4).
fn velocity_with_actions(dit: &orrery_dit::CosmosDit) -> Tensor {
    let dev = Device::Cpu;
    let action = (Tensor::arange(0f32, 32., &dev)
        .unwrap()
        .reshape((1, 8, 4))
        .unwrap()
        .sin()
        .unwrap()
        * 5.0)
        .unwrap();
    common::velocity_on(dit, 16, Some(&action))
}

fn error_of(config: DitTrainConfig) -> String {
    match DitTrainer::new(config) {
        Ok(_) => panic!("the run was not refused"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_action_model_trains_from_a_bundle_resumes_exactly_and_rolls_out() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (vae_dir, _, bundle) = trained_dit(root);

    // Fresh action embedders with a zero last layer: the network starts as the bundle's.
    let straight_config = action_config(&root.join("a"), &vae_dir, Some(&bundle));
    let mut straight = DitTrainer::new(straight_config).unwrap();
    let actions = straight.data.actions.as_ref().unwrap();
    assert_eq!(actions.dims(), &[4, 8, 4]);
    let names: Vec<String> = straight
        .session
        .optimizer
        .vars
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    let action_names: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("dit.action_embedder_"))
        .collect();
    assert_eq!(action_names.len(), 8, "{names:?}");
    for (name, var) in straight.session.vars.named_vars() {
        if name.starts_with("dit.action_embedder_") && name.contains(".fc2.") {
            let max = var.as_tensor().abs().unwrap().max_all().unwrap();
            assert_eq!(max.to_scalar::<f32>().unwrap(), 0.0, "{name}");
        }
    }
    let source = orrery_dit::load_dit(
        &bundle.join("transformer/diffusion_pytorch_model.safetensors"),
        &orrery_dit::DitConfig {
            action: None,
            ..straight.model().clone()
        },
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let diff = orrery_nn::compare::max_abs_diff(
        &velocity_of(&source),
        &velocity_with_actions(&straight.dit),
    )
    .unwrap();
    assert_eq!(diff, 0.0, "the action network starts as the bundle's");

    // After one step every trainable parameter, both embedders' layers included, gets a gradient.
    let mut probe =
        DitTrainer::new(action_config(&root.join("g"), &vae_dir, Some(&bundle))).unwrap();
    probe.train(Some(1), |_| {}).unwrap();
    let norms = probe.gradient_norms().unwrap();
    assert_eq!(norms.len(), names.len());
    let without: Vec<&(String, f32)> = norms.iter().filter(|(_, g)| *g <= 0.0).collect();
    assert!(without.is_empty(), "no gradient: {without:?}");

    // Resumed at step 1, the run equals the straight one bit for bit (losses and exported weights).
    straight.train(None, |_| {}).unwrap();
    let mut first =
        DitTrainer::new(action_config(&root.join("b"), &vae_dir, Some(&bundle))).unwrap();
    first.train(Some(1), |_| {}).unwrap();
    drop(first);
    let mut resumed =
        DitTrainer::new(action_config(&root.join("b"), &vae_dir, Some(&bundle))).unwrap();
    assert_eq!(resumed.session.resume_latest().unwrap(), Some(1));
    resumed.train(None, |_| {}).unwrap();
    assert_eq!(
        losses(&straight.session.history),
        losses(&resumed.session.history)
    );
    assert_eq!(straight.session.history.len(), 2);
    let export = straight.export().unwrap();
    let weights = |dir: &Path| {
        std::fs::read(dir.join("transformer/diffusion_pytorch_model.safetensors")).unwrap()
    };
    assert!(weights(&export) == weights(&resumed.export().unwrap()));

    // The export is an action-conditioned bundle: its config carries the actions, and it rolls out 10 actions
    // (two chunks of 8) through the pipeline.
    let config = std::fs::read_to_string(export.join("transformer/config.json")).unwrap();
    assert!(config.contains("\"action_dim\": 4"), "{config}");
    assert!(
        config.contains("\"temporal_compression_ratio\": 4"),
        "{config}"
    );
    let options = GenerationOptions {
        weights: Some(WeightType::F32),
        ..GenerationOptions::default()
    };
    let engine = Engine::open(&export, options).unwrap();
    let (text, negative) = engine
        .clip_prompts(
            &[("A robot gripper pushes a block.", Mode::Image2World, None)],
            None,
        )
        .unwrap()
        .remove(0);
    let generator = engine.load().unwrap();
    let start = straight.config.data.clip(0).unwrap().images()[0].clone();
    let rows: Vec<Vec<f64>> = (0..10)
        .map(|k| vec![0.5, -0.5, 0.1 * k as f64, 1.0])
        .collect();
    let actions = ActionSequence::from_rows(&rows).unwrap();
    let mut frames = 0;
    let plan = generator
        .rollout(
            &start,
            &actions,
            &text,
            negative.as_ref(),
            0,
            || {},
            |_| {
                frames += 1;
                Ok(())
            },
        )
        .unwrap();
    assert_eq!((plan.chunk_actions, plan.chunks(), frames), (8, 2, 11));
    // The samples of an action run are rollouts of held-out clips' actions beside the clips.
    assert!(straight.write_samples().unwrap().unwrap().is_file());

    // Refusals: a bundle DiT of another width; a ratio that is not the VAE's temporal compression.
    let mut wide = action_config(&root.join("w"), &vae_dir, Some(&bundle));
    wide.model.as_mut().unwrap().model_channels = 32;
    let e = error_of(wide);
    assert!(
        e.contains("is not this run's network without its action embedders")
            && e.contains("width 24"),
        "{e}"
    );
    let mut ratio = action_config(&root.join("r"), &vae_dir, None);
    ratio
        .model
        .as_mut()
        .unwrap()
        .action
        .as_mut()
        .unwrap()
        .temporal_compression_ratio = 2;
    let e = error_of(ratio);
    assert!(
        e.contains("temporal_compression_ratio is 2, but the VAE")
            && e.contains("compresses time by 4"),
        "{e}"
    );
}

#[test]
fn action_models_are_refused_data_without_actions() {
    let dir = tempfile::tempdir().unwrap();
    let vae = dir.path().join("vae");
    let base = || serde_json::to_value(action_config(&dir.path().join("x"), &vae, None)).unwrap();
    let refused = |c: serde_json::Value| -> String {
        let c: DitTrainConfig = serde_json::from_value(c).unwrap();
        c.validate().unwrap_err()
    };
    let mut c = base();
    c["data"]["families"] = json!(["gripper", "pendulum"]);
    let e = refused(c);
    assert!(
        e.contains("the family \"pendulum\" records no actions") && e.contains("gripper"),
        "{e}"
    );
    let mut c = base();
    c["data"]["families"] = json!([]);
    assert!(refused(c).contains("data.families is empty"));
    let mut c = base();
    c["flow"]["cond_probs"] = json!([0.5, 0.25, 0.25]);
    assert!(refused(c).contains("1 conditioning latent frame"));
    let mut c = base();
    c["flow"]["image_batch_prob"] = 0.1.into();
    assert!(refused(c).contains("image_batch_prob"));
    let mut c = base();
    c["model"]["action"]["action_dim"] = 7.into();
    assert!(refused(c).contains("the gripper's actions are 4 wide"));
    base_is_valid(base());
}

fn base_is_valid(c: serde_json::Value) {
    let c: DitTrainConfig = serde_json::from_value(c).unwrap();
    c.validate().unwrap();
}

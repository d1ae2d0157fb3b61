//! Fine-tuning released-format bundles (a diffusers folder and the official `.pt` layout, both with a Reason1 text
//! encoder), full and LoRA, on tiny fixtures: every trained parameter gets a gradient, the frozen Reason1 embeds
//! each caption once into the run's prompt cache, a resumed run equals the straight one bit for bit, the export
//! generates through the pipeline, and a LoRA export loads back as an adapter on the base bundle.

mod common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use common::losses;
use orrery_dit::{CosmosDit, DitConfig, LoraSpec, LORA_WEIGHTS_FILE};
use orrery_nn::checkpoint::names::dit_official_to_diffusers;
use orrery_nn::checkpoint::save_tensors;
use orrery_pipeline::{
    Engine, GenerationOptions, ModelBundle, TextEncoderKind, WeightType, WorldInput,
};
use orrery_train::dit::{FlowTraining, PROMPT_CACHE_DIR};
use orrery_train::trainer::optim::OptimConfig;
use orrery_train::{DitTrainConfig, DitTrainer, Run};
use serde_json::json;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

/// The tiny DiT, reading the tiny Qwen's 3 x 64 = 192-wide multi-layer embeddings.
fn tiny_dit_config() -> DitConfig {
    let mut config = DitConfig::from_diffusers_file(&testdata("dit_tiny/config.json")).unwrap();
    config.crossattn_proj_in_channels = Some(192);
    config
}

/// Random weights of the tiny DiT, official names without prefix, sorted.
fn tiny_dit_weights(config: &DitConfig) -> Vec<(String, Tensor)> {
    let varmap = VarMap::new();
    CosmosDit::new(
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        config,
    )
    .unwrap();
    let mut weights: Vec<(String, Tensor)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    weights
}

fn copy_files(from: &str, to: &Path, files: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for f in files {
        std::fs::copy(testdata(from).join(f), to.join(f)).unwrap();
    }
}

const QWEN_FILES: [&str; 4] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "model.safetensors",
];
const VAE_FILES: [&str; 2] = ["config.json", "diffusion_pytorch_model.safetensors"];

fn write_sampling(root: &Path) {
    std::fs::write(
        root.join("orrery_sampling.json"),
        r#"{"schedule": 5.0, "steps": 2, "guidance": 2.0, "cond_timestep": 0.1, "frames": 9, "width": 32, "height": 32, "fps": 16}"#,
    )
    .unwrap();
}

/// A diffusers-style bundle: `transformer/` (diffusers names), `vae/`, `text_encoder/` (Reason1-shaped Qwen).
fn diffusers_bundle(root: &Path) -> PathBuf {
    let config = tiny_dit_config();
    let transformer = root.join("transformer");
    std::fs::create_dir_all(&transformer).unwrap();
    std::fs::write(transformer.join("config.json"), config.to_diffusers_json()).unwrap();
    let weights = tiny_dit_weights(&config)
        .into_iter()
        .map(|(n, t)| (dit_official_to_diffusers(&n), t))
        .collect();
    save_tensors(
        &transformer.join("diffusion_pytorch_model.safetensors"),
        weights,
    )
    .unwrap();
    copy_files("vae_tiny", &root.join("vae"), &VAE_FILES);
    copy_files("qwen_tiny", &root.join("text_encoder"), &QWEN_FILES);
    write_sampling(root);
    root.to_owned()
}

/// The official layout: a DiT `.pt` (`net.` names; its shape from the diffusers `config.json` beside it, as the
/// tiny network is no released preset), a Reason1 folder, and the VAE (`vae/`, as the tiny VAE is not the
/// Wan2.1 shape a `tokenizer.pth` implies).
fn official_bundle(root: &Path) -> PathBuf {
    let config = tiny_dit_config();
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("config.json"), config.to_diffusers_json()).unwrap();
    let weights = tiny_dit_weights(&config)
        .into_iter()
        .map(|(n, t)| (format!("net.{n}"), t))
        .collect();
    save_tensors(&root.join("model_ema_bf16.pt"), weights).unwrap();
    copy_files("vae_tiny", &root.join("vae"), &VAE_FILES);
    copy_files("qwen_tiny", &root.join("reason1"), &QWEN_FILES);
    write_sampling(root);
    root.to_owned()
}

/// A run of `steps` on three tiny physics clips from `bundle`; `optim` and `flow` left out (the official recipe)
/// but for a learning rate that moves the tiny network in two steps.
fn config(out: &Path, bundle: &Path, lora: bool) -> DitTrainConfig {
    let mut value = json!({
        "run": {"out_dir": out, "seed": 3, "steps": 2, "batch_size": 2, "checkpoint_every": 1,
                "keep_checkpoints": 2, "sample_every": 0},
        "data": {"clips": 3, "frames": 9, "width": 32, "height": 32, "fps": 16.0, "seed": 0},
        "init_from": bundle,
        "sample_steps": 2, "sample_guidance": 2.0
    });
    if lora {
        value["lora"] = json!({"rank": 4, "alpha": 8});
    }
    let mut config: DitTrainConfig = serde_json::from_value(value).unwrap();
    config.validate().unwrap();
    assert_eq!(config.optim, OptimConfig::official());
    assert_eq!(config.flow, FlowTraining::official_post_training());
    config.optim = OptimConfig {
        lr: 1e-3,
        warmup_steps: 0,
        ..OptimConfig::official()
    };
    config.optim.lambda_linear.as_mut().unwrap().f_start = 1.0;
    config.optim.lambda_linear.as_mut().unwrap().f_max = 1.0;
    // Every step draws a caption, some dropped: the two steps see both.
    config.flow.caption_dropout = 0.3;
    config
}

fn cache_entries(out: &Path) -> Vec<(PathBuf, std::time::SystemTime)> {
    let mut v: Vec<_> = std::fs::read_dir(out.join(PROMPT_CACHE_DIR))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let t = std::fs::metadata(&p).unwrap().modified().unwrap();
            (p, t)
        })
        .collect();
    v.sort();
    v
}

fn var_values(trainer: &DitTrainer) -> Vec<(String, Vec<u32>)> {
    trainer
        .session
        .optimizer
        .vars
        .iter()
        .map(|(n, v)| {
            let bits = v
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect();
            (n.clone(), bits)
        })
        .collect()
}

/// A Text2World clip of the bundle at `dir` (with `loras`), through the generation engine.
fn generate(dir: &Path, loras: Vec<LoraSpec>) -> Vec<orrery_media::RgbImage> {
    let options = GenerationOptions {
        weights: Some(WeightType::F32),
        truncate: true,
        loras,
        ..GenerationOptions::default()
    };
    let engine = Engine::open(dir, options).unwrap();
    let prompts = engine
        .prompts(&["a red ball rolls across the floor"], true, None)
        .unwrap();
    let generator = engine.load().unwrap();
    generator
        .generate(
            &WorldInput::Text,
            &prompts.prompts[0],
            prompts.negative.as_ref(),
            0,
            || {},
        )
        .unwrap()
        .frames
}

/// The velocity of `dit` on a fixed input of the tiny network's shape (192-wide text).
fn velocity_of(dit: &CosmosDit) -> Tensor {
    common::velocity_on(dit, 192, None)
}

/// Trains `bundle` two steps straight and one + one resumed, and checks the run and its export.
fn fine_tune(root: &Path, bundle: &Path, lora: bool) {
    let base = ModelBundle::open(bundle).unwrap();
    assert_eq!(base.text.as_ref().unwrap().kind, TextEncoderKind::Reason1);
    let mut straight = DitTrainer::new(config(&root.join("a"), bundle, lora)).unwrap();
    // The bundle gives the DiT and the VAE; the captions are embedded once, by the frozen Reason1.
    assert_eq!(straight.config.model.as_ref(), Some(&base.dit.config));
    assert!(straight.config.vae.is_some() && straight.config.text.is_none());
    let reason1 = straight.text.reason1().unwrap();
    let captions: std::collections::BTreeSet<&String> =
        straight.data.captions.iter().flatten().collect();
    assert_eq!(reason1.computed, captions.len());
    let cached = cache_entries(&root.join("a"));
    assert_eq!(cached.len(), captions.len());
    // A dropped caption is the zero embedding; a kept one is Reason1's, from the cache.
    let caption = captions.iter().next().unwrap().as_str();
    let batch = reason1
        .embed_batch(&[None, Some(caption)], &Device::Cpu)
        .unwrap();
    assert_eq!(batch.dims(), &[2, 512, 192]);
    let dropped = batch.get(0).unwrap().abs().unwrap().max_all().unwrap();
    assert_eq!(dropped.to_scalar::<f32>().unwrap(), 0.0);
    let kept = reason1.embed(caption, &Device::Cpu).unwrap();
    let same = (batch.get(1).unwrap() - kept.squeeze(0).unwrap()).unwrap();
    assert_eq!(
        same.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        0.0
    );
    assert!(
        kept.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 0.0
    );
    // Only the DiT (full) or only the adapters (LoRA) train; a step fails if one of them got no gradient.
    let names: Vec<String> = straight
        .session
        .optimizer
        .vars
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    let prefix = if lora { "lora." } else { "dit." };
    assert!(names.iter().all(|n| n.starts_with(prefix)), "{names:?}");
    let expected = if lora {
        // Two blocks: 4 + 4 attention projections and 2 MLP layers, A and B each.
        40
    } else {
        base.dit.config.parameter_shapes().len()
    };
    assert_eq!(names.len(), expected);
    let before = var_values(&straight);
    straight.train(None, |_| {}).unwrap();
    assert_eq!(straight.session.history.len(), 2);
    let after = var_values(&straight);
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    assert!(
        moved * 2 >= names.len(),
        "{moved} of {} parameters moved",
        names.len()
    );

    // One step, a new trainer on the same folder (the captions come from the cache), resume, one more step.
    let mut first = DitTrainer::new(config(&root.join("b"), bundle, lora)).unwrap();
    first.train(Some(1), |_| {}).unwrap();
    drop(first);
    let cached_b = cache_entries(&root.join("b"));
    let mut resumed = DitTrainer::new(config(&root.join("b"), bundle, lora)).unwrap();
    assert_eq!(resumed.text.reason1().unwrap().computed, 0);
    assert_eq!(cache_entries(&root.join("b")), cached_b);
    assert_eq!(resumed.session.resume_latest().unwrap(), Some(1));
    resumed.train(None, |_| {}).unwrap();
    assert_eq!(
        losses(&straight.session.history),
        losses(&resumed.session.history)
    );
    assert_eq!(var_values(&straight), var_values(&resumed));
    let ckpt = resumed.session.checkpoints().pop().unwrap().1;
    let saved: DitTrainConfig =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("config.json")).unwrap()).unwrap();
    assert_eq!(saved, resumed.config);

    // The export is a diffusers-style bundle with the base's Reason1 and VAE, and generates.
    let out = straight.export().unwrap();
    let exported = ModelBundle::open(&out).unwrap();
    assert_eq!(
        exported.text.as_ref().unwrap().kind,
        TextEncoderKind::Reason1
    );
    assert_eq!(exported.dit.config, base.dit.config);
    assert!(out.join("transformer/config.json").is_file());
    let (ema, words) = straight.ema_models().unwrap();
    assert!(words.is_none());
    let stored = exported.dit.load(DType::F32, &Device::Cpu).unwrap();
    let gap = orrery_nn::compare::max_rel_err(&velocity_of(&stored), &velocity_of(&ema)).unwrap();
    assert!(
        gap <= 1e-5,
        "the exported DiT differs from the EMA one by {gap}"
    );
    if !lora {
        // The EMA starts from the bundle's weights: two small steps stay near them.
        let plain = base.dit.load(DType::F32, &Device::Cpu).unwrap();
        let near =
            orrery_nn::compare::max_rel_err(&velocity_of(&stored), &velocity_of(&plain)).unwrap();
        assert!(
            near < 0.05,
            "the export is {near} away from the bundle it fine-tuned"
        );
    }
    let frames = generate(&out, vec![]);
    assert_eq!(frames.len(), 9);
    // Samples of a released model run on the CPU: only when asked for.
    assert!(straight.write_samples().unwrap().is_none());
    straight.config.run.sample_every = 1;
    assert!(straight.write_samples().unwrap().unwrap().is_file());
    if lora {
        // The adapters alone, on the base bundle, give the fused export's network and its clip.
        let adapter = out.join(LORA_WEIGHTS_FILE);
        let spec = LoraSpec {
            path: adapter.clone(),
            scale: 1.0,
        };
        let on_base = base
            .dit
            .load_with_loras(&[spec.open().unwrap()], DType::F32, &Device::Cpu)
            .unwrap();
        let gap =
            orrery_nn::compare::max_rel_err(&velocity_of(&on_base), &velocity_of(&stored)).unwrap();
        assert!(
            gap <= 1e-5,
            "base + adapter differs from the fused export by {gap}"
        );
        let plain = base.dit.load(DType::F32, &Device::Cpu).unwrap();
        let change =
            orrery_nn::compare::max_abs_diff(&velocity_of(&plain), &velocity_of(&stored)).unwrap();
        assert!(change > 1e-6, "the adapters changed nothing");
        assert_eq!(generate(bundle, vec![spec]).len(), 9);
    }
}

#[test]
fn a_diffusers_bundle_fine_tunes_in_full() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = diffusers_bundle(&tmp.path().join("bundle"));
    fine_tune(tmp.path(), &bundle, false);
}

#[test]
fn a_diffusers_bundle_fine_tunes_with_lora() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = diffusers_bundle(&tmp.path().join("bundle"));
    fine_tune(tmp.path(), &bundle, true);
}

#[test]
fn an_official_layout_bundle_fine_tunes_in_full() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = official_bundle(&tmp.path().join("bundle"));
    fine_tune(tmp.path(), &bundle, false);
}

#[test]
fn an_official_layout_bundle_fine_tunes_with_lora() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = official_bundle(&tmp.path().join("bundle"));
    fine_tune(tmp.path(), &bundle, true);
}

#[test]
fn settings_that_contradict_the_bundle_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let bundle = official_bundle(&root.join("bundle"));
    let fails = |c: DitTrainConfig| DitTrainer::new(c).err().unwrap().to_string();

    let mut text = config(&root.join("text"), &bundle, false);
    text.text = Some(
        serde_json::from_value(json!({"width": 192, "layers": 1, "heads": 2, "max_tokens": 64}))
            .unwrap(),
    );
    let err = fails(text);
    assert!(err.contains("leave out `text`"), "{err}");

    let mut model = config(&root.join("model"), &bundle, false);
    let mut other = tiny_dit_config();
    other.num_blocks = 1;
    model.model = Some(other);
    let err = fails(model);
    assert!(err.contains("`model` differs"), "{err}");

    let mut vae = config(&root.join("vae"), &bundle, false);
    vae.vae = Some(testdata("vae_tiny_wide_decoder"));
    let err = fails(vae);
    assert!(err.contains("not the bundle's VAE"), "{err}");

    // The bundle's own VAE and DiT, given explicitly, are accepted.
    let mut same = config(&root.join("same"), &bundle, false);
    same.vae = Some(bundle.join("vae"));
    same.model = Some(tiny_dit_config());
    same.run.steps = 1;
    DitTrainer::new(same).unwrap();

    for not_a_bundle in [root.join("missing"), testdata("vae_tiny")] {
        let mut c = config(&root.join("nothing"), &bundle, false);
        c.init_from = Some(not_a_bundle);
        let err = fails(c);
        assert!(err.contains("not a model bundle"), "{err}");
    }

    // What `--dry-run` prints: the bundle's DiT and VAE filled in.
    let resolved = config(&root.join("dry"), &bundle, false)
        .resolved()
        .unwrap();
    assert_eq!(resolved.model, Some(tiny_dit_config()));
    assert_eq!(resolved.vae, Some(bundle.join("vae")));

    // Without a released bundle, the shapes must be given.
    let mut scratch = config(&root.join("scratch"), &bundle, false);
    scratch.init_from = None;
    let err = scratch.validate().unwrap_err();
    assert!(err.contains("needs `model`, `text` and `vae`"), "{err}");
}

#[test]
fn memory_saving_options_train_a_released_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let bundle = diffusers_bundle(&root.join("bundle"));
    // Full: activation checkpointing per block takes the same first step as plain backpropagation.
    let mut plain = DitTrainer::new(config(&root.join("plain"), &bundle, false)).unwrap();
    let mut c = config(&root.join("ckpt"), &bundle, false);
    c.activation_checkpointing = true;
    let mut checkpointed = DitTrainer::new(c).unwrap();
    let (p, q) = (
        plain.train_step().unwrap(),
        checkpointed.train_step().unwrap(),
    );
    assert_eq!(p.loss.to_bits(), q.loss.to_bits());
    assert!((p.grad_norm - q.grad_norm).abs() <= 1e-5 * p.grad_norm);
    // LoRA on a bfloat16 base with float32 adapters, checkpointed too.
    let mut c = config(&root.join("bf16"), &bundle, true);
    c.activation_checkpointing = true;
    c.lora.as_mut().unwrap().bf16_base = true;
    let mut half = DitTrainer::new(c).unwrap();
    half.train(None, |_| {}).unwrap();
    assert!(half.session.history.iter().all(|p| p.loss.is_finite()));
    assert!(half
        .session
        .optimizer
        .vars
        .iter()
        .all(|(_, v)| v.dtype() == DType::F32));
    assert_eq!(generate(&half.export().unwrap(), vec![]).len(), 9);
}

#[test]
fn the_example_fine_tune_configs_read_with_the_official_defaults() {
    for name in ["finetune-2b-lora.json", "finetune-2b-full.json"] {
        let path = testdata("../configs/examples").join(name);
        let config = DitTrainConfig::read(&path).unwrap();
        assert_eq!(config.optim, OptimConfig::official(), "{name}");
        assert_eq!(
            config.flow,
            FlowTraining::official_post_training(),
            "{name}"
        );
        assert!(config.model.is_none() && config.text.is_none() && config.vae.is_none());
        assert_eq!(config.lora.is_some(), name.contains("lora"));
        // The bundle is a placeholder: the run says so.
        let err = DitTrainer::new(config).err().unwrap().to_string();
        assert!(err.contains("not a model bundle"), "{err}");
    }
}

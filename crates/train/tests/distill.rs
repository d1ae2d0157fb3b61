//! DMD2 distillation of a tiny trained bundle: the student/critic schedule, frozen and trained parameters, exact
//! resumption of both optimisers, and a student bundle that generates with the distilled sampler.

mod common;

use std::path::Path;

use candle_core::{Device, Tensor};
use common::{generate, losses, trained_dit, var_copy};
use orrery_pipeline::conditioning::batch_condition_mask;
use orrery_pipeline::distilled::{trigflow_x0, TrigCondition};
use orrery_pipeline::{Engine, GenerationOptions, Mode, ModelBundle, SamplerKind, WorldInput};
use orrery_text::Overflow;
use orrery_train::distill::ExportSteps;
use orrery_train::{DistillConfig, DistillTrainer, Run};
use serde_json::json;

fn distill_config(out: &Path, teacher: &Path) -> DistillConfig {
    let optim = json!({"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01,
                       "warmup_steps": 1, "decay": "constant", "min_lr_ratio": 1.0, "grad_clip": 1.0,
                       "ema_decay": 0.5});
    serde_json::from_value(json!({
        "run": {"out_dir": out, "seed": 4, "steps": 7, "batch_size": 2, "checkpoint_every": 3,
                "keep_checkpoints": 1, "sample_every": 0},
        "teacher": teacher,
        "data": {"clips": 4, "frames": 9, "width": 16, "height": 16, "fps": 16.0, "seed": 0},
        "student_optim": optim,
        "critic_optim": optim,
        "dmd": {"teacher_guidance": 1.5, "cond_probs": [0.4, 0.3, 0.3]}
    }))
    .unwrap()
}

fn var(trainer: &DistillTrainer, name: &str) -> Tensor {
    var_copy(&trainer.session.vars, name)
}

fn changed(a: &Tensor, b: &Tensor) -> bool {
    orrery_nn::compare::max_abs_diff(a, b).unwrap() > 0.0
}

#[test]
fn distillation_alternates_resumes_exactly_and_exports_a_four_step_student() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (_, _, teacher) = trained_dit(root);

    let mut straight = DistillTrainer::new(distill_config(&root.join("a"), &teacher)).unwrap();
    let proj = "student.crossattn_proj.0.weight";
    let block = "student.blocks.0.self_attn.q_proj.weight";
    let critic_block = "critic.blocks.0.self_attn.q_proj.weight";
    let (proj0, block0, critic0) = (
        var(&straight, proj),
        var(&straight, block),
        var(&straight, critic_block),
    );
    // Student and critic start as the teacher.
    let teacher_dit = orrery_dit::DitModelDir::open(&teacher.join("transformer")).unwrap();
    let stored = orrery_nn::Checkpoint::open(&teacher_dit.weights).unwrap();
    let teacher_q = stored
        .load("blocks.0.self_attn.q_proj.weight", &Device::Cpu)
        .unwrap();
    assert!(!changed(&block0, &teacher_q) && !changed(&critic0, &teacher_q));
    // The student's text projection is frozen; the rest of the student and the critic train.
    let trained = |prefix: &str| {
        let opt = if prefix == "student." {
            &straight.session.optimizer
        } else {
            &straight.session.secondary.as_ref().unwrap().optimizer
        };
        opt.vars.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
    };
    assert!(trained("student.")
        .iter()
        .all(|n| n.starts_with("student.")));
    assert!(!trained("student.")
        .iter()
        .any(|n| n.contains("crossattn_proj")));
    assert!(trained("critic.").iter().all(|n| n.starts_with("critic.")));

    // Iteration 0 updates the student only (every parameter got a gradient: AdamW refuses otherwise).
    straight.train(Some(1), |_| {}).unwrap();
    assert!(changed(&block0, &var(&straight, block)));
    assert!(!changed(&critic0, &var(&straight, critic_block)));
    // Iterations 1-4 update the critic only.
    let block1 = var(&straight, block);
    straight.train(Some(4), |_| {}).unwrap();
    assert!(!changed(&block1, &var(&straight, block)));
    assert!(changed(&critic0, &var(&straight, critic_block)));
    straight.train(None, |_| {}).unwrap();
    assert!(!changed(&proj0, &var(&straight, proj)));
    let second = straight.session.secondary.as_ref().unwrap();
    assert_eq!(
        (straight.session.history.len(), second.history.len()),
        (2, 5)
    );
    assert_eq!(straight.session.step(), 7);

    // Interrupted after 3 iterations (a checkpoint), resumed in a new trainer: the same losses, both optimisers.
    let mut first = DistillTrainer::new(distill_config(&root.join("b"), &teacher)).unwrap();
    first.train(Some(3), |_| {}).unwrap();
    drop(first);
    let mut resumed = DistillTrainer::new(distill_config(&root.join("b"), &teacher)).unwrap();
    assert_eq!(resumed.session.resume_latest().unwrap(), Some(3));
    resumed.train(None, |_| {}).unwrap();
    assert_eq!(
        losses(&straight.session.history),
        losses(&resumed.session.history)
    );
    let history = |t: &DistillTrainer| losses(&t.session.secondary.as_ref().unwrap().history);
    assert_eq!(history(&straight), history(&resumed));
    assert!(root.join("b/loss-secondary.png").is_file());

    // The student bundle samples with the distilled sampler, four calls, no guidance.
    let bundle_dir = straight.export().unwrap();
    assert!(straight.write_samples().unwrap().unwrap().is_file());
    let bundle = ModelBundle::open(&bundle_dir).unwrap();
    let d = &bundle.defaults;
    assert_eq!(
        (d.sampler, d.steps, d.guidance),
        (SamplerKind::Distilled, 4, 0.0)
    );
    let settings = d.sampling_settings(0, orrery_flow::noise::NoiseKind::Fast);
    assert_eq!(settings.calls().unwrap(), 4);
    let exported = orrery_nn::Checkpoint::open(
        bundle_dir.join("transformer/diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    let q = exported
        .load("blocks.0.self_attn.q_proj.weight", &Device::Cpu)
        .unwrap();
    assert!(
        changed(&q, &teacher_q),
        "the student is exported, not the teacher"
    );

    // `dmd.export_steps` sets each mode's steps in the exported bundle.
    straight.config.dmd.export_steps = ExportSteps {
        text2world: 2,
        image2world: 1,
        video2world: 3,
    };
    let bundle = ModelBundle::open(&straight.export().unwrap()).unwrap();
    let calls: Vec<usize> = Mode::ALL
        .into_iter()
        .map(|mode| {
            let settings = bundle.defaults.mode_settings(
                mode,
                Default::default(),
                0,
                orrery_flow::noise::NoiseKind::Fast,
            );
            assert_eq!(settings.sampler, SamplerKind::Distilled);
            settings.calls().unwrap()
        })
        .collect();
    assert_eq!(calls, [2, 1, 3]);

    // `dmd.teacher_modes` keeps the teacher for a mode: the bundle carries its DiT, and that mode's clip is
    // the teacher bundle's, bit for bit; the other modes stay the student's.
    straight.config.dmd.teacher_modes = vec!["image2world".into()];
    let bundle_dir = straight.export().unwrap();
    let bundle = ModelBundle::open(&bundle_dir).unwrap();
    assert!(bundle.mode_dits[Mode::Image2World as usize].is_some());
    assert!(bundle.mode_dits[Mode::Text2World as usize].is_none());
    let teacher_bundle = ModelBundle::open(&teacher).unwrap();
    let settings = |b: &ModelBundle, mode| {
        b.defaults.mode_settings(
            mode,
            Default::default(),
            0,
            orrery_flow::noise::NoiseKind::Fast,
        )
    };
    assert_eq!(
        settings(&bundle, Mode::Image2World),
        settings(&teacher_bundle, Mode::Image2World)
    );
    assert_eq!(
        settings(&bundle, Mode::Text2World).sampler,
        SamplerKind::Distilled
    );
    let image = generate(&teacher, &WorldInput::Text)[0].clone();
    let input = WorldInput::Image(image);
    assert_eq!(generate(&bundle_dir, &input), generate(&teacher, &input));
    assert_ne!(
        generate(&bundle_dir, &WorldInput::Text),
        generate(&teacher, &WorldInput::Text)
    );
    // The provenance record names the mode's DiT folder.
    let engine = Engine::open(&bundle_dir, GenerationOptions::default()).unwrap();
    let prompts = engine.prompts(&["a red ball"], true, None).unwrap();
    let generator = engine.load().unwrap();
    let out = generator
        .generate(
            &input,
            &prompts.prompts[0],
            prompts.negative.as_ref(),
            0,
            || {},
        )
        .unwrap();
    let record = |mode| generator.record("a red ball", mode, 0, &out).transformer;
    assert_eq!(
        record(Mode::Image2World).as_deref(),
        Some("teacher_transformer")
    );
    assert_eq!(record(Mode::Text2World), None);
    // Exported again into the same folder without teacher modes, it leaves no teacher DiT behind.
    straight.config.dmd.teacher_modes.clear();
    straight.export().unwrap();
    assert!(!bundle_dir.join("teacher_transformer").exists());
    straight.config.dmd.teacher_modes = vec!["image2world".into()];
    // A trainer reading the bundle takes its `transformer/` for every mode: the student's own sampling.
    let one = bundle.defaults.one_transformer();
    assert_eq!(one.mode_transformers, [None, None, None]);
    assert_eq!(
        settings_of(&one, Mode::Image2World).sampler,
        SamplerKind::Distilled
    );
    // Every mode to the teacher is refused: the bundle would not use the student.
    let mut all = distill_config(&root.join("c"), &teacher);
    all.dmd.teacher_modes = Mode::ALL.iter().map(|m| m.name().to_owned()).collect();
    assert!(all.validate().unwrap_err().contains("every mode"));
    all.dmd.teacher_modes = vec!["image2video".into()];
    assert!(all.validate().unwrap_err().contains("image2video"));
}

fn settings_of(
    d: &orrery_pipeline::BundleDefaults,
    mode: Mode,
) -> orrery_pipeline::SamplingSettings {
    d.mode_settings(
        mode,
        Default::default(),
        0,
        orrery_flow::noise::NoiseKind::Fast,
    )
}

/// Mean squared distance of the student's one-step Video2World estimate (one conditioning latent frame) to the
/// teacher's, from the same fixed noise, on the first two training clips.
fn one_step_gap(trainer: &DistillTrainer) -> f32 {
    let gt = trainer.data.latents.narrow(0, 0, 2).unwrap();
    let (b, _, t, h, w) = gt.dims5().unwrap();
    let mask = batch_condition_mask(&[1, 1], t, h, w, &Device::Cpu).unwrap();
    let ids: Vec<Vec<u32>> = (0..b)
        .map(|i| {
            let caption = &trainer.data.captions[i][0];
            trainer
                .text
                .config
                .tokenize(caption, Overflow::Truncate)
                .unwrap()
        })
        .collect();
    let ids: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
    let text = trainer.text.embed_batch(&ids).unwrap();
    let condition = TrigCondition {
        gt: &gt,
        mask: &mask,
        text: &text,
        pin_timestep: true,
    };
    let n = gt.elem_count();
    let noise = Tensor::arange(0f32, n as f32, &Device::Cpu)
        .and_then(|x| (x * 0.37)?.sin()?.reshape(gt.dims()))
        .unwrap();
    let times = vec![std::f64::consts::FRAC_PI_2; b];
    let student = trigflow_x0(&trainer.student, &noise, &times, &condition).unwrap();
    let teacher = trigflow_x0(&trainer.teacher, &noise, &times, &condition).unwrap();
    (student - teacher)
        .and_then(|d| d.sqr()?.mean_all()?.to_scalar::<f32>())
        .unwrap()
}

#[test]
fn the_one_step_regression_keeps_the_conditioned_estimate_near_the_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (_, _, teacher) = trained_dit(root);
    let run = |name: &str, weight: f64| {
        let mut config = distill_config(&root.join(name), &teacher);
        config.run.steps = 10;
        config.run.checkpoint_every = 10;
        config.dmd.student_update_freq = 2;
        // Image2World and Video2World only, so every sample is regressed.
        config.dmd.cond_probs = vec![0.0, 0.5, 0.5];
        config.dmd.regression_weight = weight;
        let mut trainer = DistillTrainer::new(config).unwrap();
        trainer.train(None, |_| {}).unwrap();
        trainer
    };
    let (free, held) = (run("free", 0.0), run("held", 100.0));
    // The student starts as the teacher, so the first update's regression is zero and the losses agree; the
    // next ones differ.
    let (a, b) = (losses(&free.session.history), losses(&held.session.history));
    assert_eq!(a[0], b[0]);
    assert_ne!(a[1..], b[1..]);
    let (gap_free, gap_held) = (one_step_gap(&free), one_step_gap(&held));
    assert!(gap_free > 0.0);
    assert!(
        gap_held < 0.5 * gap_free,
        "regressed {gap_held} against free {gap_free}"
    );
}

#[test]
fn bad_distillation_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = |dmd: serde_json::Value| {
        let mut c = serde_json::to_value(distill_config(dir.path(), dir.path())).unwrap();
        c["dmd"] = dmd;
        let path = dir.path().join("c.json");
        std::fs::write(&path, c.to_string()).unwrap();
        DistillConfig::read(&path).unwrap_err().to_string()
    };
    assert!(config(json!({"student_steps": 5})).contains("dmd.student_steps"));
    assert!(config(json!({"student_update_freq": 1})).contains("student_update_freq"));
    assert!(config(json!({"cond_probs": [0.5, 0.4]})).contains("dmd.cond_probs"));
    assert!(config(json!({"teacher_guidanc": 2})).contains("teacher_guidanc"));
    let steps = config(json!({"export_steps": {"video2world": 5}}));
    assert!(steps.contains("dmd.export_steps.video2world 5"), "{steps}");
    assert!(config(json!({"export_steps": {"image2world": 0}})).contains("image2world 0"));
    assert!(config(json!({"regression_weight": -1})).contains("dmd.regression_weight -1"));
    // A teacher that is not a bundle is named.
    let err = DistillTrainer::new(distill_config(
        &dir.path().join("r"),
        &dir.path().join("none"),
    ))
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("none"), "{err}");
}

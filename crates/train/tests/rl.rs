//! RL post-training of a tiny trained bundle: every policy parameter trains (or only the adapters), a resumed run
//! repeats the same steps bit for bit, the reward history and curves are written, and the post-trained bundle
//! samples with the rollout sampler; and each reward on hand-made videos of a physics world.

mod common;

use std::path::Path;

use common::{generate, losses, trained_dit, var_copy};
use orrery_media::RgbImage;
use orrery_pipeline::{BundleDefaults, Mode, ModelBundle, SamplerKind, WorldInput, SAMPLING_FILE};
use orrery_train::rl::export::{keep_untrained_routes, policy_defaults};
use orrery_train::rl::rewards::{continuation_score, plausibility, reward, Judged, RewardKind};
use orrery_train::trainer::bundle_files::link_or_copy_folder;
use orrery_train::{DataConfig, RlConfig, RlTrainer, Run};
use serde_json::json;

fn rl_config(out: &Path, bundle: &Path, extra: serde_json::Value) -> RlConfig {
    let mut c = json!({
        "run": {"out_dir": out, "seed": 5, "steps": 4, "batch_size": 2, "checkpoint_every": 2,
                "keep_checkpoints": 1, "sample_every": 0},
        "init_from": bundle,
        "data": {"clips": 3, "frames": 9, "width": 16, "height": 16, "fps": 16.0, "seed": 0},
        "optim": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "weight_decay": 1e-4,
                  "warmup_steps": 1, "decay": "constant", "min_lr_ratio": 1.0, "grad_clip": 1.0,
                  "ema_decay": 0.5},
        "grpo": {"sample_steps": 4, "rollouts": 3, "cond_probs": [0.5, 0.5]},
        "rewards": [{"kind": "found", "weight": 1.0}, {"kind": "caption", "weight": 0.5},
                    {"kind": "plausibility", "weight": 0.5}, {"kind": "psnr", "weight": 1.0}]
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(c).unwrap()
}

#[test]
fn rl_trains_every_policy_weight_resumes_exactly_and_exports_a_churn_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (_, _, bundle) = trained_dit(root);

    let mut straight = RlTrainer::new(rl_config(&root.join("a"), &bundle, json!({}))).unwrap();
    assert!(straight
        .session
        .optimizer
        .vars
        .iter()
        .all(|(n, _)| n.starts_with("dit.")));
    // Every step updates every policy weight (AdamW refuses a parameter without a gradient).
    straight.train(None, |_| {}).unwrap();
    assert_eq!(straight.rewards.points.len(), 4);
    assert!(straight.rewards.points.iter().all(|p| p.mean.is_finite()));

    let mut first = RlTrainer::new(rl_config(&root.join("b"), &bundle, json!({}))).unwrap();
    first.train(Some(2), |_| {}).unwrap();
    drop(first);
    let mut resumed = RlTrainer::new(rl_config(&root.join("b"), &bundle, json!({}))).unwrap();
    assert_eq!(resumed.session.resume_latest().unwrap(), Some(2));
    resumed.train(None, |_| {}).unwrap();
    assert_eq!(
        losses(&straight.session.history),
        losses(&resumed.session.history)
    );
    assert_eq!(straight.rewards.points, resumed.rewards.points);

    let exported = straight.export().unwrap();
    assert!(root.join("a/rewards.png").is_file());
    assert!(root.join("a/reward-found.png").is_file());
    assert!(straight.write_samples().unwrap().unwrap().is_file());
    let d = ModelBundle::open(&exported).unwrap().defaults;
    assert_eq!(
        (d.sampler, d.steps, d.guidance),
        (SamplerKind::Churn, 4, 0.0)
    );
    let settings = d.sampling_settings(0, orrery_flow::noise::NoiseKind::Fast);
    assert_eq!(settings.calls().unwrap(), 5);
}

#[test]
fn export_sampling_bundle_keeps_the_bundles_own_sampling() {
    let root = Path::new("unused");
    let keeping = rl_config(
        root,
        root,
        json!({"grpo": {"sample_steps": 4, "rollouts": 3, "cond_probs": [0.5, 0.5],
                        "export_sampling": "bundle"}}),
    );
    let bundle = BundleDefaults {
        steps: 20,
        guidance: 2.0,
        ..BundleDefaults::default()
    };
    assert_eq!(policy_defaults(&bundle, &keeping), bundle);
    let rollout = policy_defaults(&bundle, &rl_config(root, root, json!({})));
    assert_eq!(
        (rollout.sampler, rollout.steps, rollout.guidance),
        (SamplerKind::Churn, 4, 0.0)
    );
}

#[test]
fn lora_rl_trains_only_adapters_with_the_flow_grpo_sampler() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (_, _, bundle) = trained_dit(root);
    let extra = json!({
        "lora": {"rank": 2, "alpha": 2.0, "targets": ["q_proj", "mlp.layer1"]},
        "grpo": {"sampler": "flow-grpo", "sample_steps": 4, "rollouts": 2, "cond_probs": [0.0, 1.0],
                 "log_ratio": "gaussian", "data_beta": 0.0},
        "run": {"out_dir": root.join("l"), "seed": 5, "steps": 2, "batch_size": 1, "checkpoint_every": 2,
                "keep_checkpoints": 1, "sample_every": 0}
    });
    let mut t = RlTrainer::new(rl_config(&root.join("l"), &bundle, extra)).unwrap();
    assert!(!t.lora_modules.is_empty());
    assert!(t
        .session
        .optimizer
        .vars
        .iter()
        .all(|(n, _)| n.starts_with("lora.")));
    t.train(None, |_| {}).unwrap();
    let dir = t.export().unwrap();
    assert!(dir.join("pytorch_lora_weights.safetensors").is_file());
    // A Flow-GRPO run keeps the bundle's own sampler.
    let d = ModelBundle::open(&dir).unwrap().defaults;
    assert_eq!(d.sampler, SamplerKind::UniPc);
}

#[test]
fn rl_through_the_distilled_sampler_trains_and_exports_a_distilled_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (_, _, bundle) = trained_dit(root);
    let extra = json!({
        "grpo": {"sampler": "distilled", "sample_steps": 2, "rollouts": 3, "cond_probs": [0.5, 0.5],
                 "log_ratio": "gaussian"},
        "run": {"out_dir": root.join("d"), "seed": 5, "steps": 2, "batch_size": 1, "checkpoint_every": 2,
                "keep_checkpoints": 1, "sample_every": 0}
    });
    let config = rl_config(&root.join("d"), &bundle, extra);
    // A 2-step rollout trains on its first transition, the one-step estimate.
    assert_eq!(config.grpo.trained_steps(), 1);
    let mut t = RlTrainer::new(config.clone()).unwrap();
    let q = "dit.blocks.0.self_attn.q_proj.weight";
    let q0 = var_copy(&t.session.vars, q);
    // Every policy weight gets a gradient each step (AdamW refuses otherwise).
    t.train(None, |_| {}).unwrap();
    let q1 = var_copy(&t.session.vars, q);
    assert!(orrery_nn::compare::max_abs_diff(&q0, &q1).unwrap() > 0.0);
    assert!(t.rewards.points.iter().all(|p| p.mean.is_finite()));
    // A bundle that is not distilled exports with the distilled sampler at the run's steps; a distilled one
    // keeps its own per-mode sampling.
    let d = ModelBundle::open(&t.export().unwrap()).unwrap().defaults;
    assert_eq!((d.sampler, d.steps), (SamplerKind::Distilled, 2));
    let student = BundleDefaults {
        sampler: SamplerKind::Distilled,
        steps: 3,
        ..BundleDefaults::default()
    };
    assert_eq!(policy_defaults(&student, &config), student);
}

#[test]
fn a_mode_the_run_never_rolls_out_keeps_the_source_bundles_own_dit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (_, _, bundle) = trained_dit(root);
    // A source bundle whose Image2World and Video2World sample with a DiT of their own, in one step (as a
    // distilled bundle's teacher modes do); the bundle's own default is 3 steps.
    let source = root.join("routed");
    link_or_copy_folder(&bundle, &source).unwrap();
    link_or_copy_folder(&bundle.join("transformer"), &source.join("own_transformer")).unwrap();
    let mut routed = ModelBundle::open(&bundle).unwrap().defaults;
    for mode in [Mode::Image2World, Mode::Video2World] {
        routed.mode_transformers[mode as usize] = Some("own_transformer".into());
        routed.per_mode[mode as usize].steps = Some(1);
    }
    std::fs::write(source.join(SAMPLING_FILE), routed.to_json()).unwrap();

    // Text2World only.
    let extra = json!({
        "grpo": {"sample_steps": 4, "rollouts": 2, "cond_probs": [1.0]},
        "run": {"out_dir": root.join("t"), "seed": 5, "steps": 1, "batch_size": 1, "checkpoint_every": 1,
                "keep_checkpoints": 1, "sample_every": 0}
    });
    let config = rl_config(&root.join("t"), &source, extra);
    let mut t = RlTrainer::new(config.clone()).unwrap();
    t.train(None, |_| {}).unwrap();
    let exported = t.export().unwrap();
    let d = ModelBundle::open(&exported).unwrap().defaults;
    let own = Some("own_transformer".to_string());
    assert_eq!(d.mode_transformers, [None, own.clone(), own.clone()]);
    assert_eq!((d.sampler, d.steps), (SamplerKind::Churn, 4));
    for mode in [Mode::Image2World, Mode::Video2World] {
        assert_eq!(d.per_mode[mode as usize], routed.resolved_mode(mode));
        assert_eq!(d.per_mode[mode as usize].steps, Some(1));
    }
    // Image2World samples as the source bundle does; Text2World is the policy's.
    let image = generate(&source, &WorldInput::Text)[0].clone();
    let input = WorldInput::Image(image);
    assert_eq!(generate(&exported, &input), generate(&source, &input));
    assert_ne!(
        generate(&exported, &WorldInput::Text),
        generate(&source, &WorldInput::Text)
    );

    // A mode the run rolls out is the policy's.
    let mut both = config.grpo.clone();
    both.cond_probs = vec![0.5, 0.5];
    let (d, folders) = keep_untrained_routes(&routed, BundleDefaults::default(), &both);
    assert_eq!(d.mode_transformers, [None, None, own]);
    assert_eq!(folders, ["own_transformer"]);
    let mut every = both;
    every.cond_probs = vec![0.4, 0.3, 0.3];
    let (d, folders) = keep_untrained_routes(&routed, BundleDefaults::default(), &every);
    assert_eq!(d, BundleDefaults::default());
    assert!(folders.is_empty());
}

#[test]
fn bad_rl_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let read = |extra: serde_json::Value| {
        let c = serde_json::to_value(rl_config(dir.path(), dir.path(), json!({}))).unwrap();
        let mut c = c.as_object().unwrap().clone();
        for (k, v) in extra.as_object().unwrap() {
            c.insert(k.clone(), v.clone());
        }
        let path = dir.path().join("c.json");
        std::fs::write(&path, serde_json::Value::Object(c).to_string()).unwrap();
        RlConfig::read(&path).unwrap_err().to_string()
    };
    assert!(read(json!({"grpo": {"rollouts": 1}})).contains("grpo.rollouts"));
    assert!(read(json!({"grpo": {"sample_steps": 1}})).contains("grpo.sample_steps"));
    assert!(read(json!({"grpo": {"cond_probs": [0.5]}})).contains("grpo.cond_probs"));
    assert!(read(json!({"grpo": {"sampler": "ddim"}})).contains("ddim"));
    assert!(read(json!({"grpo": {"export_sampling": "best"}})).contains("best"));
    let distilled = read(json!({"grpo": {"sampler": "distilled", "sample_steps": 5}}));
    assert!(
        distilled.contains("distilled rollout sampler: 5 steps"),
        "{distilled}"
    );
    assert!(read(json!({"rewards": []})).contains("rewards"));
    assert!(
        read(json!({"rewards": [{"kind": "external", "weight": 1.0}]})).contains("reward_command")
    );
    assert!(read(json!({"rewards": [{"kind": "found", "weight": -1.0}]})).contains("weight"));
    assert!(read(json!({"rewards": [{"kind": "beauty", "weight": 1.0}]})).contains("beauty"));
}

/// A physics world with moving objects and its frames, at the bench's size.
fn world() -> (Vec<RgbImage>, orrery_physics::GroundTruth) {
    let data = DataConfig {
        clips: 8,
        frames: 33,
        width: 64,
        height: 64,
        fps: 16.0,
        families: vec!["fall".into()],
        seed: 11,
        videos: None,
        episode_frames: None,
    };
    let clip = data.clip(0).unwrap();
    (clip.images(), clip.truth)
}

fn judged<'a>(
    frames: &'a [RgbImage],
    real: &'a [RgbImage],
    truth: &'a orrery_physics::GroundTruth,
) -> Judged<'a> {
    Judged {
        frames,
        real,
        truth,
        conditioning: 5,
        caption: &truth.captions.medium,
        fps: 16.0,
    }
}

fn value(
    kind: RewardKind,
    frames: &[RgbImage],
    real: &[RgbImage],
    truth: &orrery_physics::GroundTruth,
) -> f64 {
    let j = judged(frames, real, truth);
    let score = continuation_score(&j);
    reward(kind, &j, score.as_ref()).unwrap_or(f64::NAN)
}

#[test]
fn rewards_prefer_the_true_continuation_to_a_frozen_or_emptied_one() {
    let (real, truth) = world();
    // Frozen: the last conditioning frame held; emptied: the background everywhere after the conditioning.
    let mut frozen = real[..5].to_vec();
    frozen.extend(std::iter::repeat_n(real[4].clone(), real.len() - 5));
    let background = RgbImage::from_pixel(64, 64, orrery_media::Rgb(truth.scene.background));
    let mut empty = real[..5].to_vec();
    empty.extend(std::iter::repeat_n(background, real.len() - 5));
    for kind in [
        RewardKind::Trajectory,
        RewardKind::Found,
        RewardKind::Psnr,
        RewardKind::Caption,
        RewardKind::Events,
    ] {
        let (perfect, still, none) = (
            value(kind, &real, &real, &truth),
            value(kind, &frozen, &real, &truth),
            value(kind, &empty, &real, &truth),
        );
        // Presence rewards cannot tell a held frame from motion; the others must.
        let presence = matches!(
            kind,
            RewardKind::Found | RewardKind::Caption | RewardKind::Count
        );
        assert!(
            perfect > still || (presence && perfect >= still),
            "{kind:?}: {perfect} {still}"
        );
        assert!(perfect > none, "{kind:?}: {perfect} vs emptied {none}");
    }
    assert!((value(RewardKind::Trajectory, &real, &real, &truth) - 1.0).abs() < 0.05);
    assert_eq!(value(RewardKind::Found, &real, &real, &truth), 1.0);
    assert_eq!(value(RewardKind::Psnr, &real, &real, &truth), 1.0);
    // Gravity is fitted on the true fall and found nowhere in an emptied one; objects pushed 12 pixels down sink
    // into the ground.
    let g = value(RewardKind::Gravity, &real, &real, &truth);
    assert!(g > 0.8, "{g}");
    assert!(value(RewardKind::Gravity, &empty, &real, &truth).is_nan());
    let sunk: Vec<RgbImage> = real
        .iter()
        .map(|f| {
            let mut g = f.clone();
            for (x, y, p) in f.enumerate_pixels() {
                g.put_pixel(x, y, if y >= 12 { *f.get_pixel(x, y - 12) } else { *p });
            }
            g
        })
        .collect();
    let mut sinking = real[..5].to_vec();
    sinking.extend_from_slice(&sunk[5..]);
    assert_eq!(value(RewardKind::Penetration, &real, &real, &truth), 1.0);
    let p = value(RewardKind::Penetration, &sinking, &real, &truth);
    assert!(p < 1.0, "{p}");
    // Text2World: no continuation, so no grounded value; plausibility and caption still apply.
    let t2w = Judged {
        conditioning: 0,
        ..judged(&real, &real, &truth)
    };
    assert!(continuation_score(&t2w).is_none());
    assert_eq!(reward(RewardKind::Trajectory, &t2w, None), None);
    assert_eq!(reward(RewardKind::Caption, &t2w, None), Some(1.0));
    assert_eq!(reward(RewardKind::Events, &t2w, None), Some(1.0));
    // A caption that tells no event gives the events reward no value.
    let silent = Judged {
        caption: "A ball.",
        ..judged(&real, &real, &truth)
    };
    assert_eq!(reward(RewardKind::Events, &silent, None), None);
}

#[test]
fn plausibility_counts_duplicates_and_vanishing_objects() {
    let (real, truth) = world();
    let perfect = plausibility(&judged(&real, &real, &truth));
    assert!(perfect > 0.9, "{perfect}");
    // Every object painted a second time far away: duplicates in every frame.
    let doubled: Vec<RgbImage> = real
        .iter()
        .map(|f| {
            let mut g = f.clone();
            for (x, y, p) in f.enumerate_pixels() {
                if truth
                    .scene
                    .objects
                    .iter()
                    .any(|o| orrery_eval::track::matches(p, o.color))
                {
                    g.put_pixel((x + 32) % 64, (y + 32) % 64, *p);
                }
            }
            g
        })
        .collect();
    let dup = plausibility(&judged(&doubled, &real, &truth));
    assert!(dup < perfect, "{dup} vs {perfect}");
    // Objects that vanish in open view halfway through.
    let background = RgbImage::from_pixel(64, 64, orrery_media::Rgb(truth.scene.background));
    let mut vanishing = real[..16].to_vec();
    vanishing.extend(std::iter::repeat_n(background, real.len() - 16));
    let gone = plausibility(&judged(&vanishing, &real, &truth));
    assert!(gone < perfect, "{gone} vs {perfect}");
}

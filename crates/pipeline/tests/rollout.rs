//! Action rollouts on a tiny random action-conditioned model folder built here (the `dit_tiny` shape with action
//! embedders, the tiny VAE): chunk count, frame count, streaming, determinism per seed, and clear errors.

mod common;

use std::path::Path;

use candle_core::Tensor;
use common::testdata;
use orrery_dit::{ActionConfig, DitConfig};
use orrery_media::{Rgb, RgbImage};
use orrery_pipeline::{
    ActionSequence, Engine, GenerationOptions, Generator, SamplingOverrides, WeightType,
};

const ACTION: ActionConfig = ActionConfig {
    action_dim: 3,
    temporal_compression_ratio: 4,
    hidden_dim_in_action_embedder: 16,
};

/// Uniform values in [-scale, scale) (`orrery_nn::compare::seeded_uniform`).
fn seeded(seed: u64, shape: &[usize], scale: f64) -> Tensor {
    orrery_nn::compare::seeded_uniform(seed, shape, scale).unwrap()
}

/// A bundle: transformer/ (the tiny DiT shape with `action`, random official-named weights), the tiny VAE, and
/// sampling defaults of 9-frame 32x32 chunks (8 actions a chunk), 2 steps, guidance `guidance`.
fn action_bundle(root: &Path, action: Option<ActionConfig>, guidance: f64) {
    let transformer = root.join("transformer");
    std::fs::create_dir_all(&transformer).unwrap();
    let mut config = DitConfig::from_diffusers_file(&testdata("dit_tiny/config.json")).unwrap();
    config.action = action;
    std::fs::write(transformer.join("config.json"), config.to_diffusers_json()).unwrap();
    let tensors = config
        .parameter_shapes()
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let norm = name.ends_with("norm.weight");
            let t = seeded(i as u64 + 1, &shape, if norm { 0.1 } else { 0.2 });
            let t = if norm { (t + 1.0).unwrap() } else { t };
            (format!("net.{name}"), t)
        })
        .collect();
    orrery_nn::checkpoint::save_tensors(&transformer.join("action_cond.safetensors"), tensors)
        .unwrap();
    std::fs::create_dir_all(root.join("vae")).unwrap();
    for f in ["config.json", "diffusion_pytorch_model.safetensors"] {
        std::fs::copy(testdata("vae_tiny").join(f), root.join("vae").join(f)).unwrap();
    }
    std::fs::write(
        root.join("orrery_sampling.json"),
        format!(
            r#"{{"schedule": 5.0, "steps": 2, "guidance": {guidance}, "cond_timestep": 0.1, "frames": 9,
                "width": 32, "height": 32, "fps": 20}}"#
        ),
    )
    .unwrap();
}

fn generator(root: &Path) -> Generator {
    let options = GenerationOptions {
        weights: Some(WeightType::F32),
        sampling: SamplingOverrides {
            seed: 0,
            ..SamplingOverrides::default()
        },
        ..GenerationOptions::default()
    };
    Engine::open(root, options).unwrap().load().unwrap()
}

fn start_frame() -> RgbImage {
    RgbImage::from_fn(32, 32, |x, y| Rgb([(x * 8) as u8, (y * 8) as u8, 128]))
}

fn actions(n: usize, scale: f64) -> ActionSequence {
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..3)
                .map(|j| scale * ((i * 3 + j) as f64 * 0.37).sin())
                .collect()
        })
        .collect();
    ActionSequence::from_rows(&rows).unwrap()
}

fn text() -> (Tensor, Tensor) {
    (seeded(7, &[1, 5, 64], 1.0), seeded(8, &[1, 5, 64], 1.0))
}

/// Every frame of a rollout, and the events in order: `s` a sampler step, `f` an emitted frame.
fn rollout(g: &Generator, actions: &ActionSequence, seed: u64) -> (Vec<RgbImage>, String) {
    let (text, negative) = text();
    let events = std::cell::RefCell::new(String::new());
    let mut frames = Vec::new();
    g.rollout(
        &start_frame(),
        actions,
        &text,
        Some(&negative),
        seed,
        || events.borrow_mut().push('s'),
        |f| {
            events.borrow_mut().push('f');
            frames.push(f.clone());
            Ok(())
        },
    )
    .unwrap();
    (frames, events.into_inner())
}

fn same(a: &[RgbImage], b: &[RgbImage]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.as_raw() == y.as_raw())
}

#[test]
fn a_rollout_makes_one_frame_per_action_chunk_by_chunk() {
    let dir = tempfile::tempdir().unwrap();
    action_bundle(dir.path(), Some(ACTION), 2.0);
    let g = generator(dir.path());
    // 19 actions in chunks of 8: 3 chunks (the last padded with 5 zero actions), 20 frames.
    let a = actions(19, 1.0);
    let plan = g.rollout_plan(&a).unwrap();
    assert_eq!(
        (plan.chunk_actions, plan.chunks(), plan.frames()),
        (8, 3, 20)
    );
    let (frames, events) = rollout(&g, &a, 0);
    assert_eq!(frames.len(), 20);
    assert!(frames.iter().all(|f| f.dimensions() == (32, 32)));
    // Two sampler steps a chunk, then its frames: 9 (with the decoded start frame), 8, and 3 for the last
    // chunk's 3 real actions. Frames stream out chunk by chunk.
    let expected = [
        "ss",
        &"f".repeat(9),
        "ss",
        &"f".repeat(8),
        "ss",
        &"f".repeat(3),
    ]
    .concat();
    assert_eq!(events, expected);

    // Deterministic per seed; another seed or other actions give another video.
    let (again, _) = rollout(&g, &a, 0);
    assert!(same(&frames, &again));
    let (reseeded, _) = rollout(&g, &a, 5);
    assert!(!same(&frames, &reseeded));
    let (still, _) = rollout(&g, &actions(19, 0.0), 0);
    assert!(!same(&frames, &still));
    // Frames of a rollout's first chunk do not depend on later actions.
    let (short, _) = rollout(&g, &actions(8, 1.0), 0);
    assert_eq!(short.len(), 9);
    assert!(same(&short, &frames[..9]));
}

#[test]
fn a_rollout_streams_into_an_mp4_and_its_record() {
    let dir = tempfile::tempdir().unwrap();
    action_bundle(dir.path(), Some(ACTION), 0.0);
    let g = generator(dir.path());
    let out = dir.path().join("rollout.mp4");
    let (text, _) = text();
    let a = actions(10, 1.0);
    let plan = g
        .rollout_to_mp4(&out, &start_frame(), &a, &text, None, 0, || {})
        .unwrap();
    let video = orrery_media::read_video(&out).unwrap();
    assert_eq!(video.frames.len(), 11);
    let record = g.rollout_record("", 0, &plan, Path::new("a.json"));
    assert_eq!((record.frames, record.chunks.clone()), (11, vec![9, 9]));
    assert_eq!(record.rollout.as_ref().unwrap().chunk_actions, 8);
    assert!(record.negative_prompt.is_none(), "guidance 0");
    g.write_record(&out, &record).unwrap();
    assert!(out.with_extension("json").is_file());
}

#[test]
fn rollouts_refuse_wrong_widths_and_plain_models() {
    let dir = tempfile::tempdir().unwrap();
    let action = dir.path().join("action");
    action_bundle(&action, Some(ACTION), 0.0);
    let g = generator(&action);
    let wide = ActionSequence::from_rows(&[vec![0.0; 7]]).unwrap();
    let err = g.rollout_plan(&wide).unwrap_err().to_string();
    assert!(
        err.contains("7 wide") && err.contains("action_dim = 3"),
        "{err}"
    );

    let plain = dir.path().join("plain");
    action_bundle(&plain, None, 0.0);
    let err = generator(&plain)
        .rollout_plan(&actions(3, 1.0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not action-conditioned"), "{err}");

    // A ratio that does not give one action per frame (2 per latent frame for a 4x temporal VAE).
    let odd = dir.path().join("odd");
    action_bundle(
        &odd,
        Some(ActionConfig {
            temporal_compression_ratio: 2,
            ..ACTION
        }),
        0.0,
    );
    let err = generator(&odd)
        .rollout_plan(&actions(3, 1.0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("one action per frame"), "{err}");
}

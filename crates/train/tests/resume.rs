//! Interrupted and resumed runs reproduce the uninterrupted run's losses exactly; the exported DiT bundle
//! opens as a model bundle and generates.

mod common;

use std::path::Path;

use common::{dit_config, losses, trained_dit, trained_vae, vae_config, velocity_of};

use candle_core::{DType, Device, Tensor};
use orrery_pipeline::{ModelBundle, Request, WorldPipeline};
use orrery_train::{DitTrainConfig, DitTrainer, Run, VaeTrainer};
use serde_json::json;

/// Asserts that every variable `prefix` + NAME equals the stored tensor NAME; returns how many were compared.
fn assert_vars_equal_stored(
    vars: &orrery_nn::SeededVarMap,
    stored: &orrery_nn::Checkpoint,
    prefix: &str,
) -> usize {
    let mut compared = 0;
    for (name, var) in vars.named_vars() {
        if let Some(stored_name) = name.strip_prefix(prefix) {
            let want = stored.load(stored_name, &Device::Cpu).unwrap();
            let diff = orrery_nn::compare::max_abs_diff(var.as_tensor(), &want).unwrap();
            assert_eq!(diff, 0.0, "{name}");
            compared += 1;
        }
    }
    compared
}

/// A VAE trained one step under `root/vae`: its folder, its model path and its weights.
fn trained_vae_source(
    root: &Path,
) -> (
    std::path::PathBuf,
    orrery_vae::VaeModelPath,
    orrery_nn::Checkpoint,
) {
    let dir = trained_vae(&root.join("vae"));
    let source = orrery_vae::VaeModelPath::open(&dir).unwrap();
    let stored = orrery_nn::Checkpoint::open(&source.weights).unwrap();
    (dir, source, stored)
}

#[test]
fn vae_and_dit_runs_resume_exactly_and_export_a_working_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    // VAE: 3 steps straight, versus 2 steps, a new process-like trainer, resume, 1 step.
    let mut straight = VaeTrainer::new(vae_config(&root.join("vae_a"))).unwrap();
    straight.train(None, |_| {}).unwrap();
    let mut first = VaeTrainer::new(vae_config(&root.join("vae_b"))).unwrap();
    first.train(Some(2), |_| {}).unwrap();
    drop(first);
    let mut resumed = VaeTrainer::new(vae_config(&root.join("vae_b"))).unwrap();
    assert_eq!(resumed.session.resume_latest().unwrap(), Some(2));
    resumed.train(None, |_| {}).unwrap();
    assert_eq!(
        losses(&straight.session.history),
        losses(&resumed.session.history)
    );
    assert_eq!(straight.session.history.len(), 3);
    assert!(root.join("vae_b/loss.png").is_file());
    let vae_dir = straight.export().unwrap();

    // DiT with the word encoder on that VAE's latents.
    let mut straight = DitTrainer::new(dit_config(&root.join("dit_a"), &vae_dir)).unwrap();
    straight.train(None, |_| {}).unwrap();
    let mut first = DitTrainer::new(dit_config(&root.join("dit_b"), &vae_dir)).unwrap();
    first.train(Some(2), |_| {}).unwrap();
    drop(first);
    let mut resumed = DitTrainer::new(dit_config(&root.join("dit_b"), &vae_dir)).unwrap();
    assert_eq!(resumed.session.resume_latest().unwrap(), Some(2));
    resumed.train(None, |_| {}).unwrap();
    assert_eq!(
        losses(&straight.session.history),
        losses(&resumed.session.history)
    );
    // keep_checkpoints 1: only the newest remains.
    assert_eq!(resumed.session.checkpoints().len(), 1);
    let ckpt = &resumed.session.checkpoints()[0].1;
    let saved: DitTrainConfig =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("config.json")).unwrap()).unwrap();
    assert_eq!(saved, resumed.config);

    let bundle_dir = straight.export().unwrap();
    let gif = straight.write_samples().unwrap().unwrap();
    assert!(gif.is_file());
    let bundle = ModelBundle::open(&bundle_dir).unwrap();
    assert_eq!(bundle.unconditional_prompt(), Some(""));
    let d = &bundle.defaults;
    assert_eq!((d.frames, d.width, d.height, d.steps), (9, 16, 16, 3));
    let video = generate_text2world(&bundle_dir, straight.sampling_settings(0));
    assert_eq!(video.dims(), &[1, 3, 9, 16, 16]);
}

/// A Text2World clip of the bundle in `dir` at its default size, (1, 3, T, H, W).
fn generate_text2world(dir: &Path, settings: orrery_pipeline::SamplingSettings) -> Tensor {
    let bundle = ModelBundle::open(dir).unwrap();
    let texts = bundle
        .encode_prompts(
            &["The video shows a red ball above the floor.", ""],
            None,
            DType::F32,
            orrery_text::Overflow::Error,
        )
        .unwrap();
    let pipeline = WorldPipeline::new(
        bundle.dit.load(DType::F32, &Device::Cpu).unwrap(),
        bundle.vae.load(DType::F32, &Device::Cpu).unwrap(),
    )
    .unwrap();
    let d = &bundle.defaults;
    pipeline
        .generate(
            &Request {
                action: None,
                frames: d.frames,
                width: d.width,
                height: d.height,
                text: &texts[0],
                negative: Some(&texts[1]),
                image: None,
                video: None,
                settings,
            },
            |_, _| {},
        )
        .unwrap()
        .video
}

/// The current value of the trainer's variable `name`.
fn trainer_var(trainer: &DitTrainer, name: &str) -> Tensor {
    let vars = trainer.session.vars.named_vars();
    let var = vars.into_iter().find(|(n, _)| n == name).unwrap().1;
    var.as_tensor().clone()
}

#[test]
fn a_dit_grown_in_depth_starts_as_the_network_it_grew_from() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (vae_dir, base, bundle) = trained_dit(root);

    let mut config = dit_config(&root.join("grown"), &vae_dir);
    config.model.as_mut().unwrap().num_blocks = 3;
    config.grow_blocks = true;
    config.init_from = None;
    assert!(config.validate().unwrap_err().contains("grow_blocks"));
    config.init_from = Some(bundle.clone());
    let mut grown = DitTrainer::new(config.clone()).unwrap();
    let grown_bundle = grown.export().unwrap();
    let settings = base.sampling_settings(0);
    let want = generate_text2world(&bundle, settings.clone());
    let got = generate_text2world(&grown_bundle, settings);
    let diff = orrery_nn::compare::max_abs_diff(&got, &want).unwrap();
    assert!(diff < 1e-5, "grown network differs by {diff}");

    // The new blocks' branch outputs start at zero and train away from it.
    let largest = |trainer: &DitTrainer, name: &str| {
        trainer_var(trainer, name)
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    assert_eq!(largest(&grown, "dit.blocks.1.mlp.layer2.weight"), 0.0);
    grown.train(Some(1), |_| {}).unwrap();
    assert!(largest(&grown, "dit.blocks.1.mlp.layer2.weight") > 0.0);
    assert!(largest(&grown, "dit.blocks.2.self_attn.output_proj.weight") > 0.0);

    // 3 blocks cannot grow into 4.
    let mut four = config;
    four.run.out_dir = root.join("four");
    four.model.as_mut().unwrap().num_blocks = 4;
    four.init_from = Some(grown_bundle);
    let err = DitTrainer::new(four).err().unwrap().to_string();
    assert!(err.contains("whole multiple"), "{err}");
}

#[test]
fn a_dit_grown_in_width_starts_as_the_network_it_grew_from() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (vae_dir, base, bundle) = trained_dit(root);

    let mut config = dit_config(&root.join("wide"), &vae_dir);
    config.model.as_mut().unwrap().model_channels = 48;
    config.model.as_mut().unwrap().num_heads = 4;
    config.grow_width = true;
    config.init_from = Some(bundle.clone());
    let mut wide = DitTrainer::new(config.clone()).unwrap();
    let wide_bundle = wide.export().unwrap();
    let settings = base.sampling_settings(0);
    let want = generate_text2world(&bundle, settings.clone());
    let got = generate_text2world(&wide_bundle, settings);
    let diff = orrery_nn::compare::max_abs_diff(&got, &want).unwrap();
    assert!(diff < 1e-5, "widened network differs by {diff}");

    // Channel c and its copy c + 24 are written by equal rows, which training pulls apart.
    let copy_gap = |trainer: &DitTrainer| {
        let w = trainer_var(trainer, "dit.x_embedder.proj.1.weight");
        let (first, copy) = (w.narrow(0, 0, 24).unwrap(), w.narrow(0, 24, 24).unwrap());
        orrery_nn::compare::max_abs_diff(&first, &copy).unwrap()
    };
    assert_eq!(copy_gap(&wide), 0.0);
    wide.train(Some(1), |_| {}).unwrap();
    assert!(copy_gap(&wide) > 0.0);

    // 1.5 times the width is not a whole multiple.
    let mut odd = config;
    odd.run.out_dir = root.join("odd");
    odd.model.as_mut().unwrap().model_channels = 36;
    odd.model.as_mut().unwrap().num_heads = 3;
    let err = DitTrainer::new(odd).err().unwrap().to_string();
    assert!(err.contains("whole multiple"), "{err}");
}

#[test]
fn a_dit_run_fine_tunes_from_an_exported_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (vae_dir, _, bundle) = trained_dit(root);

    let mut config = dit_config(&root.join("tuned"), &vae_dir);
    config.init_from = Some(bundle.clone());
    let tuned = DitTrainer::new(config).unwrap();
    let stored =
        orrery_nn::Checkpoint::open(bundle.join("transformer/diffusion_pytorch_model.safetensors"))
            .unwrap();
    assert!(assert_vars_equal_stored(&tuned.session.vars, &stored, "dit.") > 10);

    // Other clips (other caption words) start from that bundle with its vocabulary; another text shape cannot.
    let mut other = dit_config(&root.join("other"), &vae_dir);
    other.data.seed = 99;
    other.data.clips = 2;
    other.init_from = Some(bundle);
    assert!(DitTrainer::new(other.clone()).is_ok());
    other.run.out_dir = root.join("other_shape");
    other.text.as_mut().unwrap().layers += 1;
    let err = DitTrainer::new(other).err().unwrap().to_string();
    assert!(err.contains("word encoder"), "{err}");
}

#[test]
fn a_vae_with_less_temporal_compression_starts_from_a_trained_vae() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let source_dir = trained_vae(&root.join("vae"));

    // The first stage becomes spatial-only: its temporal convolutions go unused, all else is copied.
    let mut config = vae_config(&root.join("t2"));
    config.model.temporal_downsample = vec![false, true];
    config.init_from = Some(source_dir.clone());
    let tuned = VaeTrainer::new(config).unwrap();
    let stored =
        orrery_nn::Checkpoint::open(source_dir.join("diffusion_pytorch_model.safetensors"))
            .unwrap();
    let compared = assert_vars_equal_stored(&tuned.session.vars, &stored, "");
    assert_eq!(compared, tuned.session.vars.named_vars().len());
    assert_eq!(
        stored.tensors().len() - compared,
        4,
        "two time_conv weights and biases"
    );

    // Another width is still refused, naming the tensor.
    let mut other = vae_config(&root.join("wide"));
    other.model.base_dim = 8;
    other.init_from = Some(source_dir);
    let err = VaeTrainer::new(other).err().unwrap().to_string();
    assert!(err.contains("shape") || err.contains("conv"), "{err}");
}

#[test]
fn a_decoder_only_fine_tune_keeps_the_latent_space() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (source_dir, source, stored) = trained_vae_source(root);

    let mut config = vae_config(&root.join("decoder"));
    config.freeze_encoder = true;
    config.init_from = None;
    assert!(config.validate().unwrap_err().contains("init_from"));
    config.init_from = Some(source_dir.clone());
    config.validate().unwrap();
    let mut tuned = VaeTrainer::new(config.clone()).unwrap();
    let trained: Vec<String> = tuned
        .session
        .optimizer
        .vars
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    assert!(!trained.is_empty());
    assert!(trained
        .iter()
        .all(|n| n.starts_with("decoder.") || n.starts_with("conv2.")));
    tuned.train(Some(2), |_| {}).unwrap();
    let dir = tuned.export().unwrap();

    // Encoder weights and latent statistics are the source's; the decoder moved.
    let exported = orrery_vae::VaeModelPath::open(&dir).unwrap();
    assert_eq!(exported.config.latents_mean, source.config.latents_mean);
    assert_eq!(exported.config.latents_std, source.config.latents_std);
    let new = orrery_nn::Checkpoint::open(&exported.weights).unwrap();
    assert_eq!(new.tensors().len(), stored.tensors().len());
    let (mut same, mut moved) = (0, 0);
    for entry in stored.tensors() {
        let name = &entry.name;
        let a = stored.load(name, &Device::Cpu).unwrap();
        let b = new.load(name, &Device::Cpu).unwrap();
        let diff = orrery_nn::compare::max_abs_diff(&a, &b).unwrap();
        if name.starts_with("encoder.") || name.starts_with("conv1.") {
            assert_eq!(diff, 0.0, "{name}");
            same += 1;
        } else {
            moved += usize::from(diff > 0.0);
        }
    }
    assert!(same > 0 && moved > 0, "{same} frozen, {moved} moved");

    // Resuming restores the decoder and keeps the encoder from the source.
    let mut resumed = VaeTrainer::new(config).unwrap();
    assert_eq!(resumed.session.resume_latest().unwrap(), Some(2));
}

#[test]
fn a_wider_decoder_starts_as_the_source_decoder_on_the_frozen_encoder() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (source_dir, source, stored) = trained_vae_source(root);

    let mut config = vae_config(&root.join("wide-decoder"));
    config.freeze_encoder = true;
    config.init_from = Some(source_dir);
    config.model.decoder_base_dim = Some(3 * config.model.base_dim / 2);
    let mut tuned = VaeTrainer::new(config).unwrap();
    // The encoder side is the source's, unchanged.
    let mut encoder_side = 0;
    for (name, var) in tuned.session.vars.named_vars() {
        if name.starts_with("encoder.") {
            let want = stored.load(&name, &Device::Cpu).unwrap();
            let diff = orrery_nn::compare::max_abs_diff(var.as_tensor(), &want).unwrap();
            assert_eq!(diff, 0.0, "{name}");
            encoder_side += 1;
        }
    }
    assert!(encoder_side > 0);
    // Widened, the decoder computes what the source's computes (every stage, the time upsampling and the middle
    // attention included), up to float rounding.
    let latent = Tensor::randn(0f32, 1.0, (1, 4, 3, 4, 4), &Device::Cpu).unwrap();
    let want = source
        .load(DType::F32, &Device::Cpu)
        .unwrap()
        .decode(&latent, orrery_vae::Chunking::Whole)
        .unwrap();
    let got = tuned
        .vae
        .decode(&latent, orrery_vae::Chunking::Whole)
        .unwrap();
    assert_eq!(got.dims(), want.dims());
    let diff = orrery_nn::compare::max_abs_diff(&got, &want).unwrap();
    assert!(diff < 1e-5, "widened decoder differs by {diff}");

    tuned.train(Some(2), |_| {}).unwrap();
    let exported = orrery_vae::VaeModelPath::open(&tuned.export().unwrap()).unwrap();
    assert_eq!(
        exported.config.decoder_base_dim,
        3 * source.config.base_dim / 2
    );
    assert_eq!(exported.config.latents_std, source.config.latents_std);
    let new = orrery_nn::Checkpoint::open(&exported.weights).unwrap();
    for entry in stored
        .tensors()
        .iter()
        .filter(|e| e.name.starts_with("encoder."))
    {
        let old = stored.load(&entry.name, &Device::Cpu).unwrap();
        let now = new.load(&entry.name, &Device::Cpu).unwrap();
        let diff = orrery_nn::compare::max_abs_diff(&old, &now).unwrap();
        assert_eq!(diff, 0.0, "{}", entry.name);
    }
}

#[test]
fn a_decoder_learns_to_decode_a_world_models_predictions() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let vae_dir = trained_vae(&root.join("vae"));
    let mut dit = DitTrainer::new(dit_config(&root.join("dit"), &vae_dir)).unwrap();
    dit.train(Some(2), |_| {}).unwrap();
    let bundle = dit.export().unwrap();
    let predicted: orrery_train::vae::PredictedLatents = serde_json::from_value(json!({
        "bundle": bundle, "steps": 1, "guidance": 1.0, "cond_probs": [0.0, 0.0, 1.0]
    }))
    .unwrap();

    // The predictor returns the conditioning latent frames (up to the sampler's arithmetic) and predicts the
    // others.
    let mut predictor = orrery_train::vae::predicted::Predictor::open(&predicted, 4).unwrap();
    let real = candle_core::Tensor::randn(0f32, 1.0, (2, 4, 3, 2, 2), &Device::Cpu).unwrap();
    let mut rng = orrery_flow::noise::FastRng::new(5);
    let out = predictor
        .predict(&real, &["a red ball", "a blue box"], &mut rng)
        .unwrap();
    assert_eq!(out.dims(), real.dims());
    let diff = |a: &candle_core::Tensor, b: &candle_core::Tensor| {
        orrery_nn::compare::max_abs_diff(a, b).unwrap()
    };
    let conditioning = diff(
        &out.narrow(2, 0, 2).unwrap(),
        &real.narrow(2, 0, 2).unwrap(),
    );
    assert!(
        conditioning < 1e-2,
        "conditioning frames moved by {conditioning}"
    );
    assert!(
        diff(
            &out.narrow(2, 2, 1).unwrap(),
            &real.narrow(2, 2, 1).unwrap()
        ) > 0.1
    );
    let err = orrery_train::vae::predicted::Predictor::open(&predicted, 3)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("latent channels"), "{err}");

    // Predictions need a frozen encoder and whole frames.
    let mut config = vae_config(&root.join("decoder"));
    config.predicted_latents = Some(predicted);
    assert!(config.validate().unwrap_err().contains("freeze_encoder"));
    config.freeze_encoder = true;
    config.init_from = Some(vae_dir.clone());
    config.crop_size = 8;
    assert!(config.validate().unwrap_err().contains("whole frames"));
    config.crop_size = 16;
    config.validate().unwrap();

    // The decoder trains on them, exports, and resumes exactly.
    let mut straight = VaeTrainer::new(config.clone()).unwrap();
    straight.train(None, |_| {}).unwrap();
    let history = losses(&straight.session.history);
    assert!(straight.session.history.iter().all(|p| p.loss.is_finite()));
    let dir = straight.export().unwrap();
    let exported = orrery_vae::VaeModelPath::open(&dir).unwrap();
    let source = orrery_vae::VaeModelPath::open(&vae_dir).unwrap();
    assert_eq!(exported.config.latents_std, source.config.latents_std);

    let mut interrupted = config.clone();
    interrupted.run.out_dir = root.join("decoder2");
    let mut first = VaeTrainer::new(interrupted.clone()).unwrap();
    first.train(Some(2), |_| {}).unwrap();
    let mut resumed = VaeTrainer::new(interrupted).unwrap();
    assert_eq!(resumed.session.resume_latest().unwrap(), Some(2));
    resumed.train(None, |_| {}).unwrap();
    assert_eq!(losses(&resumed.session.history), history);
}

#[test]
fn a_latent_cache_of_fewer_clips_is_extended_with_the_missing_ones() {
    use orrery_train::dit::LatentSet;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let vae_dir = trained_vae(&root.join("vae"));
    let source = orrery_vae::VaeModelPath::open(&vae_dir).unwrap();
    let vae = source.load(DType::F32, &Device::Cpu).unwrap();
    let data = |clips| {
        let mut d = dit_config(root, &vae_dir).data;
        d.clips = clips;
        d
    };
    let build = |clips, dir: &Path| {
        LatentSet::build(&data(clips), &vae, &source.weights, dir, None).unwrap()
    };
    let whole = build(4, &root.join("whole"));

    // A 2-clip cache whose latents are marked (zeroed), so its reuse shows in the result.
    let grown = root.join("grown");
    let small = build(2, &grown);
    let zeros = small.latents.zeros_like().unwrap();
    orrery_nn::checkpoint::save_tensors(
        &grown.join("latents.safetensors"),
        vec![("latents".into(), zeros.clone())],
    )
    .unwrap();
    let extended = build(4, &grown);
    assert_eq!(extended.captions, whole.captions);
    let diff = |a: &Tensor, b: &Tensor| orrery_nn::compare::max_abs_diff(a, b).unwrap();
    let rows = |t: &Tensor, from, n| t.narrow(0, from, n).unwrap();
    assert_eq!(diff(&rows(&extended.latents, 0, 2), &zeros), 0.0);
    assert_eq!(
        diff(&rows(&extended.latents, 2, 2), &rows(&whole.latents, 2, 2)),
        0.0
    );

    // The 4-clip cache now serves a 3-clip run with its first 3 clips, and a cache of other data is not used.
    let fewer = build(3, &grown);
    assert_eq!(diff(&fewer.latents, &rows(&extended.latents, 0, 3)), 0.0);
    assert_eq!(fewer.captions, whole.captions[..3]);
    let mut other = data(4);
    other.seed += 1;
    let reencoded = LatentSet::build(&other, &vae, &source.weights, &grown, None).unwrap();
    assert_ne!(reencoded.captions, whole.captions);
}

#[test]
fn an_object_weighted_run_caches_the_object_cells_and_weights_its_loss() {
    use orrery_train::dit::LatentSet;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let vae_dir = trained_vae(&root.join("vae"));
    let weighted = |weight: f64, out: &str| {
        let mut c = dit_config(&root.join(out), &vae_dir);
        c.flow.object_weight = weight;
        c.flow.image_batch_prob = 0.0;
        let mut trainer = DitTrainer::new(c).unwrap();
        trainer.train(Some(1), |_| {}).unwrap();
        trainer
    };
    let trainer = weighted(4.0, "weighted");
    let cells = trainer.data.objects.clone().expect("object cells");
    let (n, _, t, h, w) = trainer.data.latents.dims5().unwrap();
    assert_eq!(cells.dims(), [n, 1, t, h, w]);
    let values = cells.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(values.iter().all(|v| *v == 0.0 || *v == 1.0));
    let marked = values.iter().filter(|v| **v == 1.0).count();
    assert!(
        marked > 0 && marked < values.len() / 2,
        "{marked} of {} cells",
        values.len()
    );

    // The same draws without the weights give another loss: the weights reach it.
    let plain = weighted(0.0, "plain");
    assert!(plain.data.objects.is_none());
    assert_ne!(
        plain.session.history[0].loss,
        trainer.session.history[0].loss
    );

    // The cache serves the same fraction and finds the cells again for another.
    let source = orrery_vae::VaeModelPath::open(&vae_dir).unwrap();
    let vae = source.load(DType::F32, &Device::Cpu).unwrap();
    let data = &trainer.config.data;
    let dir = root.join("weighted");
    let again = LatentSet::build(data, &vae, &source.weights, &dir, Some(0.05)).unwrap();
    let diff = |a: &Tensor, b: &Tensor| orrery_nn::compare::max_abs_diff(a, b).unwrap();
    assert_eq!(diff(&again.objects.unwrap(), &cells), 0.0);
    let every = LatentSet::build(data, &vae, &source.weights, &dir, Some(1.0)).unwrap();
    let every = every
        .objects
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        every >= marked as f32,
        "{every} cells with every foreground colour, {marked} with rare ones"
    );
}

#[test]
fn a_dit_run_trains_on_a_folder_of_user_videos() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let vae_dir = trained_vae(&root.join("vae"));
    // The official layout: two fixture videos of other sizes and rates (1280x704 16 fps, 1280x720 30 fps), one
    // caption in metas/, one beside its video, and a stray non-video that is skipped.
    let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/media");
    let videos = root.join("user");
    std::fs::create_dir_all(videos.join("videos")).unwrap();
    std::fs::create_dir_all(videos.join("metas")).unwrap();
    for (from, to) in [
        ("video2world_nemo_2b.mp4", "videos/nemo.mp4"),
        ("urban_freeway_front_tele_30fov.mp4", "videos/freeway.mp4"),
        ("droid_episode_000408.png", "videos/picture.mp4"),
    ] {
        std::fs::copy(media.join(from), videos.join(to)).unwrap();
    }
    std::fs::write(videos.join("metas/nemo.txt"), "a teal robot").unwrap();
    std::fs::write(videos.join("videos/freeway.txt"), "a freeway").unwrap();
    std::fs::write(videos.join("metas/picture.txt"), "a picture").unwrap();

    let mut config = dit_config(&root.join("dit"), &vae_dir);
    config.run.steps = 2;
    config.data.clips = 2;
    config.data.videos = Some(orrery_train::VideosConfig {
        dir: videos.clone(),
        shards: Vec::new(),
        refuse_bad_files: false,
        refuse_short_videos: false,
    });
    config.validate().unwrap();

    let source = orrery_vae::VaeModelPath::open(&vae_dir).unwrap();
    let vae = source.load(DType::F32, &Device::Cpu).unwrap();
    let set = orrery_train::dit::LatentSet::build(
        &config.data,
        &vae,
        &source.weights,
        &root.join("cache"),
        None,
    )
    .unwrap();
    // File-name order: freeway, nemo; 9 frames -> 3 latent frames.
    assert_eq!(
        set.captions[0],
        ["a freeway", "a freeway", "a freeway"].map(String::from)
    );
    assert_eq!(set.captions[1][1], "a teal robot");
    assert_eq!(set.latents.dim(0).unwrap(), 2);
    assert_eq!(set.latents.dim(2).unwrap(), 3);

    // The cache is reused while the folder is unchanged, and rebuilt when a caption changes.
    let cached = orrery_train::dit::LatentSet::build(
        &config.data,
        &vae,
        &source.weights,
        &root.join("cache"),
        None,
    )
    .unwrap();
    assert_eq!(cached.captions, set.captions);
    std::fs::write(videos.join("videos/freeway.txt"), "a busy freeway").unwrap();
    let rebuilt = orrery_train::dit::LatentSet::build(
        &config.data,
        &vae,
        &source.weights,
        &root.join("cache"),
        None,
    )
    .unwrap();
    assert_eq!(rebuilt.captions[0][0], "a busy freeway");

    let mut trainer = DitTrainer::new(config.clone()).unwrap();
    trainer.train(None, |_| {}).unwrap();
    assert!(trainer.session.history.iter().all(|p| p.loss.is_finite()));
    // Samples continue the user's own clips (there is no held-out set of them).
    let samples = trainer.write_samples().unwrap().unwrap();
    assert!(samples.exists(), "{}", samples.display());

    // Refusing bad files names the stray one.
    let mut strict = config;
    strict.data.videos.as_mut().unwrap().refuse_bad_files = true;
    let err = orrery_train::dit::LatentSet::build(
        &strict.data,
        &vae,
        &source.weights,
        &root.join("c2"),
        None,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("picture.mp4"), "{err}");
}

#[test]
fn a_lora_run_trains_only_its_adapters_resumes_exactly_and_exports_them() {
    use orrery_dit::{LoraAdapter, LORA_WEIGHTS_FILE};
    use orrery_train::dit::LoraTraining;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (vae_dir, _, bundle) = trained_dit(root);
    let config = |out: &str| {
        let mut c = dit_config(&root.join(out), &vae_dir);
        c.init_from = Some(bundle.clone());
        c.lora = Some(LoraTraining {
            rank: 4,
            alpha: 8.0,
            ..LoraTraining::default()
        });
        c
    };
    // Left-out keys take the official recipe.
    let recipe: LoraTraining = serde_json::from_value(json!({"alpha": 16})).unwrap();
    assert_eq!(
        (recipe.rank, recipe.alpha, recipe.targets.len()),
        (32, 16.0, 6)
    );
    let mut bad = config("bad");
    bad.init_from = None;
    assert!(bad.validate().unwrap_err().contains("lora needs init_from"));

    let mut straight = DitTrainer::new(config("lora_a")).unwrap();
    // One block: 4 + 4 attention projections and 2 MLP layers, A and B each.
    assert_eq!(straight.session.optimizer.vars.len(), 20);
    straight.train(None, |_| {}).unwrap();
    let mut first = DitTrainer::new(config("lora_b")).unwrap();
    first.train(Some(2), |_| {}).unwrap();
    drop(first);
    let mut resumed = DitTrainer::new(config("lora_b")).unwrap();
    assert_eq!(resumed.session.resume_latest().unwrap(), Some(2));
    resumed.train(None, |_| {}).unwrap();
    assert_eq!(
        losses(&straight.session.history),
        losses(&resumed.session.history)
    );
    assert_eq!(straight.session.history.len(), 4);

    // The base stays the bundle's, held by the network alone (no DiT variables); the adapters moved.
    let base_weights = bundle.join("transformer/diffusion_pytorch_model.safetensors");
    let stored = orrery_nn::Checkpoint::open(&base_weights).unwrap();
    let names = straight.session.vars.named_vars();
    assert!(names.iter().all(|(n, _)| !n.starts_with("dit.")));
    let layer1 = &straight.dit.blocks[0].mlp.layer1.weight;
    let want = stored
        .load("blocks.0.mlp.layer1.weight", &Device::Cpu)
        .unwrap();
    assert_eq!(
        orrery_nn::compare::max_abs_diff(layer1, &want).unwrap(),
        0.0
    );
    let b = trainer_var(&straight, "lora.blocks.0.mlp.layer2.lora_B.weight");
    assert!(
        b.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 0.0
    );

    // The exported adapter on the base bundle, and the exported fused bundle, give the trained EMA model.
    let out = straight.export().unwrap();
    let adapter = LoraAdapter::open(&out.join(LORA_WEIGHTS_FILE), None).unwrap();
    assert_eq!(adapter.layers().len(), 10);
    let (on_base, fused) = common::exported_lora_networks(&out, &base_weights, straight.model());
    let (ema, _) = straight.ema_models().unwrap();
    let want = velocity_of(&ema);
    for (what, got) in [("base + adapter", on_base), ("fused bundle", fused)] {
        let err = orrery_nn::compare::max_rel_err(&velocity_of(&got), &want).unwrap();
        assert!(err <= 1e-5, "{what} differs by {err} of the output scale");
    }
    let plain =
        orrery_dit::load_dit(&base_weights, straight.model(), DType::F32, &Device::Cpu).unwrap();
    let moved = orrery_nn::compare::max_abs_diff(&velocity_of(&plain), &want).unwrap();
    assert!(moved > 1e-6, "the adapters changed nothing");
    assert!(straight.write_samples().unwrap().unwrap().is_file());

    // A bfloat16 base trains the same float32 adapters.
    let mut half = config("lora_bf16");
    half.lora.as_mut().unwrap().bf16_base = true;
    let mut half = DitTrainer::new(half).unwrap();
    half.train(Some(2), |_| {}).unwrap();
    let (a, b) = (&half.session.history[1], &straight.session.history[1]);
    assert!(
        a.loss.is_finite() && (a.loss - b.loss).abs() < 0.05 * b.loss,
        "{a:?} {b:?}"
    );
}

#[test]
fn a_fine_tune_on_one_family_keeps_the_bundles_vocabulary() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (vae_dir, _, bundle) = trained_dit(root);
    let mut c = dit_config(&root.join("pendulum"), &vae_dir);
    c.init_from = Some(bundle.clone());
    c.data.families = vec!["pendulum".into()];
    c.data.clips = 2;
    // Its captions use fewer words than the bundle's; the run keeps the bundle's vocabulary.
    let mut trainer = DitTrainer::new(c).unwrap();
    let bundle_words: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(bundle.join("text_encoder/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        trainer.text.words().unwrap().config.vocab.len(),
        bundle_words["vocab"].as_array().unwrap().len()
    );
    trainer.train(Some(1), |_| {}).unwrap();
    // The export keeps the bundle's sampling defaults (here made distinctive), with this run's clip shape.
    let sampling = bundle.join("orrery_sampling.json");
    let mut defaults = orrery_pipeline::BundleDefaults::read(&sampling).unwrap();
    defaults.per_mode[2].steps = Some(1);
    defaults.keep_observed = Some(orrery_pipeline::KeepObserved {
        threshold: 0.3,
        margin: 2,
    });
    defaults.frames = 93;
    std::fs::write(&sampling, defaults.to_json()).unwrap();
    let exported = trainer.export().unwrap();
    let got =
        orrery_pipeline::BundleDefaults::read(&exported.join("orrery_sampling.json")).unwrap();
    assert_eq!(got.per_mode[2].steps, Some(1));
    assert_eq!(got.keep_observed, defaults.keep_observed);
    assert_eq!(got.frames, 9, "the run's clip length");
}

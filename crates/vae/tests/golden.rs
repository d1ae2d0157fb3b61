//! The Wan VAE against the reference: a tiny random diffusers `AutoencoderKLWan` with the real block layout
//! (tools/oracles/vae.py; bit-identical to the official `WanVAE_`). Tolerance: 1e-5 x max|reference|, float32.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use orrery_nn::Checkpoint;
use orrery_vae::tiling::Tiling;
use orrery_vae::{load_vae, Chunking, VaeConfig, VaeModelPath, WanVae};

fn fixture(name: &str) -> PathBuf {
    fixture_in("vae_tiny", name)
}

fn fixture_in(dir: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(dir)
        .join(name)
}

fn case(frames: usize, name: &str) -> Tensor {
    case_in("vae_tiny", frames, name)
}

fn case_in(dir: &str, frames: usize, name: &str) -> Tensor {
    Checkpoint::open(fixture_in(dir, &format!("case_{frames}f.safetensors")))
        .unwrap()
        .load(name, &Device::Cpu)
        .unwrap()
}

fn vae() -> WanVae {
    vae_in("vae_tiny")
}

fn vae_in(dir: &str) -> WanVae {
    VaeModelPath::open(&fixture_in(dir, ""))
        .unwrap()
        .load(DType::F32, &Device::Cpu)
        .unwrap()
}

fn rel_err(a: &Tensor, reference: &Tensor) -> f64 {
    orrery_nn::compare::max_rel_err(a, reference).unwrap()
}

#[test]
fn encoder_mean_and_decoder_output_match_reference() {
    let m = vae();
    for frames in [1, 9, 17] {
        let latent = m
            .encode(&case(frames, "video"), Chunking::Stream(4))
            .unwrap();
        let err = rel_err(&latent, &case(frames, "latent"));
        let err64 = rel_err(&latent, &case(frames, "latent_f64"));
        let decoded = m
            .decode(&case(frames, "latent"), Chunking::Stream(1))
            .unwrap();
        let derr = rel_err(&decoded, &case(frames, "decoded"));
        println!("{frames} frames: latent {err:.2e} (f64 {err64:.2e}), decoded {derr:.2e}");
        assert!(
            err <= 1e-5 && err64 <= 1e-5,
            "{frames}: latent {err:.3e} / {err64:.3e}"
        );
        assert!(derr <= 1e-5, "{frames}: decoded {derr:.3e}");
    }
}

/// diffusers' `decoder_base_dim` (Wan2.2's separate decoder width) on the same encoder.
#[test]
fn wider_decoder_matches_reference() {
    let dir = "vae_tiny_wide_decoder";
    let m = vae_in(dir);
    assert_eq!((m.config.base_dim, m.config.decoder_base_dim), (8, 12));
    let latent = m
        .encode(&case_in(dir, 9, "video"), Chunking::Stream(4))
        .unwrap();
    let err = rel_err(&latent, &case_in(dir, 9, "latent"));
    let decoded = m
        .decode(&case_in(dir, 9, "latent"), Chunking::Stream(1))
        .unwrap();
    let derr = rel_err(&decoded, &case_in(dir, 9, "decoded"));
    println!("wide decoder: latent {err:.2e}, decoded {derr:.2e}");
    assert!(err <= 1e-5, "latent {err:.3e}");
    assert!(derr <= 1e-5, "decoded {derr:.3e}");
}

#[test]
fn streamed_equals_whole_clip() {
    let m = vae();
    let video = case(17, "video");
    let whole = m.encode(&video, Chunking::Whole).unwrap();
    for chunk in [4, 8, 16] {
        let streamed = m.encode(&video, Chunking::Stream(chunk)).unwrap();
        assert!(rel_err(&streamed, &whole) <= 1e-6, "encode chunk {chunk}");
    }
    let latent = case(17, "latent");
    let whole = m.decode(&latent, Chunking::Whole).unwrap();
    for chunk in [1, 2, 3] {
        let streamed = m.decode(&latent, Chunking::Stream(chunk)).unwrap();
        assert!(rel_err(&streamed, &whole) <= 1e-6, "decode chunk {chunk}");
    }
}

#[test]
fn decode_chunks_are_chosen_by_size() {
    let wan = orrery_vae::VaeConfig::wan2_1();
    // 33 frames of 64x64 decode in one pass, 256x256 six latent frames at a time; 480p and 720p one at a time,
    // as the reference does.
    assert_eq!(Chunking::decode_within(&wan, 9, 8, 8), Chunking::Whole);
    assert_eq!(
        Chunking::decode_within(&wan, 9, 32, 32),
        Chunking::Stream(6)
    );
    assert_eq!(
        Chunking::decode_within(&wan, 24, 60, 104),
        Chunking::Stream(1)
    );
    assert_eq!(
        Chunking::decode_within(&wan, 24, 90, 160),
        Chunking::Stream(1)
    );
}

#[test]
fn perturbing_a_frame_leaves_earlier_latents_unchanged() {
    let m = vae();
    let video = case(17, "video");
    let base = m.encode(&video, Chunking::Stream(4)).unwrap();
    // Pixel frame k belongs to latent frame ceil(k / 4); latents before it must not move.
    for k in [1usize, 5, 12] {
        let mut frames: Vec<Tensor> = (0..17).map(|i| video.narrow(2, i, 1).unwrap()).collect();
        frames[k] = (frames[k].clone() * -1.0).unwrap();
        let changed = m
            .encode(&Tensor::cat(&frames, 2).unwrap(), Chunking::Stream(4))
            .unwrap();
        let first_affected = k.div_ceil(4);
        for lt in 0..5 {
            let d = rel_err(
                &changed.narrow(2, lt, 1).unwrap(),
                &base.narrow(2, lt, 1).unwrap(),
            );
            if lt < first_affected {
                assert_eq!(d, 0.0, "frame {k} changed latent {lt}");
            } else if lt == first_affected {
                assert!(d > 0.0, "frame {k} did not change latent {lt}");
            }
        }
    }
}

#[test]
fn official_names_load_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let diffusers = Checkpoint::open(fixture("diffusion_pytorch_model.safetensors")).unwrap();
    let config = VaeConfig::from_diffusers_file(&fixture("config.json")).unwrap();
    // Rename every diffusers tensor to its official name by inverting the name map over the tiny model.
    let varmap = VarMap::new();
    WanVae::new(
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        &config,
    )
    .unwrap();
    let official: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    assert_eq!(official.len(), diffusers.tensors().len());
    let mut tensors = std::collections::HashMap::new();
    for name in official {
        let stored = orrery_vae::names::official_to_diffusers(&name, config.num_res_blocks);
        tensors.insert(name, diffusers.load(&stored, &Device::Cpu).unwrap());
    }
    let path = dir.path().join("official.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let from_official = load_vae(&path, &config, DType::F32, &Device::Cpu).unwrap();
    let latent = case(9, "latent");
    let a = from_official.decode(&latent, Chunking::Stream(1)).unwrap();
    assert_eq!(
        rel_err(&a, &vae().decode(&latent, Chunking::Stream(1)).unwrap()),
        0.0
    );

    // A missing tensor is named; so is one the configuration has no place for.
    let mut missing = tensors.clone();
    missing.remove("decoder.upsamples.3.time_conv.bias");
    candle_core::safetensors::save(&missing, &path).unwrap();
    let msg = load_vae(&path, &config, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("decoder.upsamples.3.time_conv.bias"), "{msg}");
    let mut extra = tensors;
    extra.insert(
        "decoder.upsamples.99.x".into(),
        Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&extra, &path).unwrap();
    let msg = load_vae(&path, &config, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("decoder.upsamples.99.x"), "{msg}");
}

#[test]
fn normalisation_round_trips_and_bad_inputs_are_named() {
    let m = vae();
    let latent = case(9, "latent");
    let back = m.denormalize(&m.normalize(&latent).unwrap()).unwrap();
    assert!(rel_err(&back, &latent) < 1e-6);
    let zeros = |s: &[usize]| Tensor::zeros(s, DType::F32, &Device::Cpu).unwrap();
    for (shape, expect) in [
        (&[1, 3, 4, 32, 32][..], "1 + 4 k frames"),
        (&[1, 3, 5, 30, 32], "multiples of 8"),
        (&[1, 4, 5, 32, 32], "(B, 3, T, H, W)"),
    ] {
        let msg = m
            .encode(&zeros(shape), Chunking::Whole)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(expect), "{msg}");
    }
    let msg = m
        .decode(&zeros(&[1, 5, 2, 4, 4]), Chunking::Whole)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("latent"), "{msg}");
}

#[test]
fn tiled_decode_is_close_to_the_full_decode() {
    let m = vae();
    let latent = case(9, "latent"); // (1, 4, 3, 4, 4)
    let latent = Tensor::cat(&[&latent, &(latent.clone() * -0.5).unwrap()], 3).unwrap(); // 8 x 4 latent
    let full = m.decode(&latent, Chunking::Stream(1)).unwrap();
    let tiled = m
        .decode_tiled(
            &latent,
            Tiling {
                tile: 6,
                overlap: 4,
            },
            Chunking::Stream(1),
        )
        .unwrap();
    let one_tile = m
        .decode_tiled(
            &latent,
            Tiling {
                tile: 16,
                overlap: 2,
            },
            Chunking::Stream(1),
        )
        .unwrap();
    assert!(rel_err(&one_tile, &full) < 1e-6);
    // Border pixels of a tile see less context (and the mid-block attention sees only its tile), so a tiled
    // decode differs from the full one; the blending itself is exact (tiling::tests). Here: same scale, no seams
    // that blow up.
    let mean_diff = (&tiled - &full)
        .unwrap()
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let mean_abs = full
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    println!("tiled vs full: mean |diff| {mean_diff:.3e}, mean |full| {mean_abs:.3e}");
    assert!(mean_diff < mean_abs, "{mean_diff} vs {mean_abs}");
}

#[test]
fn every_parameter_gets_a_gradient() {
    let config = VaeConfig::from_diffusers_file(&fixture("config.json")).unwrap();
    let varmap = VarMap::new();
    let m = WanVae::new(
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        &config,
    )
    .unwrap();
    let video = case(9, "video")
        .narrow(3, 0, 16)
        .unwrap()
        .narrow(4, 0, 16)
        .unwrap()
        .contiguous()
        .unwrap();
    let (mu, logvar) = m.encode_moments(&video, Chunking::Stream(4)).unwrap();
    let recon = m.decode(&mu, Chunking::Stream(1)).unwrap();
    let loss = ((recon - &video).unwrap().sqr().unwrap().mean_all().unwrap()
        + logvar.mean_all().unwrap())
    .unwrap();
    let grads = loss.backward().unwrap();
    let vars: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (name, var) in vars {
        let g = grads
            .get(&var)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let n = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(n > 0.0 && n.is_finite(), "{name}: gradient norm {n}");
    }
}

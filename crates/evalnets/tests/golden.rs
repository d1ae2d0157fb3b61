//! The ported networks against the reference packages' own networks (fixtures from tools/oracles/evalnets.py).
//! They need the converted weights (`python3 tools/eval_weights/fetch.py`, run by `.ci/run`); without them the
//! tests say so and pass, unless ORRERY_REQUIRE_EVAL_WEIGHTS is set (CI sets it).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use orrery_eval::frechet::{frechet_distance, FeatureStats};
use orrery_evalnets::{I3d, InceptionFid, EVAL_WEIGHTS_DIR, I3D_FILE, INCEPTION_FILE};
use orrery_media::RgbImage;
use orrery_nn::compare::max_rel_err;
use orrery_nn::Checkpoint;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/evalnets")
}

/// `$ORRERY_EVAL_WEIGHTS`, else the eval-weights folder of orrery's cache (as the CLI resolves it).
fn weights_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).map(PathBuf::from);
    var("ORRERY_EVAL_WEIGHTS").or_else(|| {
        let root = var("ORRERY_CACHE")
            .or_else(|| var("XDG_CACHE_HOME").map(|p| p.join("orrery")))
            .or_else(|| var("HOME").map(|p| p.join(".cache/orrery")))?;
        Some(root.join(EVAL_WEIGHTS_DIR))
    })
}

fn weights(file: &str) -> Option<PathBuf> {
    let dir = weights_dir()?;
    let path = dir.join(file);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("ORRERY_REQUIRE_EVAL_WEIGHTS").is_some() {
        panic!(
            "{} is missing: run python3 tools/eval_weights/fetch.py",
            path.display()
        );
    }
    eprintln!(
        "skipped: {} not fetched (python3 tools/eval_weights/fetch.py)",
        path.display()
    );
    None
}

/// (H, W, 3) or (T, H, W, 3) u8 tensor -> frames.
fn frames(tensor: &Tensor) -> Vec<RgbImage> {
    let dims = tensor.dims().to_vec();
    let (h, w) = (dims[dims.len() - 3], dims[dims.len() - 2]);
    let bytes = tensor.flatten_all().unwrap().to_vec1::<u8>().unwrap();
    bytes
        .chunks(h * w * 3)
        .map(|f| RgbImage::from_raw(w as u32, h as u32, f.to_vec()).unwrap())
        .collect()
}

/// Feature rows equal the reference tensor `name` to 1e-4 of its largest magnitude.
fn assert_rows_match(rows: Vec<Vec<f32>>, expected: &Checkpoint, name: &str) {
    let got = Tensor::new(rows, &Device::Cpu).unwrap();
    let want = expected.load(name, &Device::Cpu).unwrap();
    let err = max_rel_err(&got, &want).unwrap();
    eprintln!("{name}: max relative error {err:.2e}");
    assert!(
        err < 1e-4,
        "{name} features differ from the reference by {err:e} (relative to max)"
    );
}

#[test]
fn inception_features_equal_the_tf_fid_network() {
    let Some(path) = weights(INCEPTION_FILE) else {
        return;
    };
    let net = InceptionFid::load(&path, &Device::Cpu).unwrap();
    let inputs = Checkpoint::open(testdata().join("inputs.safetensors")).unwrap();
    let expected = Checkpoint::open(testdata().join("expected.safetensors")).unwrap();
    let images: Vec<RgbImage> = (0..3)
        .flat_map(|i| frames(&inputs.load(&format!("image{i}"), &Device::Cpu).unwrap()))
        .collect();
    let refs: Vec<&RgbImage> = images.iter().collect();
    assert_rows_match(net.features(&refs, 1).unwrap(), &expected, "inception");
}

#[test]
fn i3d_logits_equal_the_kinetics_network() {
    let Some(path) = weights(I3D_FILE) else {
        return;
    };
    let net = I3d::load(&path, &Device::Cpu).unwrap();
    let inputs = Checkpoint::open(testdata().join("inputs.safetensors")).unwrap();
    let expected = Checkpoint::open(testdata().join("expected.safetensors")).unwrap();
    let clip = frames(&inputs.load("clip", &Device::Cpu).unwrap());
    assert_rows_match(net.features(&[&clip[..]]).unwrap(), &expected, "i3d");
}

#[test]
fn a_truncated_weights_file_is_refused_with_its_name() {
    let dir = std::env::temp_dir().join(format!("orrery-evalnets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(INCEPTION_FILE);
    std::fs::write(&path, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    let err = InceptionFid::load(&path, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(INCEPTION_FILE), "{err}");
    let missing = I3d::load(&dir.join("absent.safetensors"), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(missing.contains("tools/eval_weights/fetch.py"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn relative_difference(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs()
}

#[test]
fn fid_and_fvd_of_fixed_sets_equal_the_reference_within_a_thousandth() {
    let (Some(inception_path), Some(i3d_path)) = (weights(INCEPTION_FILE), weights(I3D_FILE))
    else {
        return;
    };
    let inputs = Checkpoint::open(testdata().join("inputs.safetensors")).unwrap();
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(testdata().join("frechet.json")).unwrap())
            .unwrap();
    let load = |name: &str| frames(&inputs.load(name, &Device::Cpu).unwrap());
    let distance = |a: &[Vec<f32>], b: &[Vec<f32>]| {
        let (a, b) = (
            FeatureStats::from_rows(a).unwrap(),
            FeatureStats::from_rows(b).unwrap(),
        );
        frechet_distance(&a, &b).unwrap()
    };

    let net = InceptionFid::load(&inception_path, &Device::Cpu).unwrap();
    let set = |prefix: &str| -> Vec<RgbImage> {
        (0..3).flat_map(|i| load(&format!("{prefix}{i}"))).collect()
    };
    let (a, b) = (set("image"), set("other_image"));
    let features = |s: &[RgbImage]| net.features(&s.iter().collect::<Vec<_>>(), 3).unwrap();
    let fid = distance(&features(&a), &features(&b));
    let want = fixture["end_to_end"]["fid"].as_f64().unwrap();
    eprintln!(
        "FID: orrery {fid:.6}, reference {want:.6} ({:.2e})",
        relative_difference(fid, want)
    );
    assert!(relative_difference(fid, want) < 1e-3);

    let net = I3d::load(&i3d_path, &Device::Cpu).unwrap();
    let clips: Vec<Vec<RgbImage>> = ["clip", "clip_reversed", "clip_rolled", "clip_darker"]
        .map(load)
        .into();
    let features = |s: &[Vec<RgbImage>]| {
        net.features(&s.iter().map(Vec::as_slice).collect::<Vec<_>>())
            .unwrap()
    };
    let fvd = distance(&features(&clips[..2]), &features(&clips[2..]));
    let want = fixture["end_to_end"]["fvd"].as_f64().unwrap();
    eprintln!(
        "FVD: orrery {fvd:.6}, reference {want:.6} ({:.2e})",
        relative_difference(fvd, want)
    );
    assert!(relative_difference(fvd, want) < 1e-3);
}

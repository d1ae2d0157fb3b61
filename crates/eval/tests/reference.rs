//! PSNR and SSIM equal scikit-image's on fixed frames (testdata/eval, built by tools/oracles/metrics.py).

use std::path::Path;

use orrery_eval::metrics::{psnr, ssim};
use orrery_media::RgbImage;
use orrery_nn::Checkpoint;

#[test]
fn psnr_and_ssim_match_scikit_image() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/eval");
    let frames = Checkpoint::open(dir.join("frames.safetensors")).unwrap();
    let image = |name: &str| {
        let t = frames.get(name).unwrap();
        let (h, w) = (t.shape[0] as u32, t.shape[1] as u32);
        RgbImage::from_raw(w, h, frames.bytes(name).unwrap().into_owned()).unwrap()
    };
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    let reference = image("reference");
    for name in ["noise", "shift", "blocks"] {
        let img = image(name);
        let (p, s) = (psnr(&reference, &img), ssim(&reference, &img));
        let (ep, es) = (
            expected[name]["psnr"].as_f64().unwrap(),
            expected[name]["ssim"].as_f64().unwrap(),
        );
        assert!(
            (p - ep).abs() <= 1e-5 * ep.abs(),
            "{name}: PSNR {p} vs {ep}"
        );
        assert!((s - es).abs() <= 1e-5, "{name}: SSIM {s} vs {es}");
    }
}

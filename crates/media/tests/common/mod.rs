#![allow(dead_code)]

use std::path::{Path, PathBuf};

use orrery_media::RgbImage;

pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/media")
        .join(name)
}

/// A uint8 tensor of a safetensors fixture as (shape, bytes).
pub fn fixture_u8(file: &str, name: &str) -> (Vec<usize>, Vec<u8>) {
    let bytes = std::fs::read(testdata(file)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = st.tensor(name).unwrap();
    (view.shape().to_vec(), view.data().to_vec())
}

pub fn image_from(shape: &[usize], data: Vec<u8>) -> RgbImage {
    RgbImage::from_raw(shape[1] as u32, shape[0] as u32, data).unwrap()
}

/// (max abs difference, mean abs difference) of two equally sized byte buffers.
pub fn diff_stats(a: &[u8], b: &[u8]) -> (u8, f64) {
    assert_eq!(a.len(), b.len());
    let mut max = 0u8;
    let mut sum = 0u64;
    for (&x, &y) in a.iter().zip(b) {
        let d = x.abs_diff(y);
        max = max.max(d);
        sum += d as u64;
    }
    (max, sum as f64 / a.len() as f64)
}

pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

//! The tiny DiT and VAE of the golden fixtures, and the fixtures' frames as images.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use orrery_dit::DitModelDir;
use orrery_media::{Rgb, RgbImage};
use orrery_pipeline::WorldPipeline;
use orrery_vae::VaeModelPath;

pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

pub fn pipeline() -> WorldPipeline {
    let dit = DitModelDir::open(&testdata("dit_tiny"))
        .unwrap()
        .load(DType::F32, &Device::Cpu)
        .unwrap();
    let vae = VaeModelPath::open(&testdata("vae_tiny"))
        .unwrap()
        .load(DType::F32, &Device::Cpu)
        .unwrap();
    WorldPipeline::new(dit, vae).unwrap()
}

pub fn frames(u8_frames: &Tensor) -> Vec<RgbImage> {
    let (t, h, w, _) = u8_frames.dims4().unwrap();
    let data = u8_frames.flatten_all().unwrap().to_vec1::<u8>().unwrap();
    (0..t)
        .map(|i| {
            RgbImage::from_fn(w as u32, h as u32, |x, y| {
                let o = ((i * h + y as usize) * w + x as usize) * 3;
                Rgb([data[o], data[o + 1], data[o + 2]])
            })
        })
        .collect()
}

//! `orrery vae roundtrip`: encode and decode a video through the VAE and report the reconstruction PSNR.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use orrery_media::{read_video, resize, write_mp4, Mp4Options, RgbImage};
use orrery_pipeline::inputs::{clip_from_frames, frames_from_clip};
use orrery_vae::{Chunking, VaeModelPath};

use crate::memory_args::tiling;

use orrery_pipeline::{Size, WeightType};

#[derive(clap::Subcommand)]
pub enum VaeCommand {
    /// Encode and decode a video, write the reconstruction and print its PSNR against the input.
    Roundtrip(RoundtripArgs),
    /// Round-trip held-out physics clips through a VAE and score them as the physics bench scores its round trip:
    /// PSNR, SSIM and objects found by colour (the ceiling of any world model on this VAE).
    Bench(crate::vae_bench_cmd::VaeBenchArgs),
}

#[derive(clap::Args)]
pub struct RoundtripArgs {
    /// Input video (MP4).
    pub input: PathBuf,
    /// Reconstructed video (MP4, written atomically).
    pub output: PathBuf,
    /// VAE: a diffusers AutoencoderKLWan folder, or an official tokenizer.pth / Wan2.1_VAE.pth.
    #[arg(long)]
    pub model: PathBuf,
    /// Resize (cover + centre crop) to WxH first; both must be multiples of 8. Default: the input size cropped
    /// to multiples of 8.
    #[arg(long)]
    pub size: Option<Size>,
    /// Use at most this many frames (rounded down to 1 + 4k).
    #[arg(long)]
    pub frames: Option<usize>,
    /// Decode in spatial tiles of this many latent pixels (overlapping by a quarter tile), to bound memory.
    #[arg(long)]
    pub tile: Option<usize>,
    /// f32 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: WeightType,
    #[command(flatten)]
    pub device: crate::device::DeviceArgs,
}

pub fn run(cmd: VaeCommand) -> Result<()> {
    match cmd {
        VaeCommand::Roundtrip(args) => roundtrip(&args),
        VaeCommand::Bench(args) => crate::vae_bench_cmd::bench(&args),
    }
}

/// A round trip's frame size: positive multiples of 8.
pub(crate) fn checked_size(size: Size) -> Result<(u32, u32)> {
    let multiple_of_8 = |n: usize| n > 0 && n.is_multiple_of(8);
    if !multiple_of_8(size.width) || !multiple_of_8(size.height) {
        bail!("--size {size}: width and height must be positive multiples of 8");
    }
    Ok((
        u32::try_from(size.width).context("--size: too large")?,
        u32::try_from(size.height).context("--size: too large")?,
    ))
}

/// PSNR in dB over all pixels of two frame sequences (8-bit, peak 255).
fn psnr(a: &[RgbImage], b: &[RgbImage]) -> f64 {
    let (mut se, mut n) = (0f64, 0usize);
    for (x, y) in a.iter().zip(b) {
        for (p, q) in x.as_raw().iter().zip(y.as_raw()) {
            let d = *p as f64 - *q as f64;
            se += d * d;
            n += 1;
        }
    }
    if se == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (255f64 * 255.0 / (se / n as f64)).log10()
}

fn roundtrip(args: &RoundtripArgs) -> Result<()> {
    let dtype = args.dtype.dtype();
    let device = args.device.device()?;
    let model = VaeModelPath::open(&args.model)?;
    let video =
        read_video(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let tf = model.config.temporal_factor();
    let available = args.frames.unwrap_or(usize::MAX).min(video.frames.len());
    if available == 0 {
        bail!("{}: no frames", args.input.display());
    }
    let count = 1 + (available - 1) / tf * tf;
    let (w, h) = match &args.size {
        Some(s) => checked_size(*s)?,
        None => (video.width() / 8 * 8, video.height() / 8 * 8),
    };
    if w == 0 || h == 0 {
        bail!("{}: frames smaller than 8x8", args.input.display());
    }
    let frames: Vec<RgbImage> = video.frames[..count]
        .iter()
        .map(|f| resize::resize_to_cover_and_crop(f, w, h))
        .collect::<std::result::Result<_, _>>()?;
    let vae = model.load(dtype, &device)?;
    let start = std::time::Instant::now();
    let latent = vae.encode(
        &clip_from_frames(&frames)?.to_device(&device)?,
        Chunking::Stream(4),
    )?;
    device.synchronize()?; // a GPU runs asynchronously: time the work, not its launch
    let encode_s = start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    let decoded = match args.tile {
        Some(tile) => vae.decode_tiled(&latent, tiling(tile), Chunking::Stream(1))?,
        None => vae.decode(&latent, Chunking::Stream(1))?,
    };
    device.synchronize()?;
    let decode_s = start.elapsed().as_secs_f64();
    let out = frames_from_clip(&decoded.to_device(&Device::Cpu)?)?;
    write_mp4(&args.output, &out, video.fps, Mp4Options::default())
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "{} frames {w}x{h} -> latent {:?}; encode {encode_s:.1} s, decode {decode_s:.1} s; PSNR {:.2} dB",
        count,
        latent.dims(),
        psnr(&frames, &out)
    );
    Ok(())
}

//! `orrery vae bench`: held-out physics clips through a VAE, scored as the physics bench scores its round trip
//! (PSNR, SSIM, objects found by colour), without a DiT: the ceiling any world model on this VAE can reach. It also
//! says how far apart the encoder keeps the colours' codes ([`orrery_eval::latent_codes`]), which shows a VAE in
//! training separating two colours before its decoder draws them apart.

use std::path::PathBuf;

use anyhow::{bail, Result};
use orrery_eval::bench::{found_by_color_table, markdown_table, score_clip, summarise, table};
use orrery_eval::latent_codes::{CodeSeparation, ColourCodes, LatentFrame};
use orrery_pipeline::inputs::{decode_frames, encode_frames};
use orrery_pipeline::Size;
use orrery_vae::VaeModelPath;
use serde_json::json;

use crate::bench_cmd::{held_out_clips_shaped, ClipShape};
use crate::vae_cmds::checked_size;

#[derive(clap::Args)]
pub struct VaeBenchArgs {
    /// VAE folder (default: the embedded orrery-physics-nano's).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Held-out clips to score.
    #[arg(long, default_value_t = 30)]
    pub clips: usize,
    /// Physics families of the clips, comma-separated (default: all seven, in turn).
    #[arg(long, value_delimiter = ',')]
    pub families: Vec<String>,
    /// Base seed of the clips (the embedded model was trained on seed 0).
    #[arg(long, default_value_t = 7_777)]
    pub seed: u64,
    /// Frames per clip (1 + tk, t the VAE's temporal factor; default: the embedded model's).
    #[arg(long, default_value_t = 33)]
    pub frames: usize,
    /// Frame size WxH (multiples of 8; default: the embedded model's).
    #[arg(long, default_value = "64x64")]
    pub size: Size,
    /// Results as JSON (written atomically).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub device: crate::device::DeviceArgs,
}

/// The frame rate of the held-out clips (the embedded model's; it changes only the simulated time step).
const FPS: f32 = 16.0;

pub fn bench(args: &VaeBenchArgs) -> Result<()> {
    let folder = match &args.model {
        Some(p) => p.clone(),
        None => crate::default_model::bundle_dir()?.join("vae"),
    };
    if let Some(out) = &args.out {
        orrery_pipeline::engine::check_output(out)?;
    }
    let model = VaeModelPath::open(&folder)?;
    let tf = model.config.temporal_factor();
    if args.frames == 0 || !(args.frames - 1).is_multiple_of(tf) {
        bail!("--frames {}: expected 1 + {tf}k", args.frames);
    }
    let (width, height) = checked_size(args.size)?;
    let shape = ClipShape {
        frames: args.frames,
        width,
        height,
        fps: FPS,
    };
    let clips = held_out_clips_shaped(shape, args.clips, &args.families, args.seed, None)?;
    let device = args.device.device()?;
    let vae = model.load(candle_core::DType::F32, &device)?;
    let bar = crate::progress_bar(clips.len(), "clips", "vae bench")?;
    let mut scores = Vec::with_capacity(clips.len());
    let mut codes = ColourCodes::default();
    for clip in &clips {
        let real = clip.images();
        let latent = encode_frames(&vae, &device, &real)?; // (1, C, T', h, w)
        let decoded = decode_frames(&vae, &latent)?;
        scores.push(score_clip(&real, &decoded, &clip.truth, 0));
        // The first latent frame encodes the first pixel frame alone.
        let first = vae
            .normalize(&latent.narrow(2, 0, 1)?)?
            .squeeze(2)?
            .squeeze(0)?
            .to_device(&candle_core::Device::Cpu)?; // (C, h, w)
        let (channels, latent_height, latent_width) = first.dims3()?;
        let colours: Vec<(&str, [u8; 3])> = clip
            .truth
            .scene
            .objects
            .iter()
            .map(|o| (o.color_name.as_str(), o.color))
            .collect();
        let values = first.flatten_all()?.to_vec1::<f32>()?;
        let frame = LatentFrame {
            values: &values,
            channels,
            height: latent_height,
            width: latent_width,
        };
        codes.add(&real[0], frame, &colours);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let summary = summarise("VAE round trip", &scores);
    println!("{}", table(std::slice::from_ref(&summary)));
    let (headers, rows) = found_by_color_table(std::slice::from_ref(&summary), None);
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    println!(
        "objects found (%) by colour:\n{}",
        markdown_table(&headers, &rows)
    );
    let separation = codes.separation();
    println!(
        "normalised latent codes of the first frame's cells at least half one colour:\n{}",
        separation_table(&separation)
    );
    if let Some(out) = &args.out {
        let report = json!({
            "vae": folder,
            "seed": args.seed,
            "families": args.families,
            "frames": args.frames,
            "width": width,
            "height": height,
            "summary": summary,
            "latent_codes": separation,
            "clips": scores,
        });
        crate::write_text_atomically(out, &serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

/// Per colour: cells, spread and the nearest other colour's distance (in units of latent std).
fn separation_table(s: &CodeSeparation) -> String {
    let rows: Vec<Vec<String>> = s
        .colours
        .iter()
        .zip(&s.cells)
        .zip(&s.spread)
        .zip(s.nearest())
        .map(|(((colour, cells), spread), nearest)| {
            let (near, distance) = nearest.map_or(("-".to_owned(), "-".to_owned()), |(c, d)| {
                (c.to_owned(), format!("{d:.2}"))
            });
            vec![
                colour.clone(),
                cells.to_string(),
                format!("{spread:.2}"),
                near,
                distance,
            ]
        })
        .collect();
    markdown_table(
        &["colour", "cells", "spread", "nearest colour", "distance"],
        &rows,
    )
}

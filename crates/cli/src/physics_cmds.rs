//! `orrery physics generate|preview`: procedural physics worlds as webdataset shards, and a contact sheet or GIF
//! a person can look at.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use orrery_media::{write_gif, write_png, RgbImage};
use orrery_physics::dataset::{write_dataset, DatasetSpec};
use orrery_physics::families::FAMILIES;
use orrery_physics::{make_clip, ClipSettings};
use orrery_pipeline::Size;

#[derive(clap::Subcommand)]
pub enum PhysicsCommand {
    /// Generate clips with ground truth as tar shards of {key}.mp4, {key}.json, {key}.txt.
    Generate(GenerateArgs),
    /// Write a contact sheet (.png) or an animated grid (.gif) of a few clips of each family.
    Preview(PreviewArgs),
    /// Score a model's predictions of held-out clips against ground truth and baselines.
    Bench(crate::bench_cmd::BenchArgs),
}

#[derive(clap::Args)]
pub struct ClipArgs {
    /// Frames per clip.
    #[arg(long, default_value_t = 33)]
    pub frames: usize,
    /// Frame size WxH (even sides).
    #[arg(long, default_value = "64x64")]
    pub size: Size,
    /// Frames per second of the video (the physics runs at 240 Hz, sub-stepped).
    #[arg(long, default_value_t = 16.0)]
    pub fps: f32,
    /// Comma-separated families (default: all of fall, ramp, collision, stack, pendulum, occlusion, pusher).
    #[arg(long)]
    pub families: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Output folder for the shards.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of clips.
    #[arg(long)]
    pub clips: usize,
    #[command(flatten)]
    pub clip: ClipArgs,
    /// Clips per tar shard.
    #[arg(long, default_value_t = 1000)]
    pub clips_per_shard: usize,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

#[derive(clap::Args)]
pub struct PreviewArgs {
    /// .png (a contact sheet of 5 frames per clip) or .gif (the clips playing in a grid).
    #[arg(long)]
    pub out: PathBuf,
    /// Clips per family.
    #[arg(long, default_value_t = 2)]
    pub clips: usize,
    #[command(flatten)]
    pub clip: ClipArgs,
}

/// A frame side as the physics renderer takes it.
fn side(n: usize) -> Result<u32> {
    u32::try_from(n).with_context(|| format!("--size: {n} pixels is too large"))
}

fn settings(args: &ClipArgs) -> Result<(ClipSettings, Vec<String>)> {
    let settings = ClipSettings {
        frames: args.frames,
        width: side(args.size.width)?,
        height: side(args.size.height)?,
        fps: args.fps,
    };
    let families = match &args.families {
        Some(list) => list
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        None => FAMILIES.iter().map(|s| s.to_string()).collect(),
    };
    Ok((settings, families))
}

pub fn run(cmd: PhysicsCommand) -> Result<()> {
    match cmd {
        PhysicsCommand::Generate(args) => generate(&args),
        PhysicsCommand::Preview(args) => preview(&args),
        PhysicsCommand::Bench(args) => crate::bench_cmd::bench(&args),
    }
}

fn generate(args: &GenerateArgs) -> Result<()> {
    let (settings, families) = settings(&args.clip)?;
    let spec = DatasetSpec {
        clips: args.clips,
        clips_per_shard: args.clips_per_shard,
        families,
        seed: args.clip.seed,
        settings,
        workers: args.workers.max(1),
    };
    spec.validate()?;
    let bar = crate::progress_bar(args.clips, "clips", "physics")?;
    let start = std::time::Instant::now();
    let shards = write_dataset(&spec, &args.out, || bar.inc(1))?;
    bar.finish();
    println!(
        "wrote {} clips in {} shard(s) to {} in {:.1} s",
        args.clips,
        shards.len(),
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn preview(args: &PreviewArgs) -> Result<()> {
    let (settings, families) = settings(&args.clip)?;
    settings.validate()?;
    if args.clips == 0 {
        bail!("--clips must be at least 1");
    }
    let (w, h) = (settings.width, settings.height);
    let mut rows: Vec<Vec<Vec<u8>>> = Vec::new(); // per clip: its frames
    for family in &families {
        for i in 0..args.clips {
            let clip = make_clip(
                &format!("{family}_{i}"),
                family,
                args.clip.seed + i as u64,
                &settings,
            )?;
            rows.push(clip.frames);
        }
    }
    let ext = args.out.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "png" => {
            let cols = 5usize.min(settings.frames);
            let picks: Vec<usize> = (0..cols)
                .map(|c| c * (settings.frames - 1) / (cols - 1).max(1))
                .collect();
            let sheet = RgbImage::from_fn(w * cols as u32, h * rows.len() as u32, |x, y| {
                let (r, c) = ((y / h) as usize, (x / w) as usize);
                let f = &rows[r][picks[c]];
                let i = (((y % h) * w + x % w) * 3) as usize;
                orrery_media::Rgb([f[i], f[i + 1], f[i + 2]])
            });
            write_png(&args.out, &sheet)?;
        }
        "gif" => {
            let cols = args.clips as u32;
            let grid_rows = families.len() as u32;
            let frames: Vec<RgbImage> = (0..settings.frames)
                .map(|t| {
                    RgbImage::from_fn(w * cols, h * grid_rows, |x, y| {
                        let clip = ((y / h) * cols + x / w) as usize;
                        let f = &rows[clip][t];
                        let i = (((y % h) * w + x % w) * 3) as usize;
                        orrery_media::Rgb([f[i], f[i + 1], f[i + 2]])
                    })
                })
                .collect();
            write_gif(&args.out, &frames, settings.fps as f64)?;
        }
        _ => bail!("{}: the preview is a .png or a .gif", args.out.display()),
    }
    println!("wrote {}", args.out.display());
    Ok(())
}

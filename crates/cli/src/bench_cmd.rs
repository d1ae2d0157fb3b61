//! `orrery physics bench`: flags and files around the physics bench (`orrery_eval::bench`), run with the
//! generation engine as the predictor.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use orrery_eval::bench::BenchVideos;
use orrery_eval::bench::{run_bench, BenchOptions, OBSERVED_FRAMES};
use orrery_media::{write_mp4, Mp4Options};
use orrery_physics::clip::Clip;
use orrery_pipeline::bench_predictor::EnginePredictor;
use orrery_pipeline::{Engine, KeepObserved, Mode, ModelBundle};
use orrery_train::DataConfig;
use serde_json::json;

use crate::sampling_args::SamplingArgs;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Model bundle (default: the embedded orrery-physics-nano).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Held-out clips to score.
    #[arg(long, default_value_t = 200)]
    pub clips: usize,
    /// Clips also generated from their caption alone (Text2World object detection).
    #[arg(long, default_value_t = 50)]
    pub text_clips: usize,
    /// Physics families of the held-out clips, comma-separated (default: all seven, in turn).
    #[arg(long, value_delimiter = ',')]
    pub families: Vec<String>,
    /// Base seed of the held-out clips (the embedded model was trained on seed 0).
    #[arg(long, default_value_t = 7_777)]
    pub seed: u64,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Results as JSON (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Also an HTML report: the table and side-by-side GIFs (real | model | constant velocity) of a few clips.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also write the Video2World continuations as MP4 for `orrery eval`: DIR/real, DIR/model,
    /// DIR/copy-last-frame, DIR/constant-velocity (clip-NNNN.mp4 each, the frames after the observed ones), and
    /// the Text2World clips beside the real clips of their captions: DIR/text2world/real, DIR/text2world/model.
    #[arg(long)]
    pub videos: Option<PathBuf>,
}

/// Side-by-side clips kept for the report.
const REPORT_CLIPS: usize = 6;

fn write_videos(dir: &Path, i: usize, videos: &BenchVideos, fps: f64) -> Result<()> {
    let sets: Vec<(&str, &[orrery_media::RgbImage])> = match videos {
        BenchVideos::Video2World(c) => vec![
            ("real", c.real),
            ("model", c.model),
            ("copy-last-frame", c.copy_last),
            ("constant-velocity", c.constant_velocity),
        ],
        BenchVideos::Text2World { real, model } => {
            vec![("text2world/real", real), ("text2world/model", model)]
        }
    };
    for (sub, frames) in sets {
        let folder = dir.join(sub);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        let path = folder.join(format!("clip-{i:04}.mp4"));
        write_mp4(&path, frames, fps, Mp4Options::default())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `n` held-out clips of `families` (empty: all, in turn) at the engine's size, frames and frame rate: the training
/// clips' generator with base seed `seed`, manipulation clips cut from episodes of `episode_frames` where given.
pub(crate) fn held_out_clips(
    engine: &Engine,
    n: usize,
    families: &[String],
    seed: u64,
    episode_frames: Option<usize>,
) -> Result<Vec<Clip>> {
    let size = engine.size();
    let shape = ClipShape {
        frames: engine.frames(),
        width: size.width as u32,
        height: size.height as u32,
        fps: engine.fps() as f32,
    };
    held_out_clips_shaped(shape, n, families, seed, episode_frames)
}

/// Frames, size and frame rate of held-out clips.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClipShape {
    pub frames: usize,
    pub width: u32,
    pub height: u32,
    pub fps: f32,
}

/// [`held_out_clips`] of an explicit shape.
pub(crate) fn held_out_clips_shaped(
    shape: ClipShape,
    n: usize,
    families: &[String],
    seed: u64,
    episode_frames: Option<usize>,
) -> Result<Vec<Clip>> {
    let held_out = DataConfig {
        clips: n,
        frames: shape.frames,
        width: shape.width,
        height: shape.height,
        fps: shape.fps,
        families: families.to_vec(),
        seed,
        videos: None,
        episode_frames,
    };
    held_out.validate().map_err(anyhow::Error::msg)?;
    (0..n)
        .map(|i| held_out.clip(i).map_err(anyhow::Error::msg))
        .collect()
}

pub fn bench(args: &BenchArgs) -> Result<()> {
    let root = match &args.model {
        Some(p) => p.clone(),
        None => crate::default_model::bundle_dir()?,
    };
    // Samples are seeded by clip index with the fast generator; the model's own size, frames and weights.
    let options = args.sampling.bench_options(args.sampling.device.device()?);
    let engine = Engine::new(ModelBundle::open(&root)?, options)?;
    for path in [Some(&args.out), args.report.as_ref()]
        .into_iter()
        .flatten()
    {
        orrery_pipeline::engine::check_output(path)?;
    }
    let v2w_frames = engine
        .settings(Mode::Video2World)
        .conditional_latent_frames(Mode::Video2World);
    let v2w_pixels = engine.on_disk()?.vae.config.pixel_frames(v2w_frames);
    if v2w_pixels > OBSERVED_FRAMES {
        bail!(
            "{v2w_frames} Video2World conditional latent frames take {v2w_pixels} pixel frames; the bench observes \
             {OBSERVED_FRAMES}"
        );
    }
    let sampling: serde_json::Map<String, serde_json::Value> = Mode::ALL
        .iter()
        .map(|&m| {
            let s = engine.settings(m);
            (
                m.name().to_owned(),
                json!({"steps": s.steps, "guidance": s.guidance,
                       "conditional_frames": s.conditional_latent_frames(m),
                       "keep_observed": s.keep_observed.map(KeepObserved::to_json)}),
            )
        })
        .collect();
    let sampling_text = Mode::ALL
        .iter()
        .map(|&m| {
            let s = engine.settings(m);
            format!("{} {} steps at guidance {}", m.name(), s.steps, s.guidance)
        })
        .collect::<Vec<_>>()
        .join(", ");
    let clips = held_out_clips(
        &engine,
        args.clips.max(args.text_clips),
        &args.families,
        args.seed,
        None,
    )?;
    let fps = engine.fps();
    let options = BenchOptions {
        clips: args.clips,
        text_clips: args.text_clips,
        gif_clips: if args.report.is_some() {
            REPORT_CLIPS
        } else {
            0
        },
        fps,
    };
    let mut predictor = EnginePredictor::new(engine);
    let bar = crate::progress_bar(args.clips + args.text_clips, "clips", "physics bench")?;
    // A video that cannot be written stops the bench at once, naming the folder.
    let result = run_bench(
        &mut predictor,
        &clips,
        options,
        |i, continuations| match &args.videos {
            Some(dir) => write_videos(dir, i, continuations, fps).map_err(|e| {
                orrery_pipeline::PipelineError::Output {
                    path: dir.clone(),
                    detail: format!("{e:#}"),
                }
            }),
            None => Ok(()),
        },
        || bar.inc(1),
    )?;
    bar.finish();
    println!("{}", result.table());
    for line in result.head_to_head_lines() {
        println!("{line}");
    }
    println!("{}", result.text2world_line());
    println!("{}", result.seconds_line());
    let header = json!({"model": root, "seed": args.seed, "sampling": sampling});
    let serde_json::Value::Object(header) = header else {
        unreachable!("an object literal")
    };
    let report = result.to_json(header);
    crate::write_text_atomically(&args.out, &serde_json::to_string_pretty(&report)?)?;
    if let Some(path) = &args.report {
        let about = format!(
            "Model {}; {} held-out clips (base seed {}), {} observed frames; {}. Video2World and Image2World rows \
             score the predicted frames against the real ones and the simulator's ground truth.",
            root.display(),
            args.clips,
            args.seed,
            OBSERVED_FRAMES,
            sampling_text
        );
        crate::write_text_atomically(path, &result.to_html(&about))?;
    }
    Ok(())
}

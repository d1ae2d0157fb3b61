//! `orrery policy bench`: the action bench (`orrery_eval::policy::bench`) run with the generation engine: an
//! action-conditioned model against models without actions and the baselines on held-out manipulation clips.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use orrery_eval::policy::bench::{run_action_bench, ActionPredictor, ScoredFrames, SCORED_FROM};
use orrery_media::{write_mp4, Mp4Options};
use orrery_pipeline::action_bench::{EngineActionPredictor, VaeLatents};
use orrery_pipeline::{Engine, Mode, PipelineError};
use serde_json::json;

use crate::sampling_args::SamplingArgs;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The action-conditioned model bundle (its DiT takes the gripper's 4-wide actions).
    #[arg(long)]
    pub model: PathBuf,
    /// Models without actions to compare with, comma-separated (each generates Image2World from the same first
    /// frame); they must generate the action model's size and frames.
    #[arg(long, value_delimiter = ',')]
    pub compare: Vec<PathBuf>,
    /// Held-out manipulation clips to score.
    #[arg(long, default_value_t = 30)]
    pub clips: usize,
    /// Cut each clip from an episode of this many frames at an offset drawn from its seed, so that later phases
    /// of the task (contact, carrying, settling) are predicted too (default: clips start with their episode).
    #[arg(long)]
    pub episode_frames: Option<usize>,
    /// Base seed of the held-out clips (the embedded models were trained on seed 0).
    #[arg(long, default_value_t = 7_777)]
    pub seed: u64,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Results as JSON (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Also an HTML report: the table, the comparisons and side-by-side GIFs of a few clips.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also write each row's scored frames as MP4 for `orrery eval` (FVD): DIR/real and DIR/<row> (clip-NNNN.mp4),
    /// rows named actions, no-actions-N, copy-first-frame, constant-velocity, vae-round-trip.
    #[arg(long)]
    pub videos: Option<PathBuf>,
}

/// Side-by-side clips kept for the report.
const REPORT_CLIPS: usize = 6;

/// An engine for the model at `root` on `device` (one device value for all of the bench's engines: each CUDA
/// device value is a stream of its own).
fn engine(root: &Path, sampling: &SamplingArgs, device: &Device) -> Result<Engine> {
    Ok(Engine::open(root, sampling.bench_options(device.clone()))?)
}

/// Folder names of the rows' videos, in row order.
fn video_folders(compared: usize) -> Vec<String> {
    let mut names = vec!["actions".to_owned()];
    names.extend((1..=compared).map(|i| format!("no-actions-{i}")));
    names.extend(["copy-first-frame", "constant-velocity", "vae-round-trip"].map(String::from));
    names
}

fn write_videos(
    dir: &Path,
    folders: &[String],
    i: usize,
    frames: &ScoredFrames,
    fps: f64,
) -> Result<()> {
    let sets = std::iter::once(("real", frames.real)).chain(
        folders
            .iter()
            .map(String::as_str)
            .zip(frames.rows.iter().map(|r| r.1)),
    );
    for (sub, video) in sets {
        let folder = dir.join(sub);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        let path = folder.join(format!("clip-{i:04}.mp4"));
        write_mp4(&path, video, fps, Mp4Options::default())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

pub fn bench(args: &BenchArgs) -> Result<()> {
    if args.clips == 0 {
        bail!("--clips must be at least 1");
    }
    for path in [Some(&args.out), args.report.as_ref()]
        .into_iter()
        .flatten()
    {
        orrery_pipeline::engine::check_output(path)?;
    }
    let device = args.sampling.device.device()?;
    let action_engine = engine(&args.model, &args.sampling, &device)?;
    if action_engine.on_disk()?.dit.config.action.is_none() {
        bail!(
            "{}: the model's DiT takes no actions (no action embedders in its config.json); --model is the \
             action-conditioned model, models without actions go in --compare",
            args.model.display()
        );
    }
    let (size, frames, fps) = (
        action_engine.size(),
        action_engine.frames(),
        action_engine.fps(),
    );
    let mut compared = Vec::new();
    for root in &args.compare {
        let e = engine(root, &args.sampling, &device)?;
        if e.size() != size || e.frames() != frames {
            bail!(
                "--compare {}: it generates {} frames of {}, the action model {frames} of {size}",
                root.display(),
                e.frames(),
                e.size()
            );
        }
        compared.push(EngineActionPredictor::new(e)?);
    }
    let sampling_text = {
        let s = action_engine.settings(Mode::Image2World);
        format!("{} steps at guidance {}", s.steps, s.guidance)
    };
    let clips = crate::bench_cmd::held_out_clips(
        &action_engine,
        args.clips,
        &["gripper".to_owned()],
        args.seed,
        args.episode_frames,
    )?;
    let mut vae = VaeLatents::new(&action_engine)?;
    let mut action = EngineActionPredictor::new(action_engine)?;
    let folders = video_folders(compared.len());
    let mut predictors: Vec<&mut dyn ActionPredictor<Error = PipelineError>> = vec![&mut action];
    predictors.extend(
        compared
            .iter_mut()
            .map(|p| p as &mut dyn ActionPredictor<Error = PipelineError>),
    );
    let bar = crate::progress_bar(args.clips, "clips", "action bench")?;
    let gif_clips = if args.report.is_some() {
        REPORT_CLIPS
    } else {
        0
    };
    let result = run_action_bench(
        &mut predictors,
        &mut vae,
        &clips,
        gif_clips,
        fps,
        |i, scored| match &args.videos {
            Some(dir) => {
                write_videos(dir, &folders, i, scored, fps).map_err(|e| PipelineError::Output {
                    path: dir.clone(),
                    detail: format!("{e:#}"),
                })
            }
            None => Ok(()),
        },
        || bar.inc(1),
    )?;
    bar.finish();
    println!("{}", result.table());
    for line in result.comparison_lines() {
        println!("{line}");
    }
    let header = json!({"model": args.model, "compare": args.compare, "seed": args.seed,
                        "episode_frames": args.episode_frames, "image2world_sampling": sampling_text});
    let serde_json::Value::Object(header) = header else {
        unreachable!("an object literal")
    };
    crate::write_text_atomically(
        &args.out,
        &serde_json::to_string_pretty(&result.to_json(header))?,
    )?;
    if let Some(path) = &args.report {
        let about = format!(
            "Action model {}; {} held-out gripper clips (base seed {}) of {frames} frames at {size}{}, each \
             predicted from its first frame and the actions recorded in it ({sampling_text}); models without actions \
             generate Image2World from the same frame. Scored from frame {SCORED_FROM} on (constant velocity \
             sees frames 0 and 1).",
            args.model.display(),
            args.clips,
            args.seed,
            args.episode_frames
                .map(|n| format!(" cut from episodes of {n} frames"))
                .unwrap_or_default(),
        );
        crate::write_text_atomically(path, &result.to_html(&about))?;
    }
    Ok(())
}

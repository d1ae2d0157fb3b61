//! `orrery eval`: generated videos against real ones (paired by file name): PSNR, SSIM, Physics-IQ motion
//! metrics, FID and FVD, written as JSON and as an HTML report with tables, plots and side-by-side GIFs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use orrery_eval::frechet::{frechet_distance, FeatureStats};
use orrery_eval::metrics::{psnr, ssim, video_psnr, PSNR_CAP_DB};
use orrery_eval::motion::{motion_masks, motion_scores, physics_iq_score, MotionScores};
use orrery_evalnets::{
    I3d, InceptionFid, EVAL_WEIGHTS_DIR, I3D_FILE, I3D_MIN_FRAMES, INCEPTION_FILE,
};
use orrery_media::{read_video, RgbImage, Video};
use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Metric {
    Psnr,
    Ssim,
    Motion,
    Fid,
    Fvd,
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Folder of real videos (.mp4).
    #[arg(long)]
    pub real: PathBuf,
    /// Folder of generated videos with the same file names.
    #[arg(long)]
    pub generated: PathBuf,
    /// A second real take of each video (same names): the physical variance that normalises the Physics-IQ score.
    #[arg(long)]
    pub real_take2: Option<PathBuf>,
    /// Metrics to compute.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "psnr,ssim,motion,fid,fvd"
    )]
    pub metrics: Vec<Metric>,
    /// Folder of the converted FID/FVD networks (default: where tools/eval_weights/fetch.py writes them).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Frames per batch of the Inception network.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Side-by-side GIFs shown in the report.
    #[arg(long, default_value_t = 6)]
    pub gifs: usize,
    /// HTML report; the numbers are also written as JSON beside it (same name, .json).
    #[arg(long)]
    pub report: PathBuf,
    /// The Inception (FID) and I3D (FVD) networks run here.
    #[command(flatten)]
    pub device: crate::device::DeviceArgs,
}

/// The .mp4 files of a folder, by name.
fn list_videos(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("reading the folder {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("reading the folder {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.to_ascii_lowercase().ends_with(".mp4") {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn read_set(dir: &Path, names: &[String], bar: &ProgressBar) -> Result<Vec<Video>> {
    names
        .iter()
        .map(|n| {
            let path = dir.join(n);
            let v = read_video(&path).with_context(|| format!("reading {}", path.display()));
            bar.inc(1);
            v
        })
        .collect()
}

fn check_pair(name: &str, real: &Video, other: &Video, what: &str) -> Result<()> {
    if real.frames.len() != other.frames.len()
        || real.frames[0].dimensions() != other.frames[0].dimensions()
    {
        bail!(
            "{name}: the real video has {} frames of {:?}, the {what} one {} frames of {:?}; paired metrics need \
             the same length and size",
            real.frames.len(),
            real.frames[0].dimensions(),
            other.frames.len(),
            other.frames[0].dimensions()
        );
    }
    Ok(())
}

fn scores_json(s: &MotionScores) -> Value {
    serde_json::to_value(s).expect("plain numbers serialise")
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

fn weights_path(args: &EvalArgs, file: &str) -> Result<PathBuf> {
    let dir = match &args.weights {
        Some(d) => d.clone(),
        None => crate::cache::cache_root()?.join(EVAL_WEIGHTS_DIR),
    };
    let path = dir.join(file);
    if !path.is_file() {
        bail!(
            "{} not found: run `python3 tools/eval_weights/fetch.py` once (it fetches and converts the FID/FVD \
             networks), pass --weights, or leave fid/fvd out of --metrics",
            path.display()
        );
    }
    Ok(path)
}

pub fn eval(args: &EvalArgs) -> Result<()> {
    let wants = |m: Metric| args.metrics.contains(&m);
    let device = args.device.device()?;
    // The output folder before the long part, so a typo fails at once.
    if let Some(dir) = args.report.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let names = list_videos(&args.real)?;
    if names.is_empty() {
        bail!("{}: no .mp4 videos", args.real.display());
    }
    let generated_names = list_videos(&args.generated)?;
    if let Some(extra) = generated_names.iter().find(|n| !names.contains(n)) {
        bail!(
            "{}: {extra} has no real video of the same name in {}",
            args.generated.display(),
            args.real.display()
        );
    }
    if let Some(missing) = names.iter().find(|n| !generated_names.contains(n)) {
        bail!(
            "{}: no generated video for the real {missing}",
            args.generated.display()
        );
    }
    // Fail on missing weights before the long part.
    let inception_path = wants(Metric::Fid)
        .then(|| weights_path(args, INCEPTION_FILE))
        .transpose()?;
    let i3d_path = wants(Metric::Fvd)
        .then(|| weights_path(args, I3D_FILE))
        .transpose()?;

    let sets = 2 + usize::from(args.real_take2.is_some());
    let bar = crate::progress_bar(names.len() * sets, "", "reading videos")?;
    let real = read_set(&args.real, &names, &bar)?;
    let generated = read_set(&args.generated, &names, &bar)?;
    let take2 = args
        .real_take2
        .as_ref()
        .map(|d| read_set(d, &names, &bar))
        .transpose()?;
    bar.finish_and_clear();
    for (i, name) in names.iter().enumerate() {
        check_pair(name, &real[i], &generated[i], "generated")?;
        if let Some(t) = &take2 {
            check_pair(name, &real[i], &t[i], "second real take")?;
        }
    }

    if i3d_path.is_some() {
        if let Some((v, name)) = real
            .iter()
            .zip(&names)
            .find(|(v, _)| v.frames.len() < I3D_MIN_FRAMES)
        {
            bail!(
                "FVD: {name} has {} frames; I3D needs at least {I3D_MIN_FRAMES}",
                v.frames.len()
            );
        }
    }
    let Paired {
        per_video,
        motion,
        variance,
        overlays,
    } = paired_metrics(args, &names, &real, &generated, take2.as_deref())?;

    let mut summary = serde_json::Map::new();
    let column = |key: &str| mean(per_video.iter().filter_map(|v| v[key].as_f64()));
    if wants(Metric::Psnr) {
        summary.insert("psnr".into(), json!(column("psnr")));
    }
    if wants(Metric::Ssim) {
        summary.insert("ssim".into(), json!(column("ssim")));
    }
    if wants(Metric::Motion) {
        let m = |f: fn(&MotionScores) -> f64| mean(motion.iter().map(f));
        summary.insert("spatial_iou".into(), json!(m(|s| s.spatial_iou)));
        summary.insert(
            "spatiotemporal_iou".into(),
            json!(m(|s| s.spatiotemporal_iou)),
        );
        summary.insert(
            "weighted_spatial_iou".into(),
            json!(m(|s| s.weighted_spatial_iou)),
        );
        summary.insert("motion_mse".into(), json!(m(|s| s.mse)));
        if !variance.is_empty() {
            let score = physics_iq_score(&motion, &variance).map_err(anyhow::Error::msg)?;
            summary.insert("physics_iq".into(), json!(score));
        }
    }
    if let Some(path) = &inception_path {
        let net = InceptionFid::load(path, &device)?;
        let (fid, count) = feature_distance(
            "FID",
            "frames",
            [&frames(&real), &frames(&generated)],
            args.batch,
            |c| net.features(c, c.len()),
        )?;
        summary.insert("fid".into(), json!(fid));
        summary.insert("fid_frames".into(), json!(count));
    }
    if let Some(path) = &i3d_path {
        let net = I3d::load(path, &device)?;
        let (fvd, count) = feature_distance(
            "FVD",
            "clips",
            [&clips(&real), &clips(&generated)],
            1,
            |c| net.features(c),
        )?;
        summary.insert("fvd".into(), json!(fvd));
        summary.insert("fvd_clips".into(), json!(count));
    }

    let result = json!({
        "real": args.real.display().to_string(),
        "generated": args.generated.display().to_string(),
        "real_take2": args.real_take2.as_ref().map(|p| p.display().to_string()),
        "videos": names.len(),
        "summary": Value::Object(summary.clone()),
        "per_video": per_video,
    });
    let json_path = args.report.with_extension("json");
    crate::write_text_atomically(&json_path, &serde_json::to_string_pretty(&result)?)?;
    let report = crate::eval_report::build_report(
        args, &names, &real, &generated, &per_video, &summary, &overlays,
    )?;
    crate::write_text_atomically(&args.report, &report.to_html())?;
    println!("{}", serde_json::to_string_pretty(&result["summary"])?);
    eprintln!(
        "wrote {} and {}",
        args.report.display(),
        json_path.display()
    );
    Ok(())
}

/// What the paired comparison of each real video with its generated one gives.
#[derive(Default)]
struct Paired {
    /// One JSON object per video: name, frames, psnr, psnr_per_frame, ssim, motion, physical_variance.
    per_video: Vec<Value>,
    motion: Vec<MotionScores>,
    /// Real take 1 against take 2, when given.
    variance: Vec<MotionScores>,
    /// Motion-mask overlays of the first videos, for the report's GIFs.
    overlays: Vec<Vec<RgbImage>>,
}

/// PSNR, SSIM and Physics-IQ motion metrics of every pair (and of the second real take, when given).
fn paired_metrics(
    args: &EvalArgs,
    names: &[String],
    real: &[Video],
    generated: &[Video],
    take2: Option<&[Video]>,
) -> Result<Paired> {
    let wants = |m: Metric| args.metrics.contains(&m);
    let mut p = Paired::default();
    let bar = crate::progress_bar(names.len(), "", "paired metrics")?;
    for (i, name) in names.iter().enumerate() {
        let (r, g) = (&real[i].frames, &generated[i].frames);
        let mut entry = json!({ "name": name, "frames": r.len() });
        if wants(Metric::Psnr) {
            entry["psnr"] = json!(video_psnr(r, g).min(PSNR_CAP_DB));
            entry["psnr_per_frame"] = json!(r
                .iter()
                .zip(g)
                .map(|(a, b)| psnr(a, b).min(PSNR_CAP_DB))
                .collect::<Vec<_>>());
        }
        if wants(Metric::Ssim) {
            entry["ssim"] = json!(mean(r.iter().zip(g).map(|(a, b)| ssim(a, b))));
        }
        if wants(Metric::Motion) {
            let (rm, gm) = (motion_masks(r), motion_masks(g));
            let s = motion_scores(r, &rm, g, &gm).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            entry["motion"] = scores_json(&s);
            p.motion.push(s);
            if let Some(t) = take2 {
                let tm = motion_masks(&t[i].frames);
                let v = motion_scores(r, &rm, &t[i].frames, &tm)
                    .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
                entry["physical_variance"] = scores_json(&v);
                p.variance.push(v);
            }
            if p.overlays.len() < args.gifs {
                p.overlays.push(
                    rm.iter()
                        .zip(&gm)
                        .map(|(a, b)| crate::eval_report::mask_overlay(a, b))
                        .collect::<Vec<_>>(),
                );
            }
        }
        p.per_video.push(entry);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(p)
}

fn frames(set: &[Video]) -> Vec<&RgbImage> {
    set.iter().flat_map(|v| v.frames.iter()).collect()
}

fn clips(set: &[Video]) -> Vec<&[RgbImage]> {
    set.iter().map(|v| v.frames.as_slice()).collect()
}

/// The Frechet distance between the features of the real and the generated items (frames or clips), extracted
/// `batch` items at a time, and the number of real items.
fn feature_distance<T>(
    metric: &str,
    unit: &str,
    [real, generated]: [&[T]; 2],
    batch: usize,
    mut extract: impl FnMut(&[T]) -> orrery_evalnets::Result<Vec<Vec<f32>>>,
) -> Result<(f64, usize)> {
    let mut stats = Vec::new();
    for (set, items) in [("real", real), ("generated", generated)] {
        let bar = crate::progress_bar(items.len(), unit, format!("{metric} features ({set})"))?;
        let mut rows = Vec::with_capacity(items.len());
        for chunk in items.chunks(batch.max(1)) {
            rows.extend(extract(chunk)?);
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        let s = FeatureStats::from_rows(&rows)
            .map_err(|e| anyhow::anyhow!("{metric} ({set} {unit}): {e}"))?;
        stats.push(s);
    }
    let distance = frechet_distance(&stats[0], &stats[1]).map_err(anyhow::Error::msg)?;
    Ok((distance, stats[0].count))
}

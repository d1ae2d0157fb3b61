//! `orrery eval`: generated videos against real ones (paired by file name): PSNR, SSIM, Physics-IQ motion
//! metrics, FID and FVD, written as JSON and as an HTML report with tables, plots and side-by-side GIFs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use indicatif::ProgressBar;
use orrery_eval::frechet::{frechet_distance, FeatureStats};
use orrery_eval::metrics::{psnr, ssim, video_psnr};
use orrery_eval::motion::{motion_masks, motion_scores, physics_iq_score, Mask, MotionScores};
use orrery_eval::report::{Block, LinePlot, Report, Section};
use orrery_evalnets::{
    I3d, InceptionFid, EVAL_WEIGHTS_DIR, I3D_FILE, I3D_MIN_FRAMES, INCEPTION_FILE,
};
use orrery_media::{encode_gif, read_video, tile_clips, Rgb, RgbImage, Video};
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

/// One colour per mask pixel: red real only, green generated only, yellow both.
fn mask_overlay(real: &Mask, generated: &Mask) -> RgbImage {
    RgbImage::from_fn(real.width as u32, real.height as u32, |x, y| {
        let i = y as usize * real.width + x as usize;
        match (real.moving[i], generated.moving[i]) {
            (true, true) => Rgb([240, 220, 40]),
            (true, false) => Rgb([220, 50, 50]),
            (false, true) => Rgb([50, 200, 80]),
            (false, false) => Rgb([20, 20, 20]),
        }
    })
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
    let mut per_video = Vec::new();
    let mut motion = Vec::new();
    let mut variance = Vec::new();
    let mut masks_for_gifs = Vec::new();
    let bar = crate::progress_bar(names.len(), "", "paired metrics")?;
    for (i, name) in names.iter().enumerate() {
        let (r, g) = (&real[i].frames, &generated[i].frames);
        let mut entry = json!({ "name": name, "frames": r.len() });
        if wants(Metric::Psnr) {
            entry["psnr"] = json!(video_psnr(r, g).min(100.0));
            entry["psnr_per_frame"] = json!(r
                .iter()
                .zip(g)
                .map(|(a, b)| psnr(a, b).min(100.0))
                .collect::<Vec<_>>());
        }
        if wants(Metric::Ssim) {
            entry["ssim"] = json!(mean(r.iter().zip(g).map(|(a, b)| ssim(a, b))));
        }
        if wants(Metric::Motion) {
            let (rm, gm) = (motion_masks(r), motion_masks(g));
            let s = motion_scores(r, &rm, g, &gm).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            entry["motion"] = scores_json(&s);
            motion.push(s);
            if let Some(t) = &take2 {
                let tm = motion_masks(&t[i].frames);
                let v = motion_scores(r, &rm, &t[i].frames, &tm)
                    .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
                entry["physical_variance"] = scores_json(&v);
                variance.push(v);
            }
            if masks_for_gifs.len() < args.gifs {
                masks_for_gifs.push(
                    rm.iter()
                        .zip(&gm)
                        .map(|(a, b)| mask_overlay(a, b))
                        .collect::<Vec<_>>(),
                );
            }
        }
        per_video.push(entry);
        bar.inc(1);
    }
    bar.finish_and_clear();

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
        let net = InceptionFid::load(path, &Device::Cpu)?;
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
        let net = I3d::load(path, &Device::Cpu)?;
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
    let report = build_report(
        args,
        &names,
        &real,
        &generated,
        &per_video,
        &summary,
        &masks_for_gifs,
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

fn fmt_opt(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    args: &EvalArgs,
    names: &[String],
    real: &[Video],
    generated: &[Video],
    per_video: &[Value],
    summary: &serde_json::Map<String, Value>,
    masks: &[Vec<RgbImage>],
) -> Result<Report> {
    let summary_rows: Vec<Vec<String>> = summary
        .iter()
        .map(|(k, v)| {
            let digits = if k.ends_with("frames") || k.ends_with("clips") {
                0
            } else {
                4
            };
            vec![k.clone(), fmt_opt(v, digits)]
        })
        .collect();
    let headers = [
        "video",
        "frames",
        "PSNR (dB)",
        "SSIM",
        "spatial IoU",
        "spatiotemporal IoU",
        "weighted spatial IoU",
        "MSE",
    ];
    let rows: Vec<Vec<String>> = per_video
        .iter()
        .map(|v| {
            let m = &v["motion"];
            vec![
                v["name"].as_str().unwrap_or("").to_owned(),
                v["frames"].to_string(),
                fmt_opt(&v["psnr"], 2),
                fmt_opt(&v["ssim"], 4),
                fmt_opt(&m["spatial_iou"], 4),
                fmt_opt(&m["spatiotemporal_iou"], 4),
                fmt_opt(&m["weighted_spatial_iou"], 4),
                fmt_opt(&m["mse"], 5),
            ]
        })
        .collect();
    let mut sections = vec![
        Section {
            title: "Summary".into(),
            blocks: vec![
                Block::Paragraph(format!(
                    "{} generated videos ({}) against real videos ({}).",
                    names.len(),
                    args.generated.display(),
                    args.real.display()
                )),
                Block::Table {
                    headers: vec!["metric".into(), "value".into()],
                    rows: summary_rows,
                },
            ],
        },
        Section {
            title: "Per video".into(),
            blocks: vec![Block::Table {
                headers: headers.iter().map(|h| h.to_string()).collect(),
                rows,
            }],
        },
    ];
    let curves: Vec<(String, Vec<(f64, f64)>)> = per_video
        .iter()
        .take(6)
        .filter_map(|v| {
            let values = v["psnr_per_frame"].as_array()?;
            let pts = values
                .iter()
                .enumerate()
                .filter_map(|(k, p)| Some((k as f64, p.as_f64()?)))
                .collect();
            Some((v["name"].as_str().unwrap_or("").to_owned(), pts))
        })
        .collect();
    if !curves.is_empty() {
        sections.push(Section {
            title: "PSNR over time".into(),
            blocks: vec![Block::Plot(LinePlot {
                title: "PSNR per frame (first videos)".into(),
                x_label: "frame".into(),
                y_label: "PSNR (dB)".into(),
                series: curves,
            })],
        });
    }
    let mut gifs = Vec::new();
    for i in 0..names.len().min(args.gifs) {
        let (r, g) = (&real[i], &generated[i]);
        let (w, h) = r.frames[0].dimensions();
        let mut row: Vec<&[RgbImage]> = vec![&r.frames, &g.frames];
        if let Some(m) = masks.get(i) {
            row.push(m);
        }
        let tiled = tile_clips(&[row], w, h);
        let fps = r.fps.clamp(1.0, 50.0);
        gifs.push((
            format!(
                "{}: real | generated{}",
                names[i],
                if masks.get(i).is_some() {
                    " | motion (red real, green generated, yellow both)"
                } else {
                    ""
                }
            ),
            encode_gif(&tiled, fps)?,
        ));
    }
    if !gifs.is_empty() {
        sections.push(Section {
            title: "Real and generated".into(),
            blocks: vec![Block::Gifs(gifs)],
        });
    }
    Ok(Report {
        title: "orrery evaluation".into(),
        sections,
    })
}

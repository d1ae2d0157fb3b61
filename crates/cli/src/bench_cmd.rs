//! `orrery physics bench`: a model's Video2World, Image2World and Text2World predictions of held-out physics
//! clips, scored against the real frames and the simulator's ground truth, beside the copy-last-frame and
//! constant-velocity baselines and the bundle's VAE round trip of the real frames (what a perfect latent
//! prediction would score).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use orrery_eval::baselines::{constant_velocity, copy_last_frame};
use orrery_eval::bench::{
    clips_won, matched_trajectory, psnr_by_horizon, score_clip, summarise, table, table_row,
    ClipScore, MethodSummary, TABLE_HEADERS,
};
use orrery_eval::report::{Block, LinePlot, Report, Section};
use orrery_eval::track::locate;
use orrery_flow::noise::NoiseKind;
use orrery_media::{encode_gif, tile_clips, write_mp4, Mp4Options, RgbImage};
use orrery_pipeline::inputs::{clip_from_frames, frames_from_clip};
use orrery_pipeline::observed::keep_observed_pixels;
use orrery_pipeline::{
    KeepObserved, Mode, ModeSampling, ModelBundle, Request, SamplingSettings, WorldPipeline,
};
use orrery_train::data::DataConfig;
use orrery_vae::{Chunking, VaeConfig};
use serde_json::json;

use crate::generate_cmd::{mode_settings, KeepObservedArg};

/// Pixel frames of the Video2World input (2 latent frames).
const OBSERVED_FRAMES: usize = 5;

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
    /// Base seed of the held-out clips (the embedded model was trained on seed 0).
    #[arg(long, default_value_t = 7_777)]
    pub seed: u64,
    /// Sampling steps (default: the bundle's).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Classifier-free guidance (default: the bundle's; 1 is the conditional prediction alone).
    #[arg(long)]
    pub guidance: Option<f64>,
    /// Video2World conditional latent frames (default: the bundle's); their pixel frames must be among the
    /// observed ones.
    #[arg(long)]
    pub conditional_frames: Option<usize>,
    /// Where the models keep the observed pixels, THRESHOLD[,MARGIN] or `off` (default: the bundle's); when on,
    /// they are also scored on the decoder's pixels alone.
    #[arg(long, value_parser = crate::generate_cmd::parse_keep_observed)]
    pub keep_observed: Option<KeepObservedArg>,
    /// Results as JSON (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Also an HTML report: the table and side-by-side GIFs (real | model | constant velocity) of a few clips.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also write the Video2World continuations as MP4 for `orrery eval`: DIR/real, DIR/model,
    /// DIR/copy-last-frame, DIR/constant-velocity (clip-NNNN.mp4 each, the frames after the observed ones).
    #[arg(long)]
    pub videos: Option<PathBuf>,
}

/// Side-by-side clips kept for the report.
const REPORT_CLIPS: usize = 6;

/// The Video2World continuations of one clip, for `--videos` and the report.
struct Continuations<'a> {
    real: &'a [RgbImage],
    model: &'a [RgbImage],
    copy_last: &'a [RgbImage],
    constant_velocity: &'a [RgbImage],
}

fn write_videos(dir: &Path, i: usize, c: &Continuations, fps: f64) -> Result<()> {
    for (sub, frames) in [
        ("real", c.real),
        ("model", c.model),
        ("copy-last-frame", c.copy_last),
        ("constant-velocity", c.constant_velocity),
    ] {
        let folder = dir.join(sub);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        let path = folder.join(format!("clip-{i:04}.mp4"));
        write_mp4(&path, frames, fps, Mp4Options::default())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The real frames encoded and decoded by the bundle's VAE: the ceiling of any latent prediction.
fn vae_round_trip(pipeline: &WorldPipeline, real: &[RgbImage]) -> Result<Vec<RgbImage>> {
    let video = clip_from_frames(real)?;
    let latent = pipeline.vae.encode(&video, Chunking::Whole)?;
    let decoded = pipeline.vae.decode(&latent, Chunking::Whole)?;
    Ok(frames_from_clip(&decoded)?)
}

/// A Video2World output aligned with the real clip: the pipeline conditions on the last observed frames that
/// make its conditional latent frames, so its output starts there; the frames before are the observed ones.
fn aligned_video2world(
    observed: &[RgbImage],
    generated: Vec<RgbImage>,
    vae: &VaeConfig,
    conditional_frames: usize,
) -> Vec<RgbImage> {
    let total = generated.len();
    let used = vae.pixel_frames(conditional_frames).min(observed.len());
    let mut video = observed[..observed.len() - used].to_vec();
    video.extend(generated);
    video.truncate(total);
    video
}

/// A model's output: the decoder's pixels, and with the observed pixels kept where `settings.keep_observed` says.
struct ModelFrames {
    decoded: Vec<RgbImage>,
    kept: Option<Vec<RgbImage>>,
}

impl ModelFrames {
    /// What the model outputs with the settings it was asked for.
    fn output(&self) -> &[RgbImage] {
        self.kept.as_deref().unwrap_or(&self.decoded)
    }
}

fn generate(
    pipeline: &WorldPipeline,
    bundle: &ModelBundle,
    prompt: &Tensor,
    negative: &Tensor,
    input: (Option<&RgbImage>, Option<&[RgbImage]>),
    settings: &SamplingSettings,
) -> Result<ModelFrames> {
    let d = &bundle.defaults;
    let request = Request {
        frames: d.frames,
        width: d.width,
        height: d.height,
        text: prompt,
        negative: Some(negative),
        image: input.0,
        video: input.1,
        settings: SamplingSettings {
            keep_observed: None,
            ..settings.clone()
        },
    };
    let out = pipeline.generate(&request, |_, _| {})?;
    let kept = match (settings.keep_observed, &out.observed) {
        (Some(keep), Some(observed)) => Some(frames_from_clip(&keep_observed_pixels(
            &out.video, observed, keep,
        )?)?),
        _ => None,
    };
    Ok(ModelFrames {
        decoded: frames_from_clip(&out.video)?,
        kept,
    })
}

/// `per_method(scores)` of each method, keyed by its name.
fn by_method(
    names: &[&str],
    scores: &[Vec<ClipScore>],
    per_method: impl Fn(&[ClipScore]) -> Vec<f64>,
) -> serde_json::Value {
    names
        .iter()
        .zip(scores)
        .map(|(name, s)| (name.to_string(), json!(per_method(s))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

pub fn bench(args: &BenchArgs) -> Result<()> {
    let root = match &args.model {
        Some(p) => p.clone(),
        None => crate::default_model::bundle_dir()?,
    };
    let bundle = ModelBundle::open(&root)?;
    let d = bundle.defaults.clone();
    // Each mode samples as the bundle says for it, unless --steps / --guidance set all three.
    let overrides = ModeSampling {
        steps: args.steps,
        guidance: args.guidance,
        conditional_frames: args.conditional_frames,
    };
    let settings: Vec<SamplingSettings> = Mode::ALL
        .iter()
        .map(|&mode| mode_settings(&d, mode, overrides, args.keep_observed, 0, NoiseKind::Fast))
        .collect();
    let keep_observed = settings[Mode::Video2World as usize].keep_observed;
    let settings_for = |mode: Mode, seed: u64| SamplingSettings {
        seed,
        ..settings[mode as usize].clone()
    };
    let sampling: serde_json::Map<String, serde_json::Value> = Mode::ALL
        .iter()
        .map(|&m| {
            let s = &settings[m as usize];
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
            let s = &settings[m as usize];
            format!("{} {} steps at guidance {}", m.name(), s.steps, s.guidance)
        })
        .collect::<Vec<_>>()
        .join(", ");
    // Held-out clips: the training clips' generator with another base seed, all families.
    let held_out = DataConfig {
        clips: args.clips.max(args.text_clips),
        frames: d.frames,
        width: d.width as u32,
        height: d.height as u32,
        fps: d.fps as f32,
        families: Vec::new(),
        seed: args.seed,
    };
    held_out.validate().map_err(anyhow::Error::msg)?;
    let clips: Vec<_> = (0..held_out.clips)
        .map(|i| held_out.clip(i).map_err(anyhow::Error::msg))
        .collect::<Result<_>>()?;
    let mut prompts: Vec<&str> = clips
        .iter()
        .map(|c| c.truth.captions.medium.as_str())
        .collect();
    let negative_prompt = bundle.unconditional_prompt().unwrap_or("");
    prompts.push(negative_prompt);
    let mut embeds = bundle.encode_prompts(&prompts, None, DType::F32)?;
    let negative = embeds.pop().context("negative prompt embedding")?;
    let pipeline = WorldPipeline::new(
        bundle.dit.load(DType::F32, &Device::Cpu)?,
        bundle.vae.load(DType::F32, &Device::Cpu)?,
    )?;
    let v2w_frames =
        settings[Mode::Video2World as usize].conditional_latent_frames(Mode::Video2World);
    let v2w_pixels = pipeline.vae.config.pixel_frames(v2w_frames);
    if v2w_pixels > OBSERVED_FRAMES {
        bail!(
            "{v2w_frames} Video2World conditional latent frames take {v2w_pixels} pixel frames; the bench observes \
             {OBSERVED_FRAMES}"
        );
    }
    let bar = crate::progress_bar(args.clips + args.text_clips, "clips", "physics bench")?;
    let mut names = vec![
        "video2world: model",
        "video2world: copy last frame",
        "video2world: constant velocity",
        "video2world: VAE round trip (ceiling)",
        "image2world: model",
        "image2world: copy first frame",
    ];
    // With the observed pixels kept, the decoder's pixels alone are scored too (rows 6 and 7).
    if keep_observed.is_some() {
        names.push("video2world: model, decoder pixels only");
        names.push("image2world: model, decoder pixels only");
    }
    let mut scores: Vec<Vec<ClipScore>> = vec![Vec::new(); names.len()];
    let mut gifs = Vec::new();
    for (i, clip) in clips.iter().take(args.clips).enumerate() {
        let real = clip.images();
        let colors: Vec<[u8; 3]> = clip.truth.scene.objects.iter().map(|o| o.color).collect();
        let observed = &real[..OBSERVED_FRAMES];
        let future = &real[OBSERVED_FRAMES..];
        let n = future.len();
        let generated = generate(
            &pipeline,
            &bundle,
            &embeds[i],
            &negative,
            (None, Some(observed)),
            &settings_for(Mode::Video2World, i as u64),
        )?;
        let align = |frames: &[RgbImage]| {
            aligned_video2world(observed, frames.to_vec(), &pipeline.vae.config, v2w_frames)
        };
        let v2w = align(generated.output());
        let i2w = generate(
            &pipeline,
            &bundle,
            &embeds[i],
            &negative,
            (Some(&real[0]), None),
            &settings_for(Mode::Image2World, i as u64),
        )?;
        let t = &clip.truth;
        let continuations = Continuations {
            real: future,
            model: &v2w[OBSERVED_FRAMES..],
            copy_last: &copy_last_frame(observed, n),
            constant_velocity: &constant_velocity(observed, &colors, n),
        };
        for (k, predicted) in [
            continuations.model,
            continuations.copy_last,
            continuations.constant_velocity,
        ]
        .into_iter()
        .enumerate()
        {
            scores[k].push(score_clip(future, predicted, t, OBSERVED_FRAMES));
        }
        if let Some(dir) = &args.videos {
            write_videos(dir, i, &continuations, d.fps)?;
        }
        if args.report.is_some() && i < REPORT_CLIPS {
            // The baseline continues the observed frames: show them first, as the model's output does.
            let mut cv = observed.to_vec();
            cv.extend_from_slice(continuations.constant_velocity);
            let tiled = tile_clips(
                &[vec![&real[..], &v2w[..], &cv[..]]],
                d.width as u32,
                d.height as u32,
            );
            gifs.push((
                format!(
                    "clip {i}: real | model | constant velocity ({})",
                    clip.truth.captions.short
                ),
                encode_gif(&tiled, d.fps)?,
            ));
        }
        let round_trip = vae_round_trip(&pipeline, &real)?;
        scores[3].push(score_clip(
            future,
            &round_trip[OBSERVED_FRAMES..],
            t,
            OBSERVED_FRAMES,
        ));
        scores[4].push(score_clip(&real[1..], &i2w.output()[1..], t, 1));
        if keep_observed.is_some() {
            let v2w_decoded = align(&generated.decoded);
            scores[6].push(score_clip(
                future,
                &v2w_decoded[OBSERVED_FRAMES..],
                t,
                OBSERVED_FRAMES,
            ));
            scores[7].push(score_clip(&real[1..], &i2w.decoded[1..], t, 1));
        }
        scores[5].push(score_clip(
            &real[1..],
            &copy_last_frame(&real[..1], real.len() - 1),
            t,
            1,
        ));
        bar.inc(1);
    }
    // Text2World: is each captioned object (by colour) in at least half the generated frames?
    let (mut shown, mut total) = (0usize, 0usize);
    for (i, clip) in clips.iter().take(args.text_clips).enumerate() {
        let s = settings_for(Mode::Text2World, 1_000_000 + i as u64);
        let frames = generate(&pipeline, &bundle, &embeds[i], &negative, (None, None), &s)?.decoded;
        for o in &clip.truth.scene.objects {
            let seen = frames
                .iter()
                .filter(|f| locate(f, o.color).is_some())
                .count();
            total += 1;
            shown += usize::from(2 * seen >= frames.len());
        }
        bar.inc(1);
    }
    bar.finish();
    let rows: Vec<MethodSummary> = names
        .iter()
        .zip(&scores)
        .map(|(name, s)| summarise(name, s))
        .collect();
    println!("{}", table(&rows));
    // Head to head: each model against the baselines of its mode, on each clip's PSNR and on the object-frames
    // both find.
    let mut wins = serde_json::Map::new();
    let mut matched = serde_json::Map::new();
    let mut head_to_head = Vec::new();
    let mut pairs = vec![(0, 1), (0, 2), (4, 5)];
    if keep_observed.is_some() {
        pairs.extend([(6, 1), (6, 2), (7, 5)]);
    }
    for (model, baseline) in pairs {
        let pair = format!("{} vs {}", names[model], names[baseline]);
        let won = clips_won(&scores[model], &scores[baseline]);
        let m = matched_trajectory(&scores[model], &scores[baseline]);
        let px = |e: Option<f64>| e.map_or_else(|| "-".to_owned(), |e| format!("{e:.2} px"));
        let line = format!(
            "{} has the higher PSNR on {won} of {} clips against {}; on the {} object-frames both find, \
             trajectory error {} against {}",
            names[model],
            args.clips,
            names[baseline],
            m.object_frames,
            px(m.error_a_px),
            px(m.error_b_px)
        );
        println!("{line}");
        head_to_head.push(line);
        wins.insert(pair.clone(), json!(won));
        matched.insert(pair, json!(m));
    }
    let detection = shown as f64 / total.max(1) as f64;
    println!(
        "text2world: {shown} of {total} captioned objects shown ({:.1}%) in {} clips",
        100.0 * detection,
        args.text_clips
    );
    let report = json!({
        "model": root, "clips": args.clips, "seed": args.seed, "sampling": sampling,
        "observed_frames": OBSERVED_FRAMES, "methods": rows,
        // Each method's PSNR on each clip (capped as in the means), to see where a method wins or loses, and its
        // mean PSNR k frames ahead, to see whether it loses near the observed frames or far from them.
        "clip_psnr": by_method(&names, &scores, |s| s.iter().map(ClipScore::capped_psnr).collect()),
        "psnr_by_horizon": by_method(&names, &scores, psnr_by_horizon),
        "clips_won": wins,
        // Trajectory errors of model and baseline on the object-frames both find (`error_a_px` the model's).
        "trajectory_matched": matched,
        "text2world": {"clips": args.text_clips, "objects": total, "shown": shown, "rate": detection},
    });
    crate::write_text_atomically(&args.out, &serde_json::to_string_pretty(&report)?)?;
    if let Some(path) = &args.report {
        let html = Report {
            title: "orrery physics bench".into(),
            sections: vec![
                Section {
                    title: "Predictions of held-out physics clips".into(),
                    blocks: vec![
                        Block::Paragraph(format!(
                            "Model {}; {} held-out clips (base seed {}), {} observed frames; {}. Video2World and \
                             Image2World rows score the predicted frames against the real ones and the \
                             simulator's ground truth.",
                            root.display(),
                            args.clips,
                            args.seed,
                            OBSERVED_FRAMES,
                            sampling_text
                        )),
                        Block::Table {
                            headers: TABLE_HEADERS.iter().map(|h| h.to_string()).collect(),
                            rows: rows.iter().map(table_row).collect(),
                        },
                        Block::Paragraph(head_to_head.join(". ") + "."),
                        Block::Paragraph(format!(
                            "Text2World: {shown} of {total} captioned objects shown ({:.1}%) in {} clips.",
                            100.0 * detection,
                            args.text_clips
                        )),
                        Block::Plot(LinePlot {
                            title: "Video2World: mean PSNR by frames ahead".into(),
                            x_label: "frames after the observed ones".into(),
                            y_label: "PSNR (dB)".into(),
                            series: [0, 1, 2, 3, 6]
                                .into_iter()
                                .filter(|&k| k < names.len())
                                .map(|k| (names[k], &scores[k]))
                                .map(|(name, s)| {
                                    let curve = psnr_by_horizon(s);
                                    let points = curve.iter().enumerate().map(|(k, p)| (k as f64 + 1.0, *p)).collect();
                                    (name.trim_start_matches("video2world: ").to_owned(), points)
                                })
                                .collect(),
                        }),
                    ],
                },
                Section {
                    title: "Real and predicted".into(),
                    blocks: vec![Block::Gifs(gifs)],
                },
            ],
        };
        crate::write_text_atomically(path, &html.to_html())?;
    }
    Ok(())
}

//! `orrery generate`: Text2World, Image2World and Video2World from a model bundle, one prompt or an official
//! batch spec; long videos are generated chunk by chunk, each continuing from the previous chunk's last frame.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use orrery_flow::noise::NoiseKind;
use orrery_media::{read_image, read_video, write_mp4, Mp4Options, RgbImage};
use orrery_nn::checkpoint::save_tensors;
use orrery_nn::Checkpoint;
use orrery_pipeline::inputs::frames_from_clip;
use orrery_pipeline::{
    BundleDefaults, KeepObserved, Mode, ModeSampling, ModelBundle, Request, SamplingSettings,
    WorldPipeline,
};
use orrery_text::PromptCache;
use serde_json::{json, Value};

/// The official default negative prompt (`DEFAULT_NEGATIVE_PROMPT`, cosmos_predict2/config.py).
pub const DEFAULT_NEGATIVE_PROMPT: &str = "The video captures a series of frames showing ugly scenes, static with no motion, motion blur, over-saturation, shaky footage, low resolution, grainy texture, pixelated images, poorly lit areas, underexposed and overexposed scenes, poor color balance, washed out colors, choppy sequences, jerky movements, low frame rate, artifacting, color banding, unnatural transitions, outdated special effects, fake elements, unconvincing visuals, poorly edited content, jump cuts, visual noise, and flickering. Overall, the video is of poor quality.";

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Model bundle folder: transformer/, vae/, text_encoder/ (diffusers-style), or an official DiT .pt,
    /// tokenizer.pth and a Cosmos-Reason1 folder. Default: the embedded orrery-physics-nano.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The prompt (not with --spec).
    #[arg(long, required_unless_present = "spec")]
    pub prompt: Option<String>,
    /// Image2World: the conditioning image.
    #[arg(long, conflicts_with = "video")]
    pub image: Option<PathBuf>,
    /// Video2World: the conditioning video (its last 5 frames condition).
    #[arg(long)]
    pub video: Option<PathBuf>,
    /// Negative prompt for guidance (default: the official one; the empty prompt for orrery's own models).
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// Precomputed prompt embeddings (safetensors with `prompt_embeds` and, for guidance, `negative_embeds`),
    /// instead of running the text encoder.
    #[arg(long)]
    pub prompt_embeds: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// numpy (reproduces the official seeds) or fast.
    #[arg(long, default_value = "numpy")]
    pub noise: String,
    /// Sampling steps (default: the bundle's).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Guidance g in cond + g (cond - uncond); 0 skips the unconditional branch (default: the bundle's).
    #[arg(long)]
    pub guidance: Option<f64>,
    /// Video2World: latent frames of the input video that condition (default: the bundle's, else 2).
    #[arg(long)]
    pub conditional_frames: Option<usize>,
    /// Image2World and Video2World: THRESHOLD[,MARGIN] keeps the input's last frame where the output changes less
    /// than THRESHOLD from it (largest channel change, [-1, 1] units) and no pixel within MARGIN pixels changes
    /// more; `off` outputs the decoder's pixels throughout (default: the bundle's; off for the released models).
    #[arg(long, value_parser = parse_keep_observed)]
    pub keep_observed: Option<KeepObservedArg>,
    /// Output frames, 1 + 4k; more than the bundle's chunk length generates a long video chunk by chunk.
    #[arg(long)]
    pub frames: Option<usize>,
    /// Output size WxH, multiples of 16 (default: the bundle's).
    #[arg(long)]
    pub size: Option<String>,
    /// Output frame rate (default: the bundle's, 16).
    #[arg(long)]
    pub fps: Option<f64>,
    /// Also write the final denoised latents (normalised, as the DiT sees them) as `latents`.
    #[arg(long)]
    pub save_latents: Option<PathBuf>,
    /// Output MP4 (single prompt).
    #[arg(long, required_unless_present = "spec")]
    pub out: Option<PathBuf>,
    /// An official batch spec (JSON: inference_type, samples with prompt/prompt_path and input_path).
    #[arg(long, requires = "out_dir")]
    pub spec: Option<PathBuf>,
    /// Output folder for --spec.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Prompt-embedding cache folder.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Type of the DiT and text encoder weights: bf16 or f32 (default: bf16 for the released models, f32 for
    /// orrery's own small ones).
    #[arg(long)]
    pub dtype: Option<String>,
}

/// One clip to make.
struct Job {
    name: String,
    prompt: String,
    image: Option<PathBuf>,
    video: Option<PathBuf>,
    out: PathBuf,
}

impl Job {
    fn mode(&self) -> Mode {
        match (&self.image, &self.video) {
            (_, Some(_)) => Mode::Video2World,
            (Some(_), None) => Mode::Image2World,
            (None, None) => Mode::Text2World,
        }
    }
}

/// `--keep-observed`: `off` (`None`) or THRESHOLD[,MARGIN].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeepObservedArg(pub Option<KeepObserved>);

pub fn parse_keep_observed(s: &str) -> Result<KeepObservedArg, String> {
    if s == "off" {
        return Ok(KeepObservedArg(None));
    }
    KeepObserved::parse(s).map(|k| KeepObservedArg(Some(k)))
}

/// The bundle's sampling settings for `mode` with a caller's `overrides` and `--keep-observed`.
pub fn mode_settings(
    defaults: &BundleDefaults,
    mode: Mode,
    overrides: ModeSampling,
    keep_observed: Option<KeepObservedArg>,
    seed: u64,
    noise: NoiseKind,
) -> SamplingSettings {
    let mut s = defaults.mode_settings(mode, overrides, seed, noise);
    if let Some(keep) = keep_observed {
        s.keep_observed = keep.0;
    }
    s
}

fn parse_size(s: &str) -> Result<(usize, usize)> {
    let (w, h) = s
        .split_once('x')
        .with_context(|| format!("--size {s}: expected WxH"))?;
    Ok((
        w.trim().parse().with_context(|| format!("--size {s}"))?,
        h.trim().parse().with_context(|| format!("--size {s}"))?,
    ))
}

/// Reads the official batch spec; relative paths are relative to the spec's folder.
fn read_spec(path: &Path, out_dir: &Path) -> Result<Vec<Job>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: bad JSON", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let kind = v
        .get("inference_type")
        .and_then(Value::as_str)
        .with_context(|| format!("{}: no inference_type", path.display()))?;
    if !matches!(kind, "text2world" | "image2world" | "video2world") {
        bail!(
            "{}: inference_type {kind:?} (expected text2world, image2world or video2world)",
            path.display()
        );
    }
    let samples = v
        .get("samples")
        .and_then(Value::as_object)
        .with_context(|| format!("{}: no samples", path.display()))?;
    let mut jobs = Vec::new();
    for (name, s) in samples {
        let prompt = match (
            s.get("prompt").and_then(Value::as_str),
            s.get("prompt_path").and_then(Value::as_str),
        ) {
            (Some(p), _) => p.to_owned(),
            (None, Some(p)) => std::fs::read_to_string(base.join(p))
                .with_context(|| format!("{}: sample {name}: reading {p}", path.display()))?
                .trim()
                .to_owned(),
            (None, None) => bail!(
                "{}: sample {name} has neither prompt nor prompt_path",
                path.display()
            ),
        };
        let input = s
            .get("input_path")
            .and_then(Value::as_str)
            .map(|p| base.join(p));
        if kind != "text2world" && input.is_none() {
            bail!("{}: sample {name}: {kind} needs input_path", path.display());
        }
        jobs.push(Job {
            name: name.clone(),
            prompt,
            image: (kind == "image2world").then(|| input.clone()).flatten(),
            video: (kind == "video2world").then_some(input).flatten(),
            out: out_dir.join(format!("{name}.mp4")),
        });
    }
    Ok(jobs)
}

pub fn generate(args: &GenerateArgs) -> Result<()> {
    let root = match &args.model {
        Some(p) => p.clone(),
        None => crate::default_model::bundle_dir()?,
    };
    let bundle = ModelBundle::open(&root)?;
    let own_model = bundle.unconditional_prompt().is_some();
    let dtype_name = args
        .dtype
        .clone()
        .unwrap_or_else(|| if own_model { "f32" } else { "bf16" }.to_owned());
    let dtype = crate::forward_cmds::parse_dtype(&dtype_name)?;
    let noise = match args.noise.as_str() {
        "numpy" => NoiseKind::Numpy,
        "fast" => NoiseKind::Fast,
        other => bail!("--noise {other}: expected numpy or fast"),
    };
    let d = bundle.defaults.clone();
    let (width, height) = match &args.size {
        Some(s) => parse_size(s)?,
        None => (d.width, d.height),
    };
    let frames = args.frames.unwrap_or(d.frames);
    orrery_pipeline::inputs::validate_size(frames, width, height)?;
    let jobs = match (&args.spec, &args.out_dir) {
        (Some(spec), Some(dir)) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            read_spec(spec, dir)?
        }
        _ => vec![Job {
            name: "output".into(),
            prompt: args.prompt.clone().unwrap_or_default(),
            image: args.image.clone(),
            video: args.video.clone(),
            out: args.out.clone().context("--out is required")?,
        }],
    };
    // Inputs are read before any model is loaded, so a bad file fails fast.
    let mut inputs = Vec::new();
    for job in &jobs {
        let image = job
            .image
            .as_ref()
            .map(|p| read_image(p).with_context(|| format!("reading {}", p.display())))
            .transpose()?;
        let video = job
            .video
            .as_ref()
            .map(|p| read_video(p).with_context(|| format!("reading {}", p.display())))
            .transpose()?;
        inputs.push((image, video.map(|v| v.frames)));
    }
    // Each mode samples with the bundle's settings for it unless --steps / --guidance say otherwise.
    let overrides = ModeSampling {
        steps: args.steps,
        guidance: args.guidance,
        conditional_frames: args.conditional_frames,
    };
    let settings_for =
        |mode: Mode| mode_settings(&d, mode, overrides, args.keep_observed, args.seed, noise);
    let chunk = d.frames.min(frames);
    let chunks = long_video_chunks(frames, chunk);
    // The mode of each chunk of a job: later chunks continue from the previous chunk's last frame.
    let chunk_modes = |job: &Job| -> Vec<Mode> {
        (0..chunks.len())
            .map(|i| {
                if i == 0 {
                    job.mode()
                } else {
                    Mode::Image2World
                }
            })
            .collect()
    };
    let guided = jobs
        .iter()
        .flat_map(chunk_modes)
        .any(|m| settings_for(m).guidance != 0.0);
    let negative_prompt = args
        .negative_prompt
        .clone()
        .or_else(|| bundle.unconditional_prompt().map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_NEGATIVE_PROMPT.to_owned());
    // Text first: the encoder is dropped before the DiT is loaded.
    let (texts, negative) = match &args.prompt_embeds {
        Some(path) => {
            let ckpt = Checkpoint::open(path)?;
            let text = ckpt.load_as("prompt_embeds", DType::F32, &Device::Cpu)?;
            let negative = if guided {
                Some(
                    ckpt.load_as("negative_embeds", DType::F32, &Device::Cpu)
                        .with_context(|| {
                            format!(
                                "{}: guidance needs `negative_embeds` (or --guidance 0)",
                                path.display()
                            )
                        })?,
                )
            } else {
                None
            };
            (vec![text; jobs.len()], negative)
        }
        None => {
            let cache = args.cache.as_deref().map(PromptCache::new).transpose()?;
            let mut prompts: Vec<&str> = jobs.iter().map(|j| j.prompt.as_str()).collect();
            if guided {
                prompts.push(&negative_prompt);
            }
            tracing::info!("encoding {} prompt(s)", prompts.len());
            let mut e = bundle.encode_prompts(&prompts, cache.as_ref(), dtype)?;
            let negative = guided.then(|| e.pop()).flatten();
            (e, negative)
        }
    };
    let dit = bundle.dit.load(dtype, &Device::Cpu)?;
    let vae = bundle.vae.load(DType::F32, &Device::Cpu)?;
    let pipeline = WorldPipeline::new(dit, vae)?;
    let fps = args.fps.unwrap_or(d.fps);
    for ((job, (image, video)), text) in jobs.iter().zip(&inputs).zip(&texts) {
        let modes = chunk_modes(job);
        let mut calls = 0;
        for &m in &modes {
            calls += settings_for(m).schedule()?.calls();
        }
        let settings = settings_for(job.mode());
        let bar = crate::progress_bar(calls, "steps", job.name.clone())?;
        let mut all: Vec<RgbImage> = Vec::new();
        let mut last_latents = None;
        for (i, &len) in chunks.iter().enumerate() {
            let previous: Option<RgbImage> = all.last().cloned();
            let mut s = settings_for(modes[i]);
            s.seed = settings.seed + i as u64;
            let request = Request {
                frames: len,
                width,
                height,
                text,
                negative: negative.as_ref(),
                // Later chunks continue from the previous chunk's last frame (Image2World on it).
                image: if i == 0 {
                    image.as_ref()
                } else {
                    previous.as_ref()
                },
                video: if i == 0 { video.as_deref() } else { None },
                settings: s,
            };
            let out = pipeline.generate(&request, |_, _| bar.inc(1))?;
            let frames_out = frames_from_clip(&out.video)?;
            let skip = usize::from(i > 0); // the overlapping first frame
            all.extend(frames_out.into_iter().skip(skip));
            last_latents = Some(out.latents);
        }
        bar.finish();
        write_mp4(&job.out, &all, fps, Mp4Options::default())
            .with_context(|| format!("writing {}", job.out.display()))?;
        if let (Some(path), Some(latents)) = (&args.save_latents, last_latents) {
            save_tensors(path, vec![("latents".into(), latents)])?;
        }
        let resolved = json!({
            "prompt": job.prompt, "negative_prompt": if settings.guidance != 0.0 { Some(&negative_prompt) } else { None },
            "mode": job.mode().name(),
            "model": bundle.root, "frames": all.len(), "chunks": chunks, "width": width, "height": height, "fps": fps,
            "seed": settings.seed, "noise": args.noise, "steps": settings.steps, "guidance": settings.guidance,
            "schedule": settings.schedule.to_json(),
            "cond_timestep": settings.cond_timestep, "dtype": dtype_name,
            "conditional_frames": settings.conditional_latent_frames(job.mode()),
            "keep_observed": settings.keep_observed.filter(|_| job.mode() != Mode::Text2World).map(KeepObserved::to_json),
        });
        let settings_path = job.out.with_extension("json");
        crate::write_text_atomically(&settings_path, &serde_json::to_string_pretty(&resolved)?)?;
        println!(
            "wrote {} ({} frames {width}x{height} at {fps} fps) and {}",
            job.out.display(),
            all.len(),
            settings_path.display()
        );
    }
    Ok(())
}

/// Chunk lengths (pixel frames) for a clip of `frames`: the first chunk up to `chunk` frames, each later one
/// overlapping the previous by one frame; every length 1 + 4k.
pub fn long_video_chunks(frames: usize, chunk: usize) -> Vec<usize> {
    let mut out = vec![chunk.min(frames)];
    let mut have = out[0];
    while have < frames {
        let remaining = frames - have; // new frames still needed
        let len = (remaining + 1).min(chunk); // one overlapping frame
        let len = 1 + (len - 1) / 4 * 4;
        out.push(len);
        have += len - 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_clip_with_one_frame_overlap() {
        assert_eq!(long_video_chunks(93, 93), vec![93]);
        assert_eq!(long_video_chunks(181, 93), vec![93, 89]);
        assert_eq!(long_video_chunks(17, 9), vec![9, 9]);
        for (frames, chunk) in [(17, 9), (201, 93), (45, 13)] {
            let c = long_video_chunks(frames, chunk);
            assert_eq!(
                c[0] + c[1..].iter().map(|l| l - 1).sum::<usize>(),
                frames,
                "{frames}/{chunk}: {c:?}"
            );
        }
    }
}

//! `orrery generate`: flags and files around the generation engine (`orrery_pipeline::Engine`), for one prompt
//! or an official batch spec.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use orrery_flow::noise::NoiseKind;
use orrery_nn::checkpoint::save_tensors;
use orrery_nn::Checkpoint;
use orrery_pipeline::engine::check_output;
use orrery_pipeline::{BatchSpec, Engine, GenerationOptions, Mode, Size, WeightType, WorldInput};
use orrery_text::PromptCache;

use crate::sampling_args::SamplingArgs;

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
    /// Video2World: the conditioning video (its last frames that make the conditional latent frames condition).
    #[arg(long)]
    pub video: Option<PathBuf>,
    /// Negative prompt for guidance (default: the official one; the empty prompt for orrery's own models).
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// Cut prompts longer than the text encoder takes (512 tokens with the chat template) with a warning, as the
    /// reference does; without it they are refused.
    #[arg(long)]
    pub truncate: bool,
    /// A LoRA adapter fused into the DiT at load, FILE[:SCALE] (scale 1 if left out): a diffusers
    /// pytorch_lora_weights.safetensors or an official checkpoint with lora_A/lora_B.default keys. Repeat for
    /// several adapters; their deltas add up.
    #[arg(long = "lora", value_name = "FILE[:SCALE]")]
    pub loras: Vec<orrery_dit::LoraSpec>,
    /// Precomputed prompt embeddings (safetensors with `prompt_embeds` and, for guidance, `negative_embeds`),
    /// instead of running the text encoder.
    #[arg(long)]
    pub prompt_embeds: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// numpy (reproduces the official seeds) or fast.
    #[arg(long, default_value = "numpy")]
    pub noise: NoiseKind,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Output frames, 1 + 4k; more than the bundle's chunk length generates a long video chunk by chunk.
    #[arg(long)]
    pub frames: Option<usize>,
    /// Output size WxH, multiples of 16 (default: the bundle's).
    #[arg(long)]
    pub size: Option<Size>,
    /// Output frame rate (default: the bundle's, 16).
    #[arg(long)]
    pub fps: Option<f64>,
    /// Also write the final denoised latents (normalised, as the DiT sees them) as `latents`.
    #[arg(long)]
    pub save_latents: Option<PathBuf>,
    /// Output MP4 (single prompt); the generation record is written beside it as JSON.
    #[arg(long, required_unless_present = "spec")]
    pub out: Option<PathBuf>,
    /// An official batch spec (JSON: inference_type, samples with prompt/prompt_path and input_path; optional
    /// "truncate": true and per-sample negative_prompt).
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
    pub dtype: Option<WeightType>,
}

/// One clip to make.
struct Job {
    name: String,
    prompt: String,
    mode: Mode,
    input: Option<PathBuf>,
    negative_prompt: Option<String>,
    out: PathBuf,
}

/// The jobs of the command line: the spec's samples or the one prompt.
fn jobs(args: &GenerateArgs) -> Result<(Vec<Job>, bool)> {
    if let (Some(spec), Some(dir)) = (&args.spec, &args.out_dir) {
        let spec = BatchSpec::read(spec)?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let jobs = spec
            .samples
            .into_iter()
            .map(|s| Job {
                out: dir.join(format!("{}.mp4", s.name)),
                name: s.name,
                prompt: s.prompt,
                mode: s.mode,
                input: s.input,
                negative_prompt: s.negative_prompt,
            })
            .collect();
        return Ok((jobs, spec.truncate));
    }
    let (mode, input) = match (&args.image, &args.video) {
        (_, Some(v)) => (Mode::Video2World, Some(v.clone())),
        (Some(i), None) => (Mode::Image2World, Some(i.clone())),
        (None, None) => (Mode::Text2World, None),
    };
    let job = Job {
        name: "output".into(),
        prompt: args.prompt.clone().unwrap_or_default(),
        mode,
        input,
        negative_prompt: None,
        out: args.out.clone().context("--out is required")?,
    };
    Ok((vec![job], false))
}

/// Prompt embeddings from `--prompt-embeds`: the same for every job.
fn embeddings_from_file(
    path: &std::path::Path,
    jobs: usize,
    guided: bool,
) -> Result<Vec<(Tensor, Option<Tensor>)>> {
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
    Ok(vec![(text, negative); jobs])
}

pub fn generate(args: &GenerateArgs) -> Result<()> {
    let root = match &args.model {
        Some(p) => p.clone(),
        None => crate::default_model::bundle_dir()?,
    };
    let (jobs, spec_truncates) = jobs(args)?;
    let options = GenerationOptions {
        sampling: args.sampling.overrides(args.seed, args.noise),
        size: args.size,
        frames: args.frames,
        fps: args.fps,
        weights: args.dtype,
        negative_prompt: args.negative_prompt.clone(),
        truncate: args.truncate || spec_truncates,
        loras: args.loras.clone(),
    };
    // Everything that can fail without a network fails here: settings, outputs, inputs.
    let engine = Engine::open(&root, options)?;
    for job in &jobs {
        check_output(&job.out)?;
    }
    if let Some(path) = &args.save_latents {
        check_output(path)?;
    }
    let inputs = jobs
        .iter()
        .map(|job| WorldInput::read(job.mode, job.input.as_deref()))
        .collect::<orrery_pipeline::Result<Vec<_>>>()?;
    // Text first: the encoder is freed before the DiT is loaded.
    let embeddings: Vec<(Tensor, Option<Tensor>)> = match &args.prompt_embeds {
        Some(path) => {
            let guided = jobs.iter().any(|j| engine.guided(j.mode));
            embeddings_from_file(path, jobs.len(), guided)?
        }
        None => {
            let cache = args.cache.as_deref().map(PromptCache::new).transpose()?;
            let clips: Vec<(&str, Mode, Option<&str>)> = jobs
                .iter()
                .map(|j| (j.prompt.as_str(), j.mode, j.negative_prompt.as_deref()))
                .collect();
            engine.clip_prompts(&clips, cache.as_ref())?
        }
    };
    let generator = engine.load()?;
    let e = generator.engine();
    for ((job, input), (text, negative)) in jobs.iter().zip(&inputs).zip(&embeddings) {
        let bar = crate::progress_bar(e.calls(job.mode)?, "steps", job.name.clone())?;
        let seed = args.seed;
        let out = generator.generate(input, text, negative.as_ref(), seed, || bar.inc(1))?;
        bar.finish();
        let mut record = generator.record(&job.prompt, job.mode, seed, &out);
        record.negative_prompt = e
            .negative_for(job.mode, job.negative_prompt.as_deref())
            .map(str::to_owned);
        let record_path = generator.write(&job.out, &out.frames, &record)?;
        if let Some(path) = &args.save_latents {
            save_tensors(path, vec![("latents".into(), out.latents)])?;
        }
        let size = e.size();
        println!(
            "wrote {} ({} frames {size} at {} fps) and {}",
            job.out.display(),
            out.frames.len(),
            e.fps(),
            record_path.display()
        );
    }
    Ok(())
}

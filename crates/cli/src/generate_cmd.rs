//! `orrery generate`: flags and files around the generation engine (`orrery_pipeline::Engine`), for one prompt
//! or an official batch spec.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use orrery_flow::noise::NoiseKind;
use orrery_nn::checkpoint::save_tensors;
use orrery_nn::Checkpoint;
use orrery_pipeline::engine::check_output;
use orrery_pipeline::{
    ActionSequence, BatchSpec, Engine, GenerationOptions, Mode, Size, TextEncoderKind, WeightType,
    WorldInput,
};
use orrery_text::PromptCache;

use crate::sampling_args::SamplingArgs;

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Model bundle folder: transformer/, vae/, text_encoder/ (diffusers-style), or an official DiT .pt,
    /// tokenizer.pth and a Cosmos-Reason1 folder. Default: the embedded orrery-physics-nano.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The prompt (not with --spec). Optional with --actions, where the official default is the empty prompt (for
    /// models whose text encoder takes it: orrery's word encoder, or --prompt-embeds).
    #[arg(long, required_unless_present_any = ["spec", "actions"])]
    pub prompt: Option<String>,
    /// Image2World: the conditioning image.
    #[arg(long, conflicts_with = "video")]
    pub image: Option<PathBuf>,
    /// Video2World: the conditioning video (its last frames that make the conditional latent frames condition).
    #[arg(long)]
    pub video: Option<PathBuf>,
    /// Action rollout with an action-conditioned model (config.json with action_dim), from --image: a JSON file
    /// {"actions": [[a_1, ..., a_A], ...]} with one action per output frame after the start frame, each as wide
    /// as the model's action_dim and scaled as the official data pipeline scales them. The actions are generated
    /// chunk by chunk (the model's chunk length less one action per chunk, 12 for the released model), each chunk
    /// starting from the previous chunk's last frame and seeded --seed + its first action's index (--seed 0 gives
    /// the official seeds); the output has 1 + (number of actions) frames.
    #[arg(
        long,
        value_name = "ACTIONS.json",
        requires = "image",
        conflicts_with_all = ["video", "spec", "frames", "save_latents"]
    )]
    pub actions: Option<PathBuf>,
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
    #[command(flatten)]
    pub memory: crate::memory_args::MemoryArgs,
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
    if let Some(actions) = &args.actions {
        return generate_rollout(args, &root, actions);
    }
    let (jobs, spec_truncates) = jobs(args)?;
    let options = generation_options(args, args.truncate || spec_truncates)?;
    generate_jobs(args, &root, options, &jobs)
}

fn generation_options(args: &GenerateArgs, truncate: bool) -> Result<GenerationOptions> {
    Ok(GenerationOptions {
        sampling: args.sampling.overrides(args.seed, args.noise),
        size: args.size,
        frames: args.frames,
        fps: args.fps,
        weights: args.dtype,
        negative_prompt: args.negative_prompt.clone(),
        truncate,
        loras: args.loras.clone(),
        device: args.sampling.device.device()?,
        memory: args.memory.options(),
    })
}

/// `--actions`: an action rollout from `--image`, streamed into `--out`.
fn generate_rollout(args: &GenerateArgs, root: &Path, actions_path: &Path) -> Result<()> {
    let actions = ActionSequence::read(actions_path)?;
    let engine = Engine::open(root, generation_options(args, args.truncate)?)?;
    if let Some(bundle) = engine.bundle() {
        let action = bundle.dit.config.action.with_context(|| {
            format!(
                "{}: --actions needs an action-conditioned model (its transformer config.json has no action_dim)",
                root.display()
            )
        })?;
        actions.check_width(action.action_dim)?;
    }
    let out = args.out.clone().context("--out is required")?;
    check_output(&out)?;
    let image = args.image.as_deref().context("--actions needs --image")?;
    let start = match WorldInput::read(Mode::Image2World, Some(image))? {
        WorldInput::Image(image) => image,
        _ => anyhow::bail!("{}: not an image", image.display()),
    };
    let prompt = args.prompt.clone().unwrap_or_default();
    let reason1 = engine
        .bundle()
        .and_then(|b| b.text.as_ref())
        .is_some_and(|t| t.kind == TextEncoderKind::Reason1);
    if prompt.trim().is_empty() && args.prompt_embeds.is_none() && reason1 {
        anyhow::bail!(
            "--prompt: the official rollout's default is the empty prompt, which orrery's Cosmos-Reason1 \
             tokenizer refuses; describe the scene with --prompt (or give --prompt-embeds)"
        );
    }
    let mode = Mode::Image2World;
    let (text, negative) = match &args.prompt_embeds {
        Some(path) => embeddings_from_file(path, 1, engine.guided(mode))?.remove(0),
        None => {
            let cache = args.cache.as_deref().map(PromptCache::new).transpose()?;
            engine
                .clip_prompts(&[(prompt.as_str(), mode, None)], cache.as_ref())?
                .remove(0)
        }
    };
    let generator = engine.load()?;
    let e = generator.engine();
    let plan = generator.rollout_plan(&actions)?;
    let bar = crate::progress_bar(
        plan.chunks() * e.settings(mode).calls()?,
        "steps",
        "rollout",
    )?;
    let plan = generator.rollout_to_mp4(
        &out,
        &start,
        &actions,
        &text,
        negative.as_ref(),
        args.seed,
        || bar.inc(1),
    )?;
    bar.finish();
    let record = generator.rollout_record(&prompt, args.seed, &plan, actions_path);
    let record_path = generator.write_record(&out, &record)?;
    println!(
        "wrote {} ({} frames {} at {} fps from {} actions in {} chunks) and {}",
        out.display(),
        plan.frames(),
        e.size(),
        e.fps(),
        plan.actions,
        plan.chunks(),
        record_path.display()
    );
    Ok(())
}

fn generate_jobs(
    args: &GenerateArgs,
    root: &Path,
    options: GenerationOptions,
    jobs: &[Job],
) -> Result<()> {
    // Everything that can fail without a network fails here: settings, outputs, inputs.
    let engine = Engine::open(root, options)?;
    if engine
        .bundle()
        .is_some_and(|b| b.dit.config.action.is_some())
    {
        anyhow::bail!(
            "{}: an action-conditioned model generates from actions: pass --image START.png --actions \
             ACTIONS.json",
            root.display()
        );
    }
    for job in jobs {
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

//! The generation engine: one place that turns a model bundle, a caller's options and inputs into videos.
//!
//! [`Engine`] resolves and checks everything before any network loads (size, frames, sampling settings per mode,
//! weight type, the negative prompt); [`Engine::encode_prompts`] runs the text encoder and frees it;
//! [`Engine::load`] then loads the DiT and the VAE into a [`Generator`], which samples (long videos chunk by
//! chunk), keeps the observed pixels where the bundle or caller asks, and writes each output with its
//! [`GenerationRecord`]. `orrery generate`, the physics bench and the trainers' samples all go through it, so
//! they cannot differ in defaults, negative prompt or load order.
//!
//! Memory on a device ([`GenerationOptions::device`]) is staged: the text encoder is dropped (and its embeddings
//! are on the CPU) before the DiT loads; the DiT and the VAE then stay loaded together, the DiT also while the VAE
//! decodes (a generator serves many clips, and a long video's next chunk starts from the decoded last frame), so
//! the peak is the DiT's and the VAE's weights plus the larger of sampling's and decoding's working memory.

mod chunks;
mod options;
mod record;
mod rollout;
mod spec;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use orrery_dit::CosmosDit;
use orrery_media::{write_mp4, Mp4Options, RgbImage};
use orrery_text::{Overflow, PromptCache};
use orrery_vae::WanVae;

pub use chunks::{chunk_modes, long_video_chunks};
pub use options::{
    GenerationOptions, MemoryOptions, SamplingOverrides, Size, WeightType, DEFAULT_NEGATIVE_PROMPT,
};
pub use record::{GenerationRecord, RolloutRecord};
pub use spec::{BatchSpec, SpecSample};

use crate::actions::RolloutPlan;
use crate::bundle::ModelBundle;
use crate::conditioning::Mode;
use crate::defaults::BundleDefaults;
use crate::error::{PipelineError, Result};
use crate::inputs::{frames_from_clip, validate_size};
use crate::observed::KeepObserved;
use crate::pipeline::{Request, WorldPipeline};
use crate::sample::{SamplerKind, SamplingSettings};
use crate::stage::Stage;

/// What conditions a clip.
#[derive(Debug, Clone)]
pub enum WorldInput {
    Text,
    Image(RgbImage),
    Video(Vec<RgbImage>),
}

impl WorldInput {
    pub fn mode(&self) -> Mode {
        match self {
            WorldInput::Text => Mode::Text2World,
            WorldInput::Image(_) => Mode::Image2World,
            WorldInput::Video(_) => Mode::Video2World,
        }
    }

    /// Reads the input of `mode` from `path` (an image for Image2World, a video for Video2World).
    pub fn read(mode: Mode, path: Option<&Path>) -> Result<Self> {
        let read_error = |p: &Path, e: orrery_media::MediaError| {
            PipelineError::Input(format!("reading {}: {e}", p.display()))
        };
        match (mode, path) {
            (Mode::Text2World, _) => Ok(WorldInput::Text),
            (Mode::Image2World, Some(p)) => orrery_media::read_image(p)
                .map(WorldInput::Image)
                .map_err(|e| read_error(p, e)),
            (Mode::Video2World, Some(p)) => orrery_media::read_video(p)
                .map(|v| WorldInput::Video(v.frames))
                .map_err(|e| read_error(p, e)),
            (mode, None) => Err(PipelineError::Input(format!(
                "{} needs an input file",
                mode.name()
            ))),
        }
    }
}

/// A generated clip.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The output: the decoder's pixels, with the observed pixels kept where the settings say.
    pub frames: Vec<RgbImage>,
    /// The decoder's pixels alone (equal to `frames` where nothing was kept).
    pub decoder_frames: Vec<RgbImage>,
    /// The last chunk's final normalised latents (1, C, T', h, w), as the DiT produced them.
    pub latents: Tensor,
    /// Pixel frames of the input that conditioned (the first of `frames` stand for them): 0, 1, or the last
    /// frames of the video that make the conditional latent frames.
    pub conditioning_pixels: usize,
    /// Pixel frames of each chunk.
    pub chunks: Vec<usize>,
}

/// Prompt embeddings (1, N, width) and the negative prompt's, when guidance needs it.
#[derive(Debug, Clone)]
pub struct Prompts {
    pub prompts: Vec<Tensor>,
    pub negative: Option<Tensor>,
}

/// Where an engine's networks come from.
#[derive(Debug, Clone)]
enum Source {
    /// A model bundle on disk.
    Bundle(Box<ModelBundle>),
    /// Networks a caller holds in memory (a trainer's), with the defaults their bundle will have.
    Models {
        name: PathBuf,
        defaults: Box<BundleDefaults>,
        unconditional_prompt: Option<String>,
    },
}

impl Source {
    fn defaults(&self) -> &BundleDefaults {
        match self {
            Source::Bundle(b) => &b.defaults,
            Source::Models { defaults, .. } => defaults,
        }
    }

    fn unconditional_prompt(&self) -> Option<&str> {
        match self {
            Source::Bundle(b) => b.unconditional_prompt(),
            Source::Models {
                unconditional_prompt,
                ..
            } => unconditional_prompt.as_deref(),
        }
    }

    fn name(&self) -> &Path {
        match self {
            Source::Bundle(b) => &b.root,
            Source::Models { name, .. } => name,
        }
    }
}

/// A bundle with every setting resolved and checked; no network loaded yet.
#[derive(Debug, Clone)]
pub struct Engine {
    source: Source,
    options: GenerationOptions,
    weights: WeightType,
    size: Size,
    frames: usize,
    fps: f64,
}

impl Engine {
    /// Opens the bundle at `model` and resolves `options` against it.
    pub fn open(model: &Path, options: GenerationOptions) -> Result<Self> {
        Self::new(ModelBundle::open(model)?, options)
    }

    /// Resolves `options` against `bundle` and checks every setting of every mode, so that nothing fails after
    /// the networks load.
    pub fn new(bundle: ModelBundle, options: GenerationOptions) -> Result<Self> {
        Self::resolve(Source::Bundle(Box::new(bundle)), options)
    }

    /// An engine for networks already in memory (join them with [`Engine::with_models`]): `defaults` are the
    /// sampling defaults they are exported with, `unconditional_prompt` what they take as unconditional, and
    /// `name` names them in records and errors. Prompts are embedded by the caller.
    pub fn for_models(
        name: &Path,
        defaults: BundleDefaults,
        unconditional_prompt: Option<&str>,
        options: GenerationOptions,
    ) -> Result<Self> {
        let source = Source::Models {
            name: name.to_owned(),
            defaults: Box::new(defaults),
            unconditional_prompt: unconditional_prompt.map(str::to_owned),
        };
        Self::resolve(source, options)
    }

    fn resolve(source: Source, options: GenerationOptions) -> Result<Self> {
        let d = source.defaults();
        let own_model = source.unconditional_prompt().is_some();
        let weights = options.weights.unwrap_or(if own_model {
            WeightType::F32
        } else {
            WeightType::Bf16
        });
        let size = options.size.unwrap_or(Size {
            width: d.width,
            height: d.height,
        });
        let frames = options.frames.unwrap_or(d.frames);
        validate_size(frames, size.width, size.height)?;
        validate_size(d.frames, size.width, size.height).map_err(|e| PipelineError::Bundle {
            path: source.name().to_owned(),
            detail: format!("the model's chunk length: {e}"),
        })?;
        let fps = options.fps.unwrap_or(d.fps);
        if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) {
            return Err(PipelineError::Settings(format!(
                "frame rate {fps}: expected 0 < fps <= 1000"
            )));
        }
        if let Some(missing) = options.loras.iter().find(|l| !l.path.is_file()) {
            return Err(PipelineError::Input(format!(
                "LoRA adapter {}: no such file",
                missing.path.display()
            )));
        }
        let engine = Self {
            source,
            options,
            weights,
            size,
            frames,
            fps,
        };
        for mode in Mode::ALL {
            engine.settings(mode).check()?;
        }
        Ok(engine)
    }

    /// The bundle on disk (`None` for networks in memory).
    pub fn bundle(&self) -> Option<&ModelBundle> {
        match &self.source {
            Source::Bundle(b) => Some(b),
            Source::Models { .. } => None,
        }
    }

    /// The bundle's folder, or the name of networks in memory.
    pub fn name(&self) -> &Path {
        self.source.name()
    }

    pub fn defaults(&self) -> &BundleDefaults {
        self.source.defaults()
    }

    /// The bundle on disk, or an error for networks in memory.
    pub fn on_disk(&self) -> Result<&ModelBundle> {
        self.bundle().ok_or_else(|| {
            PipelineError::Settings(format!(
                "{}: networks in memory have no files to load",
                self.name().display()
            ))
        })
    }

    pub fn options(&self) -> &GenerationOptions {
        &self.options
    }

    pub fn size(&self) -> Size {
        self.size
    }

    /// Output frames of a clip (all chunks).
    pub fn frames(&self) -> usize {
        self.frames
    }

    pub fn fps(&self) -> f64 {
        self.fps
    }

    pub fn weights(&self) -> WeightType {
        self.weights
    }

    /// Where the networks run.
    pub fn device(&self) -> &Device {
        &self.options.device
    }

    /// The sampling settings of `mode`: the caller's overrides, else the bundle's for the mode, else the
    /// bundle's.
    pub fn settings(&self, mode: Mode) -> SamplingSettings {
        let o = &self.options.sampling;
        let mut s = self
            .defaults()
            .mode_settings(mode, o.per_mode(), o.seed, o.noise);
        if let Some(keep) = o.keep_observed {
            s.keep_observed = keep;
        }
        if let Some(sampler) = o.sampler {
            s.sampler = sampler;
        }
        // The distilled sampler has no guidance: a bundle's guidance is for UniPC; the caller's is refused.
        if s.sampler == SamplerKind::Distilled && o.guidance.is_none() {
            s.guidance = 0.0;
        }
        s
    }

    /// Pixel frames of each chunk of a clip.
    pub fn chunks(&self) -> Vec<usize> {
        long_video_chunks(self.frames, self.defaults().frames.min(self.frames))
    }

    /// Whether a clip in `mode` samples with guidance anywhere (and so needs the negative prompt).
    pub fn guided(&self, mode: Mode) -> bool {
        chunk_modes(mode, self.chunks().len())
            .into_iter()
            .any(|m| self.settings(m).guidance != 0.0)
    }

    /// Model calls of a clip in `mode` (for progress bars).
    pub fn calls(&self, mode: Mode) -> Result<usize> {
        let mut calls = 0;
        for m in chunk_modes(mode, self.chunks().len()) {
            calls += self.settings(m).calls()?;
        }
        Ok(calls)
    }

    /// The negative prompt: the caller's, else what the model was trained to take as unconditional (the empty
    /// prompt of caption dropout for orrery's own models), else the official negative prompt.
    pub fn negative_prompt(&self) -> &str {
        self.options
            .negative_prompt
            .as_deref()
            .or(self.source.unconditional_prompt())
            .unwrap_or(DEFAULT_NEGATIVE_PROMPT)
    }

    /// Prompt embeddings (1, 512, width) of `prompts` on the CPU, through `cache` where given; the text encoder is
    /// loaded on the engine's device for what the cache lacks and freed before returning.
    pub fn encode_prompts(
        &self,
        prompts: &[&str],
        cache: Option<&PromptCache>,
    ) -> Result<Vec<Tensor>> {
        let overflow = if self.options.truncate {
            Overflow::Truncate
        } else {
            Overflow::Error
        };
        let stage = Stage::start("text-encoder", &self.options.device);
        let embeddings = self.on_disk()?.encode_prompts_on(
            prompts,
            cache,
            (self.weights.dtype(), self.options.memory.text_weights),
            overflow,
            &self.options.device,
        )?;
        stage.done()?;
        Ok(embeddings)
    }

    /// Embeddings of `prompts` and, when `with_negative`, of the negative prompt, in one pass of the encoder.
    pub fn prompts(
        &self,
        prompts: &[&str],
        with_negative: bool,
        cache: Option<&PromptCache>,
    ) -> Result<Prompts> {
        let mut all = prompts.to_vec();
        if with_negative {
            all.push(self.negative_prompt());
        }
        let mut embeds = self.encode_prompts(&all, cache)?;
        let negative = with_negative.then(|| embeds.pop()).flatten();
        Ok(Prompts {
            prompts: embeds,
            negative,
        })
    }

    /// The negative prompt a clip in `mode` samples with: `own` (a batch spec's per-sample one) or the engine's,
    /// `None` where no chunk of the clip is guided.
    pub fn negative_for<'a>(&'a self, mode: Mode, own: Option<&'a str>) -> Option<&'a str> {
        self.guided(mode)
            .then(|| own.unwrap_or(self.negative_prompt()))
    }

    /// Embeddings of clips given as (prompt, mode, own negative prompt): each clip's prompt and, where it is
    /// guided, its negative prompt, with every distinct negative encoded once, in one pass of the text encoder.
    pub fn clip_prompts(
        &self,
        clips: &[(&str, Mode, Option<&str>)],
        cache: Option<&PromptCache>,
    ) -> Result<Vec<(Tensor, Option<Tensor>)>> {
        let negatives: Vec<Option<&str>> = clips
            .iter()
            .map(|&(_, mode, own)| self.negative_for(mode, own))
            .collect();
        let mut unique: Vec<&str> = negatives.iter().flatten().copied().collect();
        unique.sort_unstable();
        unique.dedup();
        let mut all: Vec<&str> = clips.iter().map(|c| c.0).collect();
        all.extend(&unique);
        tracing::info!("encoding {} prompt(s)", all.len());
        let mut embeds = self.encode_prompts(&all, cache)?;
        let unique_embeds = embeds.split_off(clips.len());
        let negative = |n: &str| unique_embeds[unique.binary_search(&n).unwrap_or(0)].clone();
        Ok(embeds
            .into_iter()
            .zip(negatives)
            .map(|(text, n)| (text, n.map(negative)))
            .collect())
    }

    /// Loads the DiT (in the engine's weight type) and the VAE (float32) on the engine's device, the DiT blocks
    /// the memory options offload in host memory; a mode's own DiT where the bundle has one, with the same
    /// adapters and placement.
    pub fn load(self) -> Result<Generator> {
        let device = &self.options.device;
        let stage = Stage::start("load", device);
        let bundle = self.on_disk()?;
        let loras = self
            .options
            .loras
            .iter()
            .map(orrery_dit::LoraSpec::open)
            .collect::<orrery_dit::Result<Vec<_>>>()?;
        let load_dit = |dir: &orrery_dit::DitModelDir| {
            dir.load_offloaded(
                &loras,
                self.weights.dtype(),
                device,
                self.options.memory.offload_blocks,
            )
        };
        let dit = load_dit(&bundle.dit)?;
        let mut mode_dits: [Option<CosmosDit>; 3] = Default::default();
        for (i, dir) in bundle.mode_dits.iter().enumerate() {
            let Some(dir) = dir else { continue };
            // Modes that name one folder share one copy.
            let loaded = (0..i)
                .find(|&j| bundle.mode_dits[j].as_ref().map(|d| &d.weights) == Some(&dir.weights));
            mode_dits[i] = Some(match loaded.and_then(|j| mode_dits[j].clone()) {
                Some(shared) => shared,
                None => load_dit(dir)?,
            });
        }
        let offloaded = dit.offloaded_blocks();
        if offloaded > 0 {
            tracing::info!(
                "{offloaded} of {} DiT blocks stay in host memory",
                dit.blocks.len()
            );
        }
        let vae = bundle.vae.load(DType::F32, device)?;
        stage.done()?;
        let mut pipeline = WorldPipeline::new(dit, vae)?;
        pipeline.mode_dits = mode_dits;
        self.with_pipeline(pipeline)
    }

    /// A generator over networks already in memory (a trainer's), which must be the bundle's architecture; the
    /// VAE decodes with the memory options' tiling.
    pub fn with_models(self, dit: CosmosDit, vae: WanVae) -> Result<Generator> {
        self.with_pipeline(WorldPipeline::new(dit, vae)?)
    }

    /// A generator over a pipeline already in memory (another generator's, [`Generator::into_pipeline`]); the VAE
    /// decodes with the memory options' tiling.
    pub fn with_pipeline(self, mut pipeline: WorldPipeline) -> Result<Generator> {
        pipeline.decode_tiling = self.options.memory.vae_tiling;
        Ok(Generator {
            pipeline,
            engine: self,
        })
    }
}

/// The engine with its networks loaded.
pub struct Generator {
    engine: Engine,
    pipeline: WorldPipeline,
}

impl Generator {
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn pipeline(&self) -> &WorldPipeline {
        &self.pipeline
    }

    /// The loaded networks, to serve another engine's settings ([`Engine::with_models`]) without loading them
    /// again.
    pub fn into_pipeline(self) -> WorldPipeline {
        self.pipeline
    }

    /// Generates one clip from `input` and the prompt embedding `text` (with `negative` where guided), chunk
    /// by chunk (chunk i seeded `seed + i`); `on_step` is called after each sampler step.
    pub fn generate(
        &self,
        input: &WorldInput,
        text: &Tensor,
        negative: Option<&Tensor>,
        seed: u64,
        mut on_step: impl FnMut(),
    ) -> Result<Generation> {
        let e = &self.engine;
        let chunks = e.chunks();
        let modes = chunk_modes(input.mode(), chunks.len());
        let mut frames: Vec<RgbImage> = Vec::new();
        let mut decoder_frames: Vec<RgbImage> = Vec::new();
        let mut latents = None;
        let mut conditioning_pixels = 0;
        for (i, (&len, &mode)) in chunks.iter().zip(&modes).enumerate() {
            let previous = frames.last().cloned();
            let (image, video) = match (i, input) {
                (0, WorldInput::Image(image)) => (Some(image), None),
                (0, WorldInput::Video(video)) => (None, Some(video.as_slice())),
                (0, WorldInput::Text) => (None, None),
                // Later chunks continue from the previous chunk's last frame (Image2World on it).
                _ => (previous.as_ref(), None),
            };
            let settings = SamplingSettings {
                seed: seed + i as u64,
                ..e.settings(mode)
            };
            let request = Request {
                frames: len,
                width: e.size.width,
                height: e.size.height,
                text,
                negative: negative.filter(|_| settings.guidance != 0.0),
                image,
                video,
                settings,
                action: None,
            };
            let out = self.pipeline.generate(&request, |_, _| on_step())?;
            let skip = usize::from(i > 0); // the overlapping first frame
            if i == 0 {
                conditioning_pixels = out.observed.as_ref().map_or(Ok(0), |o| o.dim(2))?;
            }
            let decoded = frames_from_clip(&out.decoded)?;
            let kept = frames_from_clip(&out.video)?;
            decoder_frames.extend(decoded.into_iter().skip(skip));
            frames.extend(kept.into_iter().skip(skip));
            latents = Some(out.latents);
        }
        Ok(Generation {
            frames,
            decoder_frames,
            latents: latents.expect("at least one chunk"),
            conditioning_pixels,
            chunks,
        })
    }

    /// The provenance record of a clip generated from `prompt` in `mode` with `seed`.
    pub fn record(
        &self,
        prompt: &str,
        mode: Mode,
        seed: u64,
        generation: &Generation,
    ) -> GenerationRecord {
        self.record_of(
            prompt,
            mode,
            seed,
            generation.frames.len(),
            &generation.chunks,
        )
    }

    /// The provenance record of a rollout of `plan` from `prompt` with `seed`; `actions` names the actions file.
    pub fn rollout_record(
        &self,
        prompt: &str,
        seed: u64,
        plan: &RolloutPlan,
        actions: &Path,
    ) -> GenerationRecord {
        let chunks = vec![plan.chunk_frames(); plan.chunks()];
        let mut record = self.record_of(prompt, Mode::Image2World, seed, plan.frames(), &chunks);
        record.rollout = Some(RolloutRecord {
            actions_file: actions.to_owned(),
            actions: plan.actions,
            chunk_actions: plan.chunk_actions,
        });
        record
    }

    fn record_of(
        &self,
        prompt: &str,
        mode: Mode,
        seed: u64,
        frames: usize,
        chunks: &[usize],
    ) -> GenerationRecord {
        let e = &self.engine;
        let s = e.settings(mode);
        GenerationRecord {
            prompt: prompt.to_owned(),
            negative_prompt: (s.guidance != 0.0).then(|| e.negative_prompt().to_owned()),
            mode: mode.name().to_owned(),
            model: e.name().to_owned(),
            frames,
            chunks: chunks.to_vec(),
            width: e.size.width,
            height: e.size.height,
            fps: e.fps,
            seed,
            noise: s.noise.name().to_owned(),
            sampler: s.sampler.name().to_owned(),
            transformer: self.pipeline.mode_dits[mode as usize]
                .as_ref()
                .and(e.defaults().mode_transformers[mode as usize].clone()),
            steps: s.steps,
            guidance: s.guidance,
            schedule: s.schedule.to_json(),
            cond_timestep: s.cond_timestep,
            dtype: e.weights.name().to_owned(),
            conditional_frames: s.conditional_latent_frames(mode),
            keep_observed: s
                .keep_observed
                .filter(|_| mode != Mode::Text2World)
                .map(KeepObserved::to_json),
            truncate: e.options.truncate,
            loras: e
                .options
                .loras
                .iter()
                .map(|l| (l.path.clone(), l.scale))
                .collect(),
            text_encoder_weights: self.reason1_weights().map(|w| w.name().to_owned()),
            vae_tile: e.options.memory.vae_tiling.map(|t| t.tile),
            rollout: None,
        }
    }

    /// The 8-bit storage of a Reason1 text encoder, where the options ask for it (orrery's word encoder has no
    /// such option).
    fn reason1_weights(&self) -> Option<orrery_text::TextWeights> {
        let e = &self.engine;
        let reason1 = e.bundle().is_some_and(|b| b.reason1_paths().is_ok());
        let weights = e.options.memory.text_weights;
        (reason1 && weights != orrery_text::TextWeights::Full).then_some(weights)
    }

    /// Writes `frames` as the MP4 `out` and `record` as JSON beside it (`out` with the extension `.json`),
    /// each atomically; returns the record's path.
    pub fn write(
        &self,
        out: &Path,
        frames: &[RgbImage],
        record: &GenerationRecord,
    ) -> Result<PathBuf> {
        write_mp4(out, frames, self.engine.fps, Mp4Options::default()).map_err(|e| {
            PipelineError::Output {
                path: out.to_owned(),
                detail: e.to_string(),
            }
        })?;
        self.write_record(out, record)
    }

    /// Writes `record` as JSON beside the output `out` (`out` with the extension `.json`), atomically; returns
    /// its path.
    pub fn write_record(&self, out: &Path, record: &GenerationRecord) -> Result<PathBuf> {
        let path = out.with_extension("json");
        let text = serde_json::to_string_pretty(record).expect("plain values");
        orrery_io::write_atomically(&path, text.as_bytes()).map_err(|e| PipelineError::Output {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        Ok(path)
    }
}

/// Checks before long work that `out` (and the record beside it) can be written.
pub fn check_output(out: &Path) -> Result<()> {
    for path in [out.to_owned(), out.with_extension("json")] {
        orrery_io::check_writable(&path).map_err(|e| PipelineError::Output {
            path: path.clone(),
            detail: format!("cannot be written: {e}"),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::ModeSampling;

    fn small_defaults() -> BundleDefaults {
        BundleDefaults {
            sampler: SamplerKind::UniPc,
            schedule: crate::sample::ScheduleKind::Shift(3.0),
            steps: 20,
            guidance: 2.0,
            frames: 33,
            width: 64,
            height: 64,
            per_mode: [
                ModeSampling::default(),
                ModeSampling {
                    steps: Some(1),
                    guidance: Some(0.0),
                    ..ModeSampling::default()
                },
                ModeSampling::default(),
            ],
            ..BundleDefaults::default()
        }
    }

    fn engine(unconditional: Option<&str>, options: GenerationOptions) -> Result<Engine> {
        Engine::for_models(Path::new("mem"), small_defaults(), unconditional, options)
    }

    #[test]
    fn one_negative_prompt_policy() {
        let own = engine(Some(""), GenerationOptions::default()).unwrap();
        assert_eq!(own.negative_prompt(), "");
        let released = engine(None, GenerationOptions::default()).unwrap();
        assert_eq!(released.negative_prompt(), DEFAULT_NEGATIVE_PROMPT);
        let caller = GenerationOptions {
            negative_prompt: Some("blurry".into()),
            ..GenerationOptions::default()
        };
        assert_eq!(
            engine(Some(""), caller).unwrap().negative_prompt(),
            "blurry"
        );
        // Weights: f32 for orrery's own models, bf16 for the released ones, unless told.
        assert_eq!(own.weights(), WeightType::F32);
        assert_eq!(released.weights(), WeightType::Bf16);
    }

    #[test]
    fn settings_chunks_and_guidance_follow_the_caller_then_the_bundle() {
        let e = engine(Some(""), GenerationOptions::default()).unwrap();
        assert_eq!(e.settings(Mode::Image2World).steps, 1);
        assert!(!e.guided(Mode::Image2World), "one chunk at guidance 0");
        assert!(e.guided(Mode::Text2World));
        assert_eq!(e.chunks(), [33]);
        let long = GenerationOptions {
            frames: Some(65),
            ..GenerationOptions::default()
        };
        let e = engine(Some(""), long).unwrap();
        assert_eq!(e.chunks(), [33, 33]);
        // Later chunks continue as Image2World (1 step, 1 call); the first Text2World chunk takes 20 steps.
        assert_eq!(e.calls(Mode::Image2World).unwrap(), 2);
        assert_eq!(e.calls(Mode::Text2World).unwrap(), 21);
        let caller = GenerationOptions {
            sampling: SamplingOverrides {
                steps: Some(4),
                guidance: Some(3.0),
                keep_observed: Some(None),
                ..SamplingOverrides::default()
            },
            ..GenerationOptions::default()
        };
        let e = engine(Some(""), caller).unwrap();
        let s = e.settings(Mode::Image2World);
        assert_eq!((s.steps, s.guidance, s.keep_observed), (4, 3.0, None));
    }

    #[test]
    fn bad_settings_fail_before_any_network() {
        for options in [
            GenerationOptions {
                frames: Some(10),
                ..GenerationOptions::default()
            },
            GenerationOptions {
                size: Some(Size {
                    width: 60,
                    height: 64,
                }),
                ..GenerationOptions::default()
            },
            GenerationOptions {
                fps: Some(0.0),
                ..GenerationOptions::default()
            },
            GenerationOptions {
                sampling: SamplingOverrides {
                    guidance: Some(f64::INFINITY),
                    ..SamplingOverrides::default()
                },
                ..GenerationOptions::default()
            },
            GenerationOptions {
                sampling: SamplingOverrides {
                    conditional_frames: Some(0),
                    ..SamplingOverrides::default()
                },
                ..GenerationOptions::default()
            },
        ] {
            assert!(engine(Some(""), options.clone()).is_err(), "{options:?}");
        }
        let e = engine(Some(""), GenerationOptions::default()).unwrap();
        assert!(
            e.encode_prompts(&["a ball"], None).is_err(),
            "nothing on disk"
        );
        assert!(check_output(Path::new("/nonexistent/folder/out.mp4")).is_err());
    }
}

//! What the workers run: [`Backend`] resolves a request against the model and makes one [`Runner`] per worker;
//! [`EngineBackend`] is the generation engine (`orrery_pipeline::Engine`), which keeps its networks loaded
//! between jobs.

use std::path::{Path, PathBuf};

use candle_core::Device;
use orrery_pipeline::{
    Engine, GenerationOptions, MemoryOptions, ModelBundle, SamplingOverrides, Size, WorldInput,
    WorldPipeline,
};

use crate::settings::{JobMode, JobRequest, JobSettings, ResolvedSampling};

/// One job as a worker hands it to its runner.
pub struct RunJob<'a> {
    pub settings: &'a JobSettings,
    /// The uploaded image or video (Image2World, Video2World).
    pub input: Option<&'a Path>,
    /// Where the MP4 goes (its generation record is written beside it as JSON).
    pub out: &'a Path,
}

/// The model side of the server.
pub trait Backend: Send + Sync + 'static {
    /// Resolves a checked request in `mode` against the model, or says why the model refuses it.
    fn resolve(&self, request: &JobRequest, mode: JobMode) -> Result<JobSettings, String>;

    /// Decodes an uploaded input to check it before the job is queued; the message names it `name`.
    fn check_input(&self, mode: JobMode, path: &Path, name: &str) -> Result<(), String> {
        read_input(mode, Some(path), name).map(|_| ())
    }

    /// A worker's generator (each worker holds its own).
    fn runner(&self) -> Box<dyn Runner>;
}

/// Generates jobs one at a time.
pub trait Runner: Send {
    /// Writes the job's video to `job.out`; `on_step(done, total)` is called after each model call.
    fn run(
        &mut self,
        job: &RunJob<'_>,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<(), String>;
}

/// Refuses a video whose frames would decode to more than `limit` bytes (RGB), from its header alone: a small
/// upload may hold many large frames.
pub fn check_video_size(path: &Path, name: &str, limit: u64) -> Result<(), String> {
    let reader = orrery_media::VideoReader::open(path)
        .map_err(|e| e.to_string().replace(&path.display().to_string(), name))?;
    let info = reader.info();
    let bytes = info.frame_count as u64 * info.width as u64 * info.height as u64 * 3;
    if bytes > limit {
        return Err(format!(
            "{name}: {} frames of {}x{} decode to {} MiB, more than the {} MiB accepted",
            info.frame_count,
            info.width,
            info.height,
            bytes >> 20,
            limit >> 20
        ));
    }
    Ok(())
}

/// Reads a job's input through the engine's readers; messages name the input `name`, never a server path.
pub fn read_input(mode: JobMode, path: Option<&Path>, name: &str) -> Result<WorldInput, String> {
    WorldInput::read(mode.pipeline(), path).map_err(|e| {
        let message = e.to_string();
        match path {
            Some(p) => message.replace(&p.display().to_string(), name),
            None => message,
        }
    })
}

/// The generation engine over one model bundle.
pub struct EngineBackend {
    bundle: ModelBundle,
    placement: Placement,
}

/// Where every job's networks run and how they share the device's memory (the server's, not a request's).
#[derive(Debug, Clone)]
pub struct Placement {
    pub device: Device,
    pub memory: MemoryOptions,
}

impl Default for Placement {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            memory: MemoryOptions::default(),
        }
    }
}

impl EngineBackend {
    /// Opens the bundle at `model` (nothing loads until the first job); the networks run on the CPU.
    pub fn open(model: &Path) -> orrery_pipeline::Result<Self> {
        Self::open_on(model, Placement::default())
    }

    /// [`Self::open`] with the networks placed as `placement` says.
    pub fn open_on(model: &Path, placement: Placement) -> orrery_pipeline::Result<Self> {
        Ok(Self {
            bundle: ModelBundle::open(model)?,
            placement,
        })
    }

    pub fn root(&self) -> &PathBuf {
        &self.bundle.root
    }
}

fn options(s: &JobSettings, placement: &Placement) -> GenerationOptions {
    GenerationOptions {
        sampling: SamplingOverrides {
            steps: s.steps,
            guidance: s.guidance,
            seed: s.seed,
            ..SamplingOverrides::default()
        },
        size: Some(Size {
            width: s.width,
            height: s.height,
        }),
        frames: Some(s.frames),
        fps: Some(s.fps),
        negative_prompt: s.negative_prompt.clone(),
        truncate: s.truncate,
        device: placement.device.clone(),
        memory: placement.memory,
        ..GenerationOptions::default()
    }
}

impl Backend for EngineBackend {
    fn resolve(&self, r: &JobRequest, mode: JobMode) -> Result<JobSettings, String> {
        let size = match &r.size {
            Some(s) => Some(s.parse::<Size>()?),
            None => None,
        };
        let request = GenerationOptions {
            sampling: SamplingOverrides {
                steps: r.steps,
                guidance: r.guidance,
                seed: r.seed.unwrap_or(SamplingOverrides::default().seed),
                ..SamplingOverrides::default()
            },
            size,
            frames: r.frames,
            negative_prompt: r.negative_prompt.clone(),
            truncate: r.truncate.unwrap_or(false),
            ..GenerationOptions::default()
        };
        let engine = Engine::new(self.bundle.clone(), request).map_err(|e| e.to_string())?;
        let m = mode.pipeline();
        let first = engine.settings(m);
        let size = engine.size();
        Ok(JobSettings {
            mode,
            prompt: r.prompt.clone(),
            negative_prompt: r.negative_prompt.clone(),
            seed: first.seed,
            frames: engine.frames(),
            width: size.width,
            height: size.height,
            fps: engine.fps(),
            steps: r.steps,
            guidance: r.guidance,
            truncate: engine.options().truncate,
            sampling: ResolvedSampling {
                steps: first.steps,
                guidance: first.guidance,
                negative_prompt: engine.negative_for(m, None).map(str::to_owned),
                calls: engine.calls(m).map_err(|e| e.to_string())?,
            },
        })
    }

    fn runner(&self) -> Box<dyn Runner> {
        Box::new(EngineRunner {
            bundle: self.bundle.clone(),
            placement: self.placement.clone(),
            models: None,
        })
    }
}

/// A worker's engine: the DiT and VAE stay loaded from one job to the next (the text encoder is loaded per job
/// and freed, as the engine does).
struct EngineRunner {
    bundle: ModelBundle,
    placement: Placement,
    models: Option<WorldPipeline>,
}

impl Runner for EngineRunner {
    fn run(
        &mut self,
        job: &RunJob<'_>,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<(), String> {
        let s = job.settings;
        let mode = s.mode.pipeline();
        let text = |e: orrery_pipeline::PipelineError| e.to_string();
        let engine = Engine::new(self.bundle.clone(), options(s, &self.placement)).map_err(text)?;
        let input = read_input(s.mode, job.input, "the input")?;
        let total = engine.calls(mode).map_err(text)?;
        let clip = engine
            .clip_prompts(&[(s.prompt.as_str(), mode, None)], None)
            .map_err(text)?;
        let (prompt, negative) = &clip[0];
        // The networks are taken out for the job: if it fails or panics they are loaded again next time.
        let generator = match self.models.take() {
            Some(p) => engine.with_pipeline(p),
            None => engine.load(),
        }
        .map_err(text)?;
        let mut done = 0;
        let out = generator
            .generate(&input, prompt, negative.as_ref(), s.seed, || {
                done += 1;
                on_step(done, total);
            })
            .map_err(text)?;
        let record = generator.record(&s.prompt, mode, s.seed, &out);
        let written = generator.write(job.out, &out.frames, &record).map_err(text);
        self.models = Some(generator.into_pipeline());
        written.map(|_| ())
    }
}

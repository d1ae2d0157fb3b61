//! The generation engine in the action bench (`orrery_eval::policy::bench`): a model with action embedders rolls
//! the clip's actions out as `orrery generate --actions` does ([`Generator::rollout`]); a model without them
//! generates Image2World from the same first frame, as `orrery generate --image` does. The latent L2 uses a
//! bundle's VAE.

use candle_core::{DType, Device, Tensor};
use orrery_eval::policy::bench::{ActionPredictor, LatentSpace};
use orrery_media::RgbImage;
use orrery_vae::{Chunking, WanVae};

use crate::actions::ActionSequence;
use crate::conditioning::Mode;
use crate::engine::{Engine, Generator, WorldInput};
use crate::error::{PipelineError, Result};
use crate::inputs::{clip_from_frames, vae_round_trip};

/// An [`Engine`] whose networks load once the captions are encoded.
pub struct EngineActionPredictor {
    engine: Option<Engine>,
    generator: Option<Generator>,
    name: String,
    prompts: Vec<Tensor>,
    negative: Option<Tensor>,
}

impl EngineActionPredictor {
    pub fn new(engine: Engine) -> Result<Self> {
        let bundle = engine.on_disk()?;
        let takes_actions = bundle.dit.config.action.is_some();
        let name = format!(
            "{}: {}",
            if takes_actions {
                "actions"
            } else {
                "no actions"
            },
            engine.name().display()
        );
        Ok(Self {
            engine: Some(engine),
            generator: None,
            name,
            prompts: Vec::new(),
            negative: None,
        })
    }

    fn generator(&self) -> Result<&Generator> {
        self.generator
            .as_ref()
            .ok_or_else(|| PipelineError::Settings("the bench predicts only after prepare".into()))
    }
}

impl ActionPredictor for EngineActionPredictor {
    type Error = PipelineError;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn prepare(&mut self, captions: &[&str]) -> Result<()> {
        let engine = self
            .engine
            .take()
            .ok_or_else(|| PipelineError::Settings("the bench prepares once".into()))?;
        let prompts = engine.prompts(captions, engine.guided(Mode::Image2World), None)?;
        self.prompts = prompts.prompts;
        self.negative = prompts.negative;
        self.generator = Some(engine.load()?);
        Ok(())
    }

    fn predict(
        &mut self,
        caption: usize,
        first: &RgbImage,
        actions: &[Vec<f64>],
        seed: u64,
    ) -> Result<Vec<RgbImage>> {
        let text = self
            .prompts
            .get(caption)
            .ok_or_else(|| PipelineError::Input(format!("caption {caption} was not prepared")))?;
        let generator = self.generator()?;
        if generator.pipeline().dit.config.action.is_none() {
            let g = generator.generate(
                &WorldInput::Image(first.clone()),
                text,
                self.negative.as_ref(),
                seed,
                || {},
            )?;
            return Ok(g.frames);
        }
        let sequence = ActionSequence::from_rows(actions).map_err(PipelineError::Input)?;
        let mut frames = Vec::with_capacity(actions.len() + 1);
        generator.rollout(
            first,
            &sequence,
            text,
            self.negative.as_ref(),
            seed,
            || {},
            |f| {
                frames.push(f.clone());
                Ok(())
            },
        )?;
        Ok(frames)
    }
}

/// A bundle's VAE on the engine's device, for the latent L2 and the round-trip ceiling.
pub struct VaeLatents {
    vae: WanVae,
    device: Device,
}

impl VaeLatents {
    pub fn new(engine: &Engine) -> Result<Self> {
        Ok(Self {
            vae: engine.on_disk()?.vae.load(DType::F32, engine.device())?,
            device: engine.device().clone(),
        })
    }
}

impl LatentSpace for VaeLatents {
    type Error = PipelineError;

    fn latents(&mut self, frames: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        // (1, C, T', h, w), normalised as the DiT sees it.
        let z = self
            .vae
            .normalize(&self.vae.encode(
                &clip_from_frames(frames)?.to_device(&self.device)?,
                Chunking::Whole,
            )?)?
            .to_device(&Device::Cpu)?;
        let z = z.squeeze(0)?.transpose(0, 1)?.contiguous()?;
        let frames = z.dim(0)?;
        (0..frames)
            .map(|t| Ok(z.get(t)?.flatten_all()?.to_vec1::<f32>()?))
            .collect()
    }

    fn round_trip(&mut self, frames: &[RgbImage]) -> Result<Vec<RgbImage>> {
        vae_round_trip(&self.vae, &self.device, frames)
    }
}

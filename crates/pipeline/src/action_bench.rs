//! The generation engine in the action bench (`orrery_eval::policy::bench`): a model with action embedders rolls
//! the clip's actions out as `orrery generate --actions` does ([`Generator::rollout`]); a model without them
//! generates Image2World from the same first frame, as `orrery generate --image` does. The latent L2 uses a
//! bundle's VAE.

use candle_core::{DType, Device};
use orrery_eval::policy::bench::{ActionPredictor, LatentSpace};
use orrery_media::RgbImage;
use orrery_vae::WanVae;

use crate::actions::ActionSequence;
use crate::bench_predictor::EnginePredictor;
use crate::conditioning::Mode;
use crate::engine::{Engine, WorldInput};
use crate::error::{PipelineError, Result};
use crate::inputs::{encode_frames, vae_round_trip};

/// An [`Engine`] in the action bench: its networks load once the captions are encoded ([`EnginePredictor`]).
pub struct EngineActionPredictor {
    inner: EnginePredictor,
    name: String,
}

impl EngineActionPredictor {
    pub fn new(engine: Engine) -> Result<Self> {
        let takes_actions = engine.on_disk()?.dit.config.action.is_some();
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
            inner: EnginePredictor::new(engine),
            name,
        })
    }
}

impl ActionPredictor for EngineActionPredictor {
    type Error = PipelineError;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn prepare(&mut self, captions: &[&str]) -> Result<()> {
        // Every prediction is an Image2World generation (a rollout's chunks included).
        self.inner.prepare_for(captions, &[Mode::Image2World])
    }

    fn predict(
        &mut self,
        caption: usize,
        first: &RgbImage,
        actions: &[Vec<f64>],
        seed: u64,
    ) -> Result<Vec<RgbImage>> {
        let generator = self.inner.generator()?;
        if generator.pipeline().dit.config.action.is_none() {
            let input = WorldInput::Image(first.clone());
            return Ok(self.inner.generate(caption, &input, seed)?.frames);
        }
        let (text, negative) = self.inner.prompt(caption)?;
        let sequence = ActionSequence::from_rows(actions).map_err(PipelineError::Input)?;
        let mut frames = Vec::with_capacity(actions.len() + 1);
        generator.rollout(
            first,
            &sequence,
            text,
            negative,
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
            .normalize(&encode_frames(&self.vae, &self.device, frames)?)?
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

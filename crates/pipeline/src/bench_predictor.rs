//! The generation engine as the physics bench's [`WorldPredictor`]: every prediction goes through the same
//! [`Generator`] `orrery generate` uses (settings per mode, negative prompt, keep-observed).

use candle_core::Tensor;
use orrery_eval::bench::{Prediction, WorldPredictor};
use orrery_media::RgbImage;

use crate::conditioning::Mode;
use crate::engine::{Engine, Generation, Generator, WorldInput};
use crate::error::{PipelineError, Result};
use crate::inputs::vae_round_trip;

/// An [`Engine`] whose networks load once the captions are encoded.
pub struct EnginePredictor {
    engine: Option<Engine>,
    generator: Option<Generator>,
    prompts: Vec<Tensor>,
    negative: Option<Tensor>,
}

impl EnginePredictor {
    pub fn new(engine: Engine) -> Self {
        Self {
            engine: Some(engine),
            generator: None,
            prompts: Vec::new(),
            negative: None,
        }
    }

    /// The engine (before or after loading).
    pub fn engine(&self) -> &Engine {
        match (&self.engine, &self.generator) {
            (Some(e), _) => e,
            (None, Some(g)) => g.engine(),
            (None, None) => unreachable!("an engine or a generator is always held"),
        }
    }

    /// Encodes `captions` (and the negative prompt where any of `modes` is guided), then loads the networks.
    pub(crate) fn prepare_for(&mut self, captions: &[&str], modes: &[Mode]) -> Result<()> {
        let engine = self
            .engine
            .take()
            .ok_or_else(|| PipelineError::Settings("the bench prepares once".into()))?;
        let guided = modes.iter().any(|&m| engine.guided(m));
        let prompts = engine.prompts(captions, guided, None)?;
        self.prompts = prompts.prompts;
        self.negative = prompts.negative;
        self.generator = Some(engine.load()?);
        Ok(())
    }

    pub(crate) fn generator(&self) -> Result<&Generator> {
        self.generator
            .as_ref()
            .ok_or_else(|| PipelineError::Settings("the bench predicts only after prepare".into()))
    }

    /// The embedding of prepared caption `caption`, and the negative prompt's where guided.
    pub(crate) fn prompt(&self, caption: usize) -> Result<(&Tensor, Option<&Tensor>)> {
        let text = self
            .prompts
            .get(caption)
            .ok_or_else(|| PipelineError::Input(format!("caption {caption} was not prepared")))?;
        Ok((text, self.negative.as_ref()))
    }

    pub(crate) fn generate(
        &self,
        caption: usize,
        input: &WorldInput,
        seed: u64,
    ) -> Result<Generation> {
        let (text, negative) = self.prompt(caption)?;
        self.generator()?
            .generate(input, text, negative, seed, || {})
    }
}

fn prediction(g: Generation, keeps: bool) -> Prediction {
    Prediction {
        decoder_frames: keeps.then_some(g.decoder_frames),
        frames: g.frames,
        conditioning: g.conditioning_pixels,
    }
}

impl WorldPredictor for EnginePredictor {
    type Error = PipelineError;

    fn prepare(&mut self, captions: &[&str]) -> Result<()> {
        self.prepare_for(captions, &Mode::ALL)
    }

    fn keeps_observed(&self) -> bool {
        let e = self.engine();
        e.settings(Mode::Video2World).keep_observed.is_some()
    }

    fn video2world(
        &mut self,
        caption: usize,
        observed: &[RgbImage],
        seed: u64,
    ) -> Result<Prediction> {
        let keeps = self.keeps_observed();
        let g = self.generate(caption, &WorldInput::Video(observed.to_vec()), seed)?;
        Ok(prediction(g, keeps))
    }

    fn image2world(&mut self, caption: usize, first: &RgbImage, seed: u64) -> Result<Prediction> {
        let keeps = self
            .engine()
            .settings(Mode::Image2World)
            .keep_observed
            .is_some();
        let g = self.generate(caption, &WorldInput::Image(first.clone()), seed)?;
        Ok(prediction(g, keeps))
    }

    fn text2world(&mut self, caption: usize, seed: u64) -> Result<Vec<RgbImage>> {
        Ok(self
            .generate(caption, &WorldInput::Text, seed)?
            .decoder_frames)
    }

    fn round_trip(&mut self, real: &[RgbImage]) -> Result<Vec<RgbImage>> {
        let pipeline = self.generator()?.pipeline();
        vae_round_trip(&pipeline.vae, pipeline.device(), real)
    }
}

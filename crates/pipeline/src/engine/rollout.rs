//! Action rollouts: the official autoregressive loop of an action-conditioned model (`inference()` of
//! `cosmos_predict2/action_conditioned.py`). The actions are cut into chunks of the model's action count (12 for the
//! released 13-frame model), the last one zero-padded; each chunk is an Image2World generation on the current frame
//! with the chunk's actions (the negative-prompt branch of guidance sees the same actions), seeded with its first
//! action's index plus the caller's seed, and its last frame becomes the next chunk's start.
//!
//! Output: the first chunk's frames whole (its frame 0 is the decoded start frame), then frames 1.. of every later
//! chunk, cut at one frame per action: `1 + actions` frames. (The official script keeps frames `[:12]` of later
//! chunks, which repeats each chunk's conditioning frame and drops its last frame; it is taken as a slip.) Frames are
//! handed to `emit` as each chunk is decoded, and nothing but the current start frame outlives a chunk, so memory
//! does not grow with the number of actions.

use std::path::Path;

use candle_core::Tensor;
use orrery_media::{Mp4Options, Mp4Stream, RgbImage};

use super::Generator;
use crate::actions::{ActionSequence, RolloutPlan};
use crate::conditioning::Mode;
use crate::error::{PipelineError, Result};
use crate::inputs::frames_from_clip;
use crate::pipeline::Request;
use crate::sample::SamplingSettings;

impl Generator {
    /// The chunking of a rollout of `actions` with this generator's DiT (which must be action-conditioned and
    /// take `actions.width()`-wide actions) and the engine's chunk length.
    pub fn rollout_plan(&self, actions: &ActionSequence) -> Result<RolloutPlan> {
        let dit = &self.pipeline.dit.config;
        let action = dit.action.ok_or_else(|| {
            PipelineError::Settings(format!(
                "{}: the DiT is not action-conditioned (its config.json has no action_dim), so it takes no \
                 actions",
                self.engine.name().display()
            ))
        })?;
        actions.check_width(action.action_dim)?;
        let frames = self.engine.defaults().frames;
        let latent_frames = self.pipeline.vae.config.latent_frames(frames);
        let chunk_actions = action.actions_for(latent_frames);
        if chunk_actions != frames - 1 {
            return Err(PipelineError::Settings(format!(
                "a chunk of {frames} frames is {latent_frames} latent frames, which take {chunk_actions} actions \
                 ({} per latent frame); a rollout needs one action per frame ({})",
                action.temporal_compression_ratio,
                frames - 1
            )));
        }
        Ok(RolloutPlan {
            actions: actions.len(),
            chunk_actions,
        })
    }

    /// Rolls `actions` out from `start`: every output frame goes to `emit` in order (see the module docs);
    /// `on_step` is called after each sampler step. `text` and `negative` are the prompt embeddings (the
    /// negative where guided).
    #[allow(clippy::too_many_arguments)]
    pub fn rollout(
        &self,
        start: &RgbImage,
        actions: &ActionSequence,
        text: &Tensor,
        negative: Option<&Tensor>,
        seed: u64,
        mut on_step: impl FnMut(),
        mut emit: impl FnMut(&RgbImage) -> Result<()>,
    ) -> Result<RolloutPlan> {
        let plan = self.rollout_plan(actions)?;
        let e = &self.engine;
        let mut current = start.clone();
        for first in plan.chunk_starts() {
            let chunk = actions.chunk(first, plan.chunk_actions)?;
            let settings = SamplingSettings {
                seed: seed + first as u64,
                ..e.settings(Mode::Image2World)
            };
            let request = Request {
                frames: plan.chunk_frames(),
                width: e.size.width,
                height: e.size.height,
                text,
                negative: negative.filter(|_| settings.guidance != 0.0),
                image: Some(&current),
                video: None,
                settings,
                action: Some(&chunk),
            };
            let out = self.pipeline.generate(&request, |_, _| on_step())?;
            let frames = frames_from_clip(&out.video)?;
            let new = (plan.actions - first).min(plan.chunk_actions);
            let from = usize::from(first > 0); // later chunks: their frame 0 is the previous chunk's last
            for frame in &frames[from..=new] {
                emit(frame)?;
            }
            current = frames
                .last()
                .cloned()
                .ok_or_else(|| PipelineError::Settings("the decoder returned no frames".into()))?;
        }
        Ok(plan)
    }

    /// [`Self::rollout`] straight into the MP4 `out` at the engine's frame rate, frame by frame (written
    /// atomically once the last chunk is done).
    #[allow(clippy::too_many_arguments)]
    pub fn rollout_to_mp4(
        &self,
        out: &Path,
        start: &RgbImage,
        actions: &ActionSequence,
        text: &Tensor,
        negative: Option<&Tensor>,
        seed: u64,
        on_step: impl FnMut(),
    ) -> Result<RolloutPlan> {
        let output_error = |e: orrery_media::MediaError| PipelineError::Output {
            path: out.to_owned(),
            detail: e.to_string(),
        };
        let size = self.engine.size;
        let mut stream = Mp4Stream::new(
            out,
            size.width as u32,
            size.height as u32,
            self.engine.fps,
            Mp4Options::default(),
        )
        .map_err(output_error)?;
        let plan = self.rollout(start, actions, text, negative, seed, on_step, |frame| {
            stream.push(frame).map_err(output_error)
        })?;
        stream.finish().map_err(output_error)?;
        Ok(plan)
    }
}

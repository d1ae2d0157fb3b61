//! An action-conditioned world model as the world of a policy evaluation ([`PolicyWorld`]): from the simulator's
//! start frame, each chunk of the policy's actions is generated the way `orrery generate --actions` rolls actions
//! out ([`Generator::rollout`]: an Image2World generation on the current frame with the chunk's actions, seeded with
//! the episode's seed plus the chunk's first frame index), and the chunk's last frame is the next chunk's start.
//! The gripper's pose is dead-reckoned from the actions (the model shows, it does not tell).
//!
//! [`RoundTripWorld`] is the ceiling of every model with a given VAE: the simulator's own chunks, each encoded and
//! decoded by the VAE from the chunk's true start frame, as a perfect latent prediction would look.

use candle_core::{Device, Tensor};
use orrery_eval::policy::{PolicyWorld, SimWorld};
use orrery_media::RgbImage;
use orrery_physics::manip::{GripperAction, GripperSpec, GripperState, MODEL_ACTION_DIM};
use orrery_physics::{Camera, SceneSpec};

use crate::actions::ActionSequence;
use crate::engine::Generator;
use crate::error::{PipelineError, Result};
use crate::inputs::vae_round_trip;

struct Episode {
    spec: GripperSpec,
    width: f32,
    height: f32,
    fps: f32,
    current: RgbImage,
    gripper: GripperState,
    /// Frames generated so far after the start frame.
    done: usize,
    seed: u64,
}

/// A loaded action-conditioned model and the prompt its rollouts use.
pub struct ModelWorld {
    generator: Generator,
    text: Tensor,
    negative: Option<Tensor>,
    chunk: usize,
    name: String,
    episode: Option<Episode>,
}

impl ModelWorld {
    /// A world of `generator`, whose DiT must take [`MODEL_ACTION_DIM`]-wide actions, prompted with `text` (and
    /// `negative` where guided).
    pub fn new(generator: Generator, text: Tensor, negative: Option<Tensor>) -> Result<Self> {
        let name = generator.engine().name().display().to_string();
        let probe = ActionSequence::from_rows(&[vec![0.0; MODEL_ACTION_DIM]])
            .map_err(PipelineError::Input)?;
        let dit = &generator.pipeline().dit.config;
        if let Some(a) = dit.action {
            if a.action_dim != MODEL_ACTION_DIM {
                return Err(PipelineError::Settings(format!(
                    "{name}: the model takes {}-wide actions; the gripper's are {MODEL_ACTION_DIM} wide \
                     ([dx, dy, dtheta, grip], scaled as the official pipeline scales actions)",
                    a.action_dim
                )));
            }
        }
        let chunk = generator.rollout_plan(&probe)?.chunk_actions;
        Ok(Self {
            generator,
            text,
            negative,
            chunk,
            name,
            episode: None,
        })
    }

    fn episode(&mut self) -> Result<&mut Episode> {
        self.episode
            .as_mut()
            .ok_or_else(|| PipelineError::Settings("a model world steps only after begin".into()))
    }
}

impl PolicyWorld for ModelWorld {
    type Error = PipelineError;

    fn name(&self) -> String {
        format!("model {}", self.name)
    }

    fn chunk(&self) -> usize {
        self.chunk
    }

    fn begin(
        &mut self,
        scene: &SceneSpec,
        _camera: &Camera,
        fps: f32,
        start: &RgbImage,
        seed: u64,
    ) -> Result<()> {
        let size = self.generator.engine().size();
        if (start.width() as usize, start.height() as usize) != (size.width, size.height) {
            return Err(PipelineError::Input(format!(
                "the start frame is {}x{}, the model generates {size}",
                start.width(),
                start.height()
            )));
        }
        let spec = scene
            .manipulation
            .as_ref()
            .ok_or_else(|| PipelineError::Input("the scene has no gripper".into()))?
            .gripper;
        self.episode = Some(Episode {
            spec,
            width: scene.width,
            height: scene.height,
            fps,
            current: start.clone(),
            gripper: spec.initial_state(),
            done: 0,
            seed,
        });
        Ok(())
    }

    fn step(&mut self, actions: &[GripperAction]) -> Result<Vec<RgbImage>> {
        let (text, negative) = (self.text.clone(), self.negative.clone());
        let ep = self.episode()?;
        let mut rows = Vec::with_capacity(actions.len());
        let mut g = ep.gripper;
        for a in actions {
            rows.push(a.model_features(g.angle).map(f64::from).to_vec());
            g = g.predicted(*a, &ep.spec, ep.fps, ep.width, ep.height);
        }
        let sequence = ActionSequence::from_rows(&rows).map_err(PipelineError::Input)?;
        let (current, seed) = (ep.current.clone(), ep.seed + ep.done as u64);
        let mut frames = Vec::with_capacity(actions.len() + 1);
        self.generator.rollout(
            &current,
            &sequence,
            &text,
            negative.as_ref(),
            seed,
            || {},
            |f| {
                frames.push(f.clone());
                Ok(())
            },
        )?;
        // The rollout's frame 0 is the (decoded) start frame.
        let new: Vec<RgbImage> = frames.into_iter().skip(1).collect();
        let ep = self.episode()?;
        ep.gripper = g;
        ep.done += new.len();
        if let Some(last) = new.last() {
            ep.current = last.clone();
        }
        Ok(new)
    }

    fn gripper(&self) -> GripperState {
        self.episode
            .as_ref()
            .map(|e| e.gripper)
            .expect("an episode has begun")
    }

    fn state_in_zone(&self) -> Option<Vec<bool>> {
        None
    }
}

/// The simulator seen through a model's VAE, with the model's chunk of actions per observation: each chunk's
/// frames, preceded by the chunk's true start frame, are encoded and decoded whole (padded with their last frame to
/// a length the VAE takes), and the decoded frames after the start are the chunk's answer. The detector then judges
/// what a world model with a perfect latent prediction would show. It borrows the VAE the model has loaded.
pub struct RoundTripWorld<'a> {
    sim: SimWorld,
    vae: &'a orrery_vae::WanVae,
    device: &'a Device,
    name: String,
    /// The simulator's latest frame, the next chunk's start.
    last: Option<RgbImage>,
}

impl<'a> RoundTripWorld<'a> {
    /// The simulator through `model`'s VAE, on its device, with its chunk of actions per observation.
    pub fn of(model: &'a ModelWorld) -> Self {
        let pipeline = model.generator.pipeline();
        Self {
            sim: SimWorld::chunked(model.chunk),
            vae: &pipeline.vae,
            device: pipeline.device(),
            name: model.name.clone(),
            last: None,
        }
    }
}

impl PolicyWorld for RoundTripWorld<'_> {
    type Error = PipelineError;

    fn name(&self) -> String {
        format!("simulator through the VAE of {}", self.name)
    }

    fn chunk(&self) -> usize {
        self.sim.chunk()
    }

    fn begin(
        &mut self,
        scene: &SceneSpec,
        camera: &Camera,
        fps: f32,
        start: &RgbImage,
        seed: u64,
    ) -> Result<()> {
        let Ok(()) = self.sim.begin(scene, camera, fps, start, seed);
        self.last = Some(start.clone());
        Ok(())
    }

    fn step(&mut self, actions: &[GripperAction]) -> Result<Vec<RgbImage>> {
        let Ok(truth) = self.sim.step(actions);
        let Some(last) = truth.last().cloned() else {
            return Ok(Vec::new());
        };
        let start = self.last.replace(last.clone()).ok_or_else(|| {
            PipelineError::Settings("a round-trip world steps only after begin".into())
        })?;
        let factor = self.vae.config.temporal_factor();
        let mut clip = Vec::with_capacity(truth.len() + factor);
        clip.push(start);
        clip.extend(truth.iter().cloned());
        while (clip.len() - 1) % factor != 0 {
            clip.push(last.clone());
        }
        let decoded = vae_round_trip(self.vae, self.device, &clip)?;
        Ok(decoded.into_iter().skip(1).take(truth.len()).collect())
    }

    fn gripper(&self) -> GripperState {
        self.sim.gripper()
    }

    fn state_in_zone(&self) -> Option<Vec<bool>> {
        self.sim.state_in_zone()
    }
}

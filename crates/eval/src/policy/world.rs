//! The worlds a policy acts in: each starts from a rendered first frame, takes the policy's actions in chunks
//! (one action at a time in the simulator; a world model's chunk at a time) and answers with one frame per action.

use orrery_media::RgbImage;
use orrery_physics::manip::{GripperAction, GripperState};
use orrery_physics::{render_frame, Camera, SceneSpec, Simulation};

/// A world a policy acts in.
pub trait PolicyWorld {
    type Error: std::error::Error + Send + Sync + 'static;

    /// A short name for reports ("simulator", a model's name).
    fn name(&self) -> String;
    /// Actions taken per observation: the policy plans this many from one observed frame.
    fn chunk(&self) -> usize;
    /// Begins an episode on `scene` from its first frame `start` (rendered by the simulator, so every world
    /// starts from the same image); `seed` seeds what the world draws.
    #[allow(clippy::too_many_arguments)]
    fn begin(
        &mut self,
        scene: &SceneSpec,
        camera: &Camera,
        fps: f32,
        start: &RgbImage,
        seed: u64,
    ) -> Result<(), Self::Error>;
    /// Takes `actions` (at most [`Self::chunk`], already clamped), returning one frame per action.
    fn step(&mut self, actions: &[GripperAction]) -> Result<Vec<RgbImage>, Self::Error>;
    /// The gripper as the robot knows itself after the last action: measured in the simulator, dead-reckoned from
    /// the actions in a world model.
    fn gripper(&self) -> GripperState;
    /// Per frame so far, whether the object is in the zone by the world's true state (the simulator's), if it has
    /// one.
    fn state_in_zone(&self) -> Option<Vec<bool>>;
}

/// Never fails.
#[derive(Debug)]
pub enum Never {}

impl std::fmt::Display for Never {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

impl std::error::Error for Never {}

/// The simulator as a policy's world: one action per observation, or a world model's chunk of them (so that a
/// model is compared with the simulator under the same control).
pub struct SimWorld {
    chunk: usize,
    episode: Option<(SceneSpec, Camera, Simulation)>,
}

impl Default for SimWorld {
    fn default() -> Self {
        Self::new()
    }
}

impl SimWorld {
    /// Closed loop at every frame.
    pub fn new() -> Self {
        Self::chunked(1)
    }

    /// `chunk` actions per observation.
    pub fn chunked(chunk: usize) -> Self {
        Self {
            chunk: chunk.max(1),
            episode: None,
        }
    }
}

impl PolicyWorld for SimWorld {
    type Error = Never;

    fn name(&self) -> String {
        if self.chunk == 1 {
            "simulator".into()
        } else {
            format!("simulator ({} actions per observation)", self.chunk)
        }
    }

    fn chunk(&self) -> usize {
        self.chunk
    }

    fn begin(
        &mut self,
        scene: &SceneSpec,
        camera: &Camera,
        fps: f32,
        _start: &RgbImage,
        _seed: u64,
    ) -> Result<(), Never> {
        // The start frame is this simulation's frame 0.
        self.episode = Some((scene.clone(), *camera, Simulation::new(scene, fps)));
        Ok(())
    }

    fn step(&mut self, actions: &[GripperAction]) -> Result<Vec<RgbImage>, Never> {
        let Some((scene, camera, sim)) = self.episode.as_mut() else {
            return Ok(Vec::new());
        };
        Ok(actions
            .iter()
            .map(|a| {
                sim.advance(*a);
                let f = sim.frame();
                let rgb = render_frame(scene, sim.trajectory(), f, camera);
                RgbImage::from_raw(camera.width_px, camera.height_px, rgb)
                    .expect("rendered at the camera's size")
            })
            .collect())
    }

    fn gripper(&self) -> GripperState {
        self.episode
            .as_ref()
            .and_then(|(_, _, sim)| sim.gripper_state())
            .expect("an episode of a gripper scene has begun")
    }

    fn state_in_zone(&self) -> Option<Vec<bool>> {
        let (scene, camera, sim) = self.episode.as_ref()?;
        Some(orrery_physics::manip::episode::state_in_zone(
            scene,
            sim.trajectory(),
            camera,
        ))
    }
}

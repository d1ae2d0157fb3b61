//! One generated clip: its scene, simulation, rendered frames, captions and ground truth, and the JSON that goes
//! beside the video.

use serde::{Deserialize, Serialize};

use crate::camera::Camera;
use crate::caption::{caption, Captions};
use crate::error::{PhysicsError, Result};
use crate::families::{all_families, generate};
use crate::manip::episode::{policy_for, run_episode};
use crate::manip::{ManipulationRecord, Skill};
use crate::render::render_frame;
use crate::rng::Rng;
use crate::scene::SceneSpec;
use crate::sim::{simulate, Trajectory};

/// How clips are made.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipSettings {
    pub frames: usize,
    pub width: u32,
    pub height: u32,
    pub fps: f32,
}

impl ClipSettings {
    pub fn validate(&self) -> Result<()> {
        if self.frames == 0 || self.frames > 10_000 {
            return Err(PhysicsError::Settings(format!(
                "frames {}: expected 1 to 10000",
                self.frames
            )));
        }
        if self.width < 16
            || self.height < 16
            || self.width > 4096
            || self.height > 4096
            || !self.width.is_multiple_of(2)
            || !self.height.is_multiple_of(2)
        {
            return Err(PhysicsError::Settings(format!(
                "size {}x{}: expected even sides from 16 to 4096 pixels",
                self.width, self.height
            )));
        }
        if !(self.fps > 0.0 && self.fps <= 240.0) {
            return Err(PhysicsError::Settings(format!(
                "fps {}: expected (0, 240]",
                self.fps
            )));
        }
        Ok(())
    }

    /// Whether clips of these settings can be cut from episodes of `episode_frames` frames (at least the clip's
    /// frames, at most 10,000).
    pub fn check_episode_frames(&self, episode_frames: usize) -> Result<()> {
        if episode_frames < self.frames || episode_frames > 10_000 {
            return Err(PhysicsError::Settings(format!(
                "episode frames {episode_frames}: expected {} (the clip's frames) to 10000",
                self.frames
            )));
        }
        Ok(())
    }
}

/// Per-frame ground truth of one object, in world and pixel coordinates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectTrack {
    pub position: Vec<[f32; 2]>,
    pub angle: Vec<f32>,
    pub velocity: Vec<[f32; 2]>,
    pub angular_velocity: Vec<f32>,
    pub pixel: Vec<[f32; 2]>,
}

/// Everything known about a clip, as written to `{key}.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    pub key: String,
    pub seed: u64,
    pub fps: f32,
    pub frames: usize,
    pub physics_rate: f32,
    pub camera: Camera,
    pub scene: SceneSpec,
    pub tracks: Vec<ObjectTrack>,
    pub agent: Vec<[f32; 2]>,
    pub events: Vec<crate::sim::Event>,
    pub captions: Captions,
    /// A manipulation clip's actions, gripper states, task and judgement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manipulation: Option<ManipulationRecord>,
}

pub struct Clip {
    /// RGB bytes of each frame (width x height x 3, the camera's size).
    pub frames: Vec<Vec<u8>>,
    pub truth: GroundTruth,
}

impl Clip {
    /// The frames as images.
    pub fn images(&self) -> Vec<orrery_media::RgbImage> {
        let (w, h) = (self.truth.camera.width_px, self.truth.camera.height_px);
        self.frames
            .iter()
            .map(|f| {
                orrery_media::RgbImage::from_raw(w, h, f.clone())
                    .expect("rendered at the camera's size")
            })
            .collect()
    }
}

/// Makes clip `key` of `family` from `seed`.
pub fn make_clip(key: &str, family: &str, seed: u64, settings: &ClipSettings) -> Result<Clip> {
    make_clip_in_episode(key, family, seed, settings, settings.frames)
}

/// Salt of the seed that draws where a clip starts in its episode.
const WINDOW_SALT: u64 = 0x7769_6e64_6f77;

/// Makes clip `key` of `family` from `seed`; a manipulation clip is cut from an episode of `episode_frames`
/// frames at an offset drawn from the seed, so that clips show every phase of the task (approach, contact,
/// carrying, settling), not only its start. Other families, and `episode_frames` equal to the clip's frames,
/// give the clip [`make_clip`] gives.
pub fn make_clip_in_episode(
    key: &str,
    family: &str,
    seed: u64,
    settings: &ClipSettings,
    episode_frames: usize,
) -> Result<Clip> {
    settings.validate()?;
    settings.check_episode_frames(episode_frames)?;
    let aspect = settings.height as f32 / settings.width as f32;
    let scene = generate(family, seed, aspect, settings.frames).ok_or_else(|| {
        PhysicsError::Settings(format!(
            "unknown family {family:?} (known: {})",
            all_families()
        ))
    })?;
    let camera = Camera::new(&scene, settings.width, settings.height);
    // A manipulation scene is driven by a scripted policy of a skill drawn from the seed.
    let skill = Skill::ALL[Rng::new(seed ^ 0x0073_6b69_6c6c).index(Skill::ALL.len())];
    let (traj, manipulation): (Trajectory, _) = match policy_for(&scene, skill, settings.fps, seed)
    {
        Some(mut policy) => {
            let episode = run_episode(&scene, &mut policy, episode_frames, settings.fps);
            let episode = if episode_frames > settings.frames {
                let start =
                    Rng::new(seed ^ WINDOW_SALT).index(episode_frames - settings.frames + 1);
                episode.window(start, settings.frames)
            } else {
                episode
            };
            let record = ManipulationRecord::new(&scene, &episode, skill, &camera);
            (episode.trajectory, record)
        }
        None => (simulate(&scene, settings.frames, settings.fps), None),
    };
    let frames = (0..settings.frames)
        .map(|f| render_frame(&scene, &traj, f, &camera))
        .collect();
    let tracks = (0..scene.objects.len())
        .map(|i| {
            let s: Vec<_> = traj.states.iter().map(|f| f[i]).collect();
            ObjectTrack {
                position: s.iter().map(|x| x.position).collect(),
                angle: s.iter().map(|x| x.angle).collect(),
                velocity: s.iter().map(|x| x.velocity).collect(),
                angular_velocity: s.iter().map(|x| x.angular_velocity).collect(),
                pixel: s.iter().map(|x| camera.to_pixel(x.position)).collect(),
            }
        })
        .collect();
    let captions = caption(&scene, &traj);
    Ok(Clip {
        frames,
        truth: GroundTruth {
            key: key.to_owned(),
            seed,
            fps: settings.fps,
            frames: settings.frames,
            physics_rate: settings.fps * traj.substeps as f32,
            camera,
            tracks,
            agent: traj.agent.clone(),
            events: traj.events.clone(),
            captions,
            scene,
            manipulation,
        },
    })
}

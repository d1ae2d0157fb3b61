//! Training data: orrery physics worlds, made on demand from a dataset spec (every clip depends only on its
//! index and the base seed, so a data position is just a step number and held-out sets are other seeds).

use candle_core::{Device, Result, Tensor};
use orrery_physics::clip::{make_clip_in_episode, Clip, ClipSettings};
use orrery_physics::dataset::DatasetSpec;
use orrery_physics::families::{FAMILIES, MANIPULATION_FAMILIES};
use serde::{Deserialize, Serialize};

use super::videos::VideosConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Number of distinct training clips.
    pub clips: usize,
    pub frames: usize,
    pub width: u32,
    pub height: u32,
    pub fps: f32,
    /// Families to draw from (empty: all).
    #[serde(default)]
    pub families: Vec<String>,
    /// Base seed of the training clips; held-out evaluation uses other seeds.
    pub seed: u64,
    /// Train on a folder of the user's videos instead of physics worlds (`clips` of them, each cut to
    /// `frames` x `width` x `height` at `fps`; `families` is then unused). Left out of saved configs when unset,
    /// so existing configs and latent caches stay valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub videos: Option<VideosConfig>,
    /// Manipulation families: cut each clip from an episode of this many frames, at an offset drawn from the
    /// clip's seed, so that a model sees every phase of the task (a world model rolled out for longer than one
    /// clip starts its later chunks mid-task). Unset: clips start with their episode. Other families ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episode_frames: Option<usize>,
}

/// `n` clips for the sample GIFs, as (frames, caption): held-out physics worlds (the data's seed altered), or the
/// first clips of a user's folder, which has only its own videos (a fit check, not a held-out one).
pub fn sample_clips(
    d: &DataConfig,
    n: usize,
) -> crate::error::Result<Vec<(Vec<orrery_media::RgbImage>, String)>> {
    use crate::error::TrainError;
    let mut shown = Vec::new();
    if d.videos.is_some() {
        let folder = super::videos::scan_videos(d).map_err(TrainError::Data)?;
        for i in 0..folder.len().min(n) {
            let clip = folder
                .clip(i)
                .map_err(|e| TrainError::Data(e.to_string()))?;
            shown.push((clip.frames, clip.caption));
        }
    } else {
        let held_out = held_out(d);
        for i in 0..n {
            let clip = held_out.clip(i).map_err(TrainError::Data)?;
            shown.push((clip.images(), clip.truth.captions.medium.clone()));
        }
    }
    Ok(shown)
}

/// The held-out physics worlds of the sample GIFs: the data's seed altered.
fn held_out(d: &DataConfig) -> DataConfig {
    DataConfig {
        seed: d.seed ^ 0xfeed_5eed,
        ..d.clone()
    }
}

/// A held-out clip that records its actions, for the sample GIFs of an action-conditioned model.
pub struct ActionClip {
    pub frames: Vec<orrery_media::RgbImage>,
    pub caption: String,
    /// The actions as the model takes them: one row per frame after the first.
    pub actions: Vec<Vec<f64>>,
}

/// `n` held-out clips that record actions.
pub fn sample_action_clips(d: &DataConfig, n: usize) -> crate::error::Result<Vec<ActionClip>> {
    use crate::error::TrainError;
    let held_out = held_out(d);
    (0..n)
        .map(|i| {
            let clip = held_out.clip(i).map_err(TrainError::Data)?;
            let record = clip.truth.manipulation.as_ref().ok_or_else(|| {
                TrainError::Data(format!("clip {} records no actions", clip.truth.key))
            })?;
            let actions = record
                .model_actions()
                .iter()
                .map(|row| row.iter().map(|&v| f64::from(v)).collect())
                .collect();
            Ok(ActionClip {
                frames: clip.images(),
                caption: clip.truth.captions.medium.clone(),
                actions,
            })
        })
        .collect()
}

impl DataConfig {
    /// Resolves the user's video folder and shards against `base` (the config file's folder).
    pub(crate) fn resolve_paths(&mut self, base: &std::path::Path) {
        if let Some(v) = self.videos.as_mut() {
            v.dir = super::config::resolve(base, &v.dir);
            for s in &mut v.shards {
                *s = super::config::resolve(base, s);
            }
        }
    }

    pub fn spec(&self) -> DatasetSpec {
        DatasetSpec {
            clips: self.clips,
            clips_per_shard: self.clips.max(1),
            families: if self.families.is_empty() {
                FAMILIES.iter().map(|f| f.to_string()).collect()
            } else {
                self.families.clone()
            },
            seed: self.seed,
            settings: ClipSettings {
                frames: self.frames,
                width: self.width,
                height: self.height,
                fps: self.fps,
            },
            workers: 1,
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let spec = self.spec();
        spec.validate().map_err(|e| e.to_string())?;
        match self.episode_frames {
            Some(n) => spec
                .settings
                .check_episode_frames(n)
                .map_err(|e| format!("episode_frames: {e}")),
            None => Ok(()),
        }
    }

    /// Whether every clip of the set records the actions that drove it: physics worlds of named families, all of
    /// them manipulation families ([`MANIPULATION_FAMILIES`]).
    pub fn records_actions(&self) -> bool {
        self.videos.is_none()
            && !self.families.is_empty()
            && self
                .families
                .iter()
                .all(|f| MANIPULATION_FAMILIES.contains(&f.as_str()))
    }

    /// Clip `i` of the set.
    pub fn clip(&self, i: usize) -> std::result::Result<Clip, String> {
        let spec = self.spec();
        let (family, seed, key) = spec.clip_id(i);
        let episode = self.episode_frames.unwrap_or(self.frames);
        make_clip_in_episode(&key, &family, seed, &spec.settings, episode)
            .map_err(|e| e.to_string())
    }
}

/// A clip's frames as (3, T, H, W) float32 in [-1, 1].
pub fn clip_tensor(clip: &Clip, width: u32, height: u32, device: &Device) -> Result<Tensor> {
    let t = clip.frames.len();
    let (w, h) = (width as usize, height as usize);
    let mut data = Vec::with_capacity(t * h * w * 3);
    for f in &clip.frames {
        data.extend(f.iter().map(|&v| v as f32 / 127.5 - 1.0));
    }
    Tensor::from_vec(data, (t, h, w, 3), device)?
        .permute((3, 0, 1, 2))?
        .contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_are_reproducible_and_in_range() {
        let c = DataConfig {
            clips: 4,
            frames: 5,
            width: 32,
            height: 32,
            fps: 16.0,
            families: vec![],
            seed: 3,
            videos: None,
            episode_frames: None,
        };
        c.validate().unwrap();
        let a = c.clip(2).unwrap();
        let b = c.clip(2).unwrap();
        assert_eq!(a.frames, b.frames);
        let t = clip_tensor(&a, 32, 32, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[3, 5, 32, 32]);
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
    }
}

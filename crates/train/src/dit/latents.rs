//! The DiT's training data: the training clips encoded once by the VAE, kept with their captions in a cache in
//! the run's folder, so a resumed (or a larger) run does not encode them again. Clips that record actions (the
//! manipulation families) keep them in the same cache, scaled as an action-conditioned model takes them.

use std::path::Path;

use candle_core::{Device, Tensor};
use orrery_nn::checkpoint::save_tensors;
use orrery_nn::Checkpoint;
use orrery_vae::{Chunking, WanVae};

use crate::dit::objects::object_cells;
use crate::error::{Result, TrainError};
use crate::trainer::data::{clip_tensor, DataConfig};
use crate::trainer::session::write_file;
use crate::trainer::videos::{folder_fingerprint, frames_tensor, scan_videos};

/// Normalised latents of the training clips and their captions (short, medium, long).
pub struct LatentSet {
    /// (N, C, T, h, w)
    pub latents: Tensor,
    pub captions: Vec<[String; 3]>,
    /// Per clip, the actions between its frames as an action-conditioned model takes them
    /// ([`ManipulationRecord::model_actions`](orrery_physics::manip::ManipulationRecord::model_actions): the same
    /// scaling `orrery policy eval --model` feeds a model), (N, frames - 1, A) float32; present when every clip
    /// records its actions ([`DataConfig::records_actions`]).
    pub actions: Option<Tensor>,
    /// Per clip, 1 on the latent cells that hold an object ([`object_cells`]), (N, 1, T, h, w); present when
    /// asked for (`flow.object_weight`).
    pub objects: Option<Tensor>,
}

impl LatentSet {
    /// Encodes every training clip with `vae` (posterior mean), or reads the cache in `dir` made from the same
    /// VAE weights (`key`) and data. A cache of the first clips of the same data is extended with the missing
    /// ones (clip `i` depends only on `i` and the seed), and one of more clips gives its first ones: a run on
    /// more clips can start from a copy of a smaller run's cache. With `object_fraction`, each clip's object
    /// cells are found as well (foreground colours covering at most that fraction of a frame) and cached.
    pub fn build(
        data: &DataConfig,
        vae: &WanVae,
        vae_weights: &Path,
        dir: &Path,
        object_fraction: Option<f64>,
    ) -> Result<Self> {
        // A user's folder is scanned first (headers only) so that changed videos or captions make a new cache key.
        let folder = match data.videos {
            Some(_) => Some(scan_videos(data).map_err(TrainError::Data)?),
            None => None,
        };
        let key = match &folder {
            Some(folder) => format!(
                "{}+videos-{}",
                file_fingerprint(vae_weights)?,
                folder_fingerprint(folder)
            ),
            None => file_fingerprint(vae_weights)?,
        };
        let with_actions = data.records_actions();
        let wanted = Wanted {
            actions: with_actions,
            object_fraction,
        };
        let cache = dir.join("latents.safetensors");
        let captions_path = dir.join("captions.json");
        let (mut captions, cached_latents, cached_actions, cached_objects) =
            match read_latent_cache(&cache, &captions_path, &key, data, &wanted)? {
                Some(set) => (set.captions, Some(set.latents), set.actions, set.objects),
                None => (Vec::new(), None, None, None),
            };
        let have = captions.len();
        if let Some(latents) = cached_latents.as_ref().filter(|_| have >= data.clips) {
            captions.truncate(data.clips);
            let first = |t: Option<Tensor>| t.map(|t| t.narrow(0, 0, data.clips)).transpose();
            return Ok(Self {
                latents: latents.narrow(0, 0, data.clips)?,
                captions,
                actions: first(cached_actions)?,
                objects: first(cached_objects)?,
            });
        }
        if have > 0 {
            tracing::info!("{have} of {} training clips are in the cache", data.clips);
        }
        let mut latents = Vec::with_capacity(data.clips - have);
        let mut actions = Vec::new();
        let mut objects = Vec::new();
        for i in have..data.clips {
            // (3, T, H, W) and the (short, medium, long) captions; a user's video has one caption for all three.
            let (video, caption) = match &folder {
                Some(folder) => {
                    let clip = folder
                        .clip(i)
                        .map_err(|e| TrainError::Data(e.to_string()))?;
                    let c = clip.caption;
                    (
                        frames_tensor(&clip.frames, &Device::Cpu)?,
                        [c.clone(), c.clone(), c],
                    )
                }
                None => {
                    let clip = data.clip(i).map_err(TrainError::Data)?;
                    if with_actions {
                        actions.push(clip_actions(&clip, data.frames)?);
                    }
                    let c = &clip.truth.captions;
                    (
                        clip_tensor(&clip, data.width, data.height, &Device::Cpu)?,
                        [c.short.clone(), c.medium.clone(), c.long.clone()],
                    )
                }
            };
            let latent = vae
                .normalize(&vae.encode(&video.unsqueeze(0)?, Chunking::Whole)?)?
                .squeeze(0)?;
            if let Some(fraction) = object_fraction {
                let (_, t, h, w) = latent.dims4()?;
                objects.push(object_cells(&video, (t, h, w), fraction as f32)?);
            }
            latents.push(latent);
            captions.push(caption);
            // Thousands of clips take minutes: a line now and then says how far it got.
            if (i + 1) % 250 == 0 || i + 1 == data.clips {
                tracing::info!("encoded {} of {} training clips", i + 1, data.clips);
            }
        }
        let mut latents = Tensor::stack(&latents, 0)?;
        if let Some(cached) = cached_latents {
            latents = Tensor::cat(&[cached, latents], 0)?;
        }
        let actions = with_actions
            .then(|| after(cached_actions, &actions))
            .transpose()?;
        let objects = object_fraction
            .map(|_| after(cached_objects, &objects))
            .transpose()?;
        std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
        let mut tensors = vec![("latents".to_string(), latents.clone())];
        if let Some(a) = &actions {
            tensors.push(("actions".into(), a.clone()));
        }
        if let Some(o) = &objects {
            tensors.push(("objects".into(), o.clone()));
        }
        save_tensors(&cache, tensors)?;
        let saved = serde_json::json!({
            "key": key,
            "data": data,
            "captions": captions,
            "object_fraction": object_fraction,
        });
        write_file(&captions_path, saved.to_string().as_bytes())?;
        Ok(Self {
            latents,
            captions,
            actions,
            objects,
        })
    }
}

/// A manipulation clip's `frames - 1` actions as an action-conditioned model takes them, (frames - 1, A).
fn clip_actions(clip: &orrery_physics::clip::Clip, frames: usize) -> Result<Tensor> {
    let key = &clip.truth.key;
    let record = clip.truth.manipulation.as_ref().ok_or_else(|| {
        TrainError::Data(format!(
            "clip {key} records no actions (only manipulation families do)"
        ))
    })?;
    let rows = record.model_actions();
    if rows.len() + 1 != frames {
        return Err(TrainError::Data(format!(
            "clip {key} records {} actions for its {frames} frames (one per frame after the first is needed)",
            rows.len()
        )));
    }
    let width = rows.first().map_or(0, |r| r.len());
    let values: Vec<f32> = rows.into_iter().flatten().collect();
    Ok(Tensor::from_vec(values, (frames - 1, width), &Device::Cpu)?)
}

/// The per-clip tensors `new` stacked after the cached ones.
fn after(cached: Option<Tensor>, new: &[Tensor]) -> Result<Tensor> {
    let mut parts: Vec<Tensor> = cached.into_iter().collect();
    if !new.is_empty() {
        parts.push(Tensor::stack(new, 0)?);
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// What a run needs in the cache beside the latents and captions.
struct Wanted {
    actions: bool,
    /// The object cells, found with this foreground fraction.
    object_fraction: Option<f64>,
}

/// The cached latents in `cache` with their captions, if they were made from the VAE weights `key` and the same
/// data as `data` but for the number of clips (and hold what `wanted` names); `None` when absent, unreadable or
/// made otherwise.
fn read_latent_cache(
    cache: &Path,
    captions_path: &Path,
    key: &str,
    data: &DataConfig,
    wanted: &Wanted,
) -> Result<Option<LatentSet>> {
    let (Ok(ckpt), Ok(text)) = (
        Checkpoint::open(cache),
        std::fs::read_to_string(captions_path),
    ) else {
        return Ok(None);
    };
    let saved: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let Ok(captions) = serde_json::from_value::<Vec<[String; 3]>>(saved["captions"].clone()) else {
        return Ok(None);
    };
    let same_data = DataConfig {
        clips: captions.len(),
        ..data.clone()
    };
    if saved["key"] != key || saved["data"] != serde_json::to_value(&same_data).unwrap_or_default()
    {
        return Ok(None);
    }
    let latents = ckpt.load("latents", &Device::Cpu)?;
    if latents.dim(0)? != captions.len() {
        return Ok(None);
    }
    // A cache written without what this run needs is encoded again.
    let per_clip = |name: &str| -> Result<Option<Tensor>> {
        if !ckpt.tensors().iter().any(|t| t.name == name) {
            return Ok(None);
        }
        let t = ckpt.load(name, &Device::Cpu)?;
        Ok((t.dim(0)? == captions.len()).then_some(t))
    };
    let actions = match wanted.actions {
        true => match per_clip("actions")? {
            Some(a) => Some(a),
            None => return Ok(None),
        },
        false => None,
    };
    let objects = match wanted.object_fraction {
        Some(fraction) => match per_clip("objects")? {
            Some(o) if saved["object_fraction"].as_f64() == Some(fraction) => Some(o),
            _ => return Ok(None),
        },
        None => None,
    };
    Ok(Some(LatentSet {
        latents,
        captions,
        actions,
        objects,
    }))
}

/// Size and modification time of a file: enough to notice a retrained VAE.
fn file_fingerprint(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(TrainError::io(path))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(format!("{}-{modified}", meta.len()))
}

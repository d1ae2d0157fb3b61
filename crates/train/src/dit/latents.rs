//! The DiT's training data: the training clips encoded once by the VAE, kept with their captions in a cache in
//! the run's folder, so a resumed (or a larger) run does not encode them again.

use std::path::Path;

use candle_core::{Device, Tensor};
use orrery_nn::checkpoint::save_tensors;
use orrery_nn::Checkpoint;
use orrery_vae::{Chunking, WanVae};

use crate::error::{Result, TrainError};
use crate::trainer::data::{clip_tensor, DataConfig};
use crate::trainer::session::write_file;
use crate::trainer::videos::{folder_fingerprint, frames_tensor, scan_videos};

/// Normalised latents of the training clips and their captions (short, medium, long).
pub struct LatentSet {
    /// (N, C, T, h, w)
    pub latents: Tensor,
    pub captions: Vec<[String; 3]>,
}

impl LatentSet {
    /// Encodes every training clip with `vae` (posterior mean), or reads the cache in `dir` made from the same
    /// VAE weights (`key`) and data. A cache of the first clips of the same data is extended with the missing
    /// ones (clip `i` depends only on `i` and the seed), and one of more clips gives its first ones: a run on
    /// more clips can start from a copy of a smaller run's cache.
    pub fn build(data: &DataConfig, vae: &WanVae, vae_weights: &Path, dir: &Path) -> Result<Self> {
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
        let cache = dir.join("latents.safetensors");
        let captions_path = dir.join("captions.json");
        let (mut captions, cached_latents) =
            match read_latent_cache(&cache, &captions_path, &key, data)? {
                Some(set) => (set.captions, Some(set.latents)),
                None => (Vec::new(), None),
            };
        let have = captions.len();
        if let Some(latents) = cached_latents.as_ref().filter(|_| have >= data.clips) {
            captions.truncate(data.clips);
            return Ok(Self {
                latents: latents.narrow(0, 0, data.clips)?,
                captions,
            });
        }
        if have > 0 {
            tracing::info!("{have} of {} training clips are in the cache", data.clips);
        }
        let mut latents = Vec::with_capacity(data.clips - have);
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
                    let c = &clip.truth.captions;
                    (
                        clip_tensor(&clip, data.width, data.height, &Device::Cpu)?,
                        [c.short.clone(), c.medium.clone(), c.long.clone()],
                    )
                }
            };
            let video = video.unsqueeze(0)?;
            latents.push(
                vae.normalize(&vae.encode(&video, Chunking::Whole)?)?
                    .squeeze(0)?,
            );
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
        std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
        save_tensors(&cache, vec![("latents".into(), latents.clone())])?;
        let saved = serde_json::json!({"key": key, "data": data, "captions": captions});
        write_file(&captions_path, saved.to_string().as_bytes())?;
        Ok(Self { latents, captions })
    }
}

/// The cached latents in `cache` with their captions, if they were made from the VAE weights `key` and the same
/// data as `data` but for the number of clips; `None` when absent, unreadable or made otherwise.
fn read_latent_cache(
    cache: &Path,
    captions_path: &Path,
    key: &str,
    data: &DataConfig,
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
    Ok(Some(LatentSet { latents, captions }))
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

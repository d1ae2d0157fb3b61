//! Training on a folder of the user's own videos instead of physics worlds (`data.videos` in a run's config):
//! the folder is scanned by `orrery_data::VideoFolder` at the run's clip size and frame rate, every problem
//! file is reported (skipped with a warning, or refused), and clip `i` is the `i`-th usable video in file-name
//! order, so the latent cache's "clip i depends only on i" holds while the folder is unchanged.

use std::path::PathBuf;

use candle_core::{Device, Result, Tensor};
use orrery_data::{ClipSpec, ClipStart, OnProblem, Policy, VideoFolder};
use orrery_media::RgbImage;
use serde::{Deserialize, Serialize};

use super::data::DataConfig;

/// A folder in the official post-training layout (`videos/*.mp4` + `metas/*.txt`, see `orrery_data`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideosConfig {
    pub dir: PathBuf,
    /// Webdataset tar shards (`KEY.mp4` + `KEY.txt`) unpacked into `dir` before it is scanned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<PathBuf>,
    /// Refuse the folder when a file is unreadable or uncaptioned (default: skip it with a warning).
    #[serde(default)]
    pub refuse_bad_files: bool,
    /// Refuse the folder when a video is shorter than a clip at `fps` (default: skip it with a warning).
    #[serde(default)]
    pub refuse_short_videos: bool,
}

impl VideosConfig {
    fn policy(&self) -> Policy {
        let on = |refuse| {
            if refuse {
                OnProblem::Refuse
            } else {
                OnProblem::Skip
            }
        };
        Policy {
            bad_file: on(self.refuse_bad_files),
            too_short: on(self.refuse_short_videos),
        }
    }
}

/// Scans `data.videos` (which must be set) at `data`'s clip size and rate; each clip's start is drawn from
/// `data.seed` and the video's name. Fails when fewer than `data.clips` videos are usable.
pub fn scan_videos(data: &DataConfig) -> std::result::Result<VideoFolder, String> {
    let Some(videos) = &data.videos else {
        return Err("data.videos is not set".into());
    };
    let spec = ClipSpec {
        frames: data.frames,
        width: data.width,
        height: data.height,
        fps: data.fps as f64,
        start: ClipStart::Seeded { seed: data.seed },
    };
    let folder =
        VideoFolder::scan(&videos.dir, spec, videos.policy()).map_err(|e| e.to_string())?;
    tracing::info!("{}: {}", videos.dir.display(), folder.report());
    if folder.len() < data.clips {
        return Err(format!(
            "data.clips is {} but {} has {} usable videos",
            data.clips,
            videos.dir.display(),
            folder.len()
        ));
    }
    Ok(folder)
}

/// (T) frames of one size -> (3, T, H, W) float32 in [-1, 1] (`uint8 / 127.5 - 1`, as the reference).
pub fn frames_tensor(frames: &[RgbImage], device: &Device) -> Result<Tensor> {
    let (w, h) = frames
        .first()
        .map_or((0, 0), |f| (f.width() as usize, f.height() as usize));
    let mut data = Vec::with_capacity(frames.len() * h * w * 3);
    for f in frames {
        if (f.width() as usize, f.height() as usize) != (w, h) {
            candle_core::bail!(
                "frames of {}x{} and {w}x{h} in one clip",
                f.width(),
                f.height()
            );
        }
        data.extend(f.iter().map(|&v| v as f32 / 127.5 - 1.0));
    }
    Tensor::from_vec(data, (frames.len(), h, w, 3), device)?
        .permute((3, 0, 1, 2))?
        .contiguous()
}

/// A fingerprint of the folder's usable videos and captions (names, sizes, modification times, in order): the
/// latent cache's "clip i depends only on i" holds only while this is unchanged.
pub fn folder_fingerprint(folder: &VideoFolder) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for used in &folder.report().used {
        for path in [&used.video, &used.caption_path] {
            feed(path.to_string_lossy().as_bytes());
            let meta = std::fs::metadata(path).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            feed(&len.to_le_bytes());
            feed(&modified.to_le_bytes());
        }
    }
    format!("{h:016x}")
}

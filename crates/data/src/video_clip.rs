//! Decoding one clip: stream the video, keep only the frames the clip uses, and resize each to cover the
//! target size and centre-crop it as the reference prepares inputs
//! (`orrery_media::resize::resize_to_cover_and_crop`, the same as `orrery_pipeline::inputs::frames_to_clip`).
//! The reference's training loader does the same (`ResizePreprocess`: aspect-preserving resize, centre crop,
//! no random crop). Streaming keeps memory at one source frame plus the clip, whatever the video's length.

use std::path::{Path, PathBuf};

use orrery_media::resize::resize_to_cover_and_crop;
use orrery_media::{MediaError, RgbImage, VideoReader};

/// One training clip: `frames.len()` == the spec's frame count, each `width` x `height` RGB.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoClip {
    pub key: String,
    pub caption: String,
    pub video: PathBuf,
    /// Index in the source video of each clip frame (non-decreasing; repeats when the target rate is higher).
    pub source_indices: Vec<usize>,
    /// (T) frames of (H, W, 3) u8.
    pub frames: Vec<RgbImage>,
}

/// Frames `indices` (non-decreasing) of `video`, resized and centre-cropped to `width` x `height`.
pub(crate) fn decode_frames(
    video: &Path,
    indices: &[usize],
    width: u32,
    height: u32,
) -> Result<Vec<RgbImage>, MediaError> {
    let mut reader = VideoReader::open(video)?;
    let mut out: Vec<RgbImage> = Vec::with_capacity(indices.len());
    let mut next = 0;
    let mut i = 0;
    while next < indices.len() {
        let Some(frame) = reader.next_frame()? else {
            return Err(MediaError::Decode {
                path: video.to_owned(),
                format: "MP4/H.264",
                detail: format!(
                    "ended after {i} frames, the clip needs frame {}",
                    indices[next]
                ),
            });
        };
        if indices[next] == i {
            let resized = resize_to_cover_and_crop(&frame, width, height)?;
            while next < indices.len() && indices[next] == i {
                out.push(resized.clone());
                next += 1;
            }
        }
        i += 1;
    }
    Ok(out)
}

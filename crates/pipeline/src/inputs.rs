//! Input preparation as the reference does it: frames resized to cover the target and centre-cropped
//! (`resize_input`), scaled to [-1, 1]; Image2World uses the image as pixel frame 0, Video2World the last
//! 4 (N - 1) + 1 frames of the video. Only the frames the conditioning latents depend on are kept: the VAE is
//! causal, so the padding frames the reference appends cannot change them.

use candle_core::{Device, Tensor};
use orrery_media::{resize, RgbImage};

use crate::error::{PipelineError, Result};

/// Checks a requested output: `frames` = 1 + 4k and sides multiples of 16.
pub fn validate_size(frames: usize, width: usize, height: usize) -> Result<()> {
    if frames == 0 || !(frames - 1).is_multiple_of(4) {
        return Err(PipelineError::Input(format!(
            "{frames} frames: the video VAE needs 1 + 4k frames (e.g. 93, 33, 9)"
        )));
    }
    if width == 0 || height == 0 || !width.is_multiple_of(16) || !height.is_multiple_of(16) {
        return Err(PipelineError::Input(format!(
            "size {width}x{height}: width and height must be positive multiples of 16"
        )));
    }
    Ok(())
}

/// Frames -> (1, 3, T, H, W) in [-1, 1] after resize-to-cover and centre crop to (width, height).
pub fn frames_to_clip(frames: &[RgbImage], width: usize, height: usize) -> Result<Tensor> {
    if frames.is_empty() {
        return Err(PipelineError::Input("no frames".into()));
    }
    let t = frames.len();
    let mut data = vec![0f32; 3 * t * height * width];
    for (ti, f) in frames.iter().enumerate() {
        let f = resize::resize_to_cover_and_crop(f, width as u32, height as u32)?;
        for (i, px) in f.pixels().enumerate() {
            for c in 0..3 {
                data[(c * t + ti) * height * width + i] = px[c] as f32 / 127.5 - 1.0;
            }
        }
    }
    Ok(Tensor::from_vec(
        data,
        (1, 3, t, height, width),
        &Device::Cpu,
    )?)
}

/// The pixel frames that condition `latent_frames` latent frames: the last 4 (N - 1) + 1 of the video (all of it,
/// repeated from the last frame, when it is shorter).
pub fn conditioning_frames(video: &[RgbImage], latent_frames: usize) -> Result<Vec<RgbImage>> {
    if video.is_empty() {
        return Err(PipelineError::Input(
            "the conditioning video has no frames".into(),
        ));
    }
    let need = 4 * latent_frames.saturating_sub(1) + 1;
    let start = video.len().saturating_sub(need);
    let mut frames: Vec<RgbImage> = video[start..].to_vec();
    while frames.len() < need {
        frames.push(frames.last().expect("non-empty").clone());
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_frames_are_validated() {
        assert!(validate_size(93, 1280, 704).is_ok());
        assert!(validate_size(92, 1280, 704)
            .unwrap_err()
            .to_string()
            .contains("1 + 4k"));
        assert!(validate_size(93, 1280, 700)
            .unwrap_err()
            .to_string()
            .contains("multiples of 16"));
    }

    #[test]
    fn video_conditioning_takes_the_last_five_frames() {
        let video: Vec<RgbImage> = (0..8)
            .map(|i| RgbImage::from_pixel(4, 4, orrery_media::Rgb([i, 0, 0])))
            .collect();
        let f = conditioning_frames(&video, 2).unwrap();
        assert_eq!(
            f.iter().map(|x| x.get_pixel(0, 0)[0]).collect::<Vec<_>>(),
            vec![3, 4, 5, 6, 7]
        );
        let short = conditioning_frames(&video[..2], 2).unwrap();
        assert_eq!(
            short
                .iter()
                .map(|x| x.get_pixel(0, 0)[0])
                .collect::<Vec<_>>(),
            vec![0, 1, 1, 1, 1]
        );
        assert_eq!(conditioning_frames(&video, 1).unwrap().len(), 1);
    }
}

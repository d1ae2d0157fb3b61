//! Input preparation as the reference does it: frames resized to cover the target and centre-cropped
//! (`resize_input`), scaled to [-1, 1]; Image2World uses the image as pixel frame 0, Video2World the last
//! 4 (N - 1) + 1 frames of the video. Only the frames the conditioning latents depend on are kept: the VAE is
//! causal, so the padding frames the reference appends cannot change them.

use candle_core::{Device, Tensor};
use orrery_media::{resize, RgbImage};

use crate::error::{PipelineError, Result};

/// The largest output side in pixels (H.264 level 5.2's 4096 x 2304).
pub const MAX_SIDE: usize = 4096;

/// The most bytes of 8-bit RGB a generated video may hold in memory (frames x width x height x 3).
pub const MAX_VIDEO_BYTES: usize = 16 << 30;

/// Checks a requested output: `frames` = 1 + 4k, sides multiples of 16 up to [`MAX_SIDE`], and the whole video
/// within [`MAX_VIDEO_BYTES`].
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
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(PipelineError::Input(format!(
            "size {width}x{height}: each side must be at most {MAX_SIDE} pixels"
        )));
    }
    let bytes = frames.saturating_mul(width * height * 3);
    if bytes > MAX_VIDEO_BYTES {
        return Err(PipelineError::Input(format!(
            "{frames} frames of {width}x{height}: {} GiB of video, more than the {} GiB limit",
            bytes >> 30,
            MAX_VIDEO_BYTES >> 30
        )));
    }
    Ok(())
}

/// Frames -> (1, 3, T, H, W) in [-1, 1] after resize-to-cover and centre crop to (width, height).
pub fn frames_to_clip(frames: &[RgbImage], width: usize, height: usize) -> Result<Tensor> {
    let resized = frames
        .iter()
        .map(|f| resize::resize_to_cover_and_crop(f, width as u32, height as u32))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    clip_from_frames(&resized)
}

/// Frames of one size -> (1, 3, T, H, W) in [-1, 1] (`uint8 / 127.5 - 1`, as the reference normalises).
pub fn clip_from_frames(frames: &[RgbImage]) -> Result<Tensor> {
    let Some(first) = frames.first() else {
        return Err(PipelineError::Input("no frames".into()));
    };
    let (w, h, t) = (
        first.width() as usize,
        first.height() as usize,
        frames.len(),
    );
    let mut data = vec![0f32; 3 * t * h * w];
    for (ti, f) in frames.iter().enumerate() {
        if (f.width() as usize, f.height() as usize) != (w, h) {
            return Err(PipelineError::Input(format!(
                "frame {ti} is {}x{}, frame 0 is {w}x{h}",
                f.width(),
                f.height()
            )));
        }
        for (i, px) in f.pixels().enumerate() {
            for c in 0..3 {
                data[(c * t + ti) * h * w + i] = px[c] as f32 / 127.5 - 1.0;
            }
        }
    }
    Ok(Tensor::from_vec(data, (1, 3, t, h, w), &Device::Cpu)?)
}

/// (1, 3, T, H, W) in about [-1, 1] -> frames, clamped to [-1, 1] and rounded to 8 bits.
pub fn frames_from_clip(video: &Tensor) -> Result<Vec<RgbImage>> {
    let (_, _, t, h, w) = video.dims5()?;
    let data = video
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok((0..t)
        .map(|ti| {
            RgbImage::from_fn(w as u32, h as u32, |x, y| {
                let at = |c: usize| {
                    let v = data[(c * t + ti) * h * w + y as usize * w + x as usize];
                    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
                };
                orrery_media::Rgb([at(0), at(1), at(2)])
            })
        })
        .collect())
}

/// The pixel frames that condition `latent_frames` latent frames of a VAE compressing time `temporal_factor`
/// times: the last factor (N - 1) + 1 of the video (4 (N - 1) + 1 for Wan2.1; all of it, repeated from the last
/// frame, when it is shorter).
pub fn conditioning_frames(
    video: &[RgbImage],
    latent_frames: usize,
    temporal_factor: usize,
) -> Result<Vec<RgbImage>> {
    if video.is_empty() {
        return Err(PipelineError::Input(
            "the conditioning video has no frames".into(),
        ));
    }
    let need = temporal_factor * latent_frames.saturating_sub(1) + 1;
    let start = video.len().saturating_sub(need);
    let mut frames: Vec<RgbImage> = video[start..].to_vec();
    while frames.len() < need {
        frames.push(frames.last().expect("non-empty").clone());
    }
    Ok(frames)
}

/// The unnormalised latent mean (1, C, T', h, w) of `frames`, encoded whole by `vae` on `device` (left there).
pub fn encode_frames(
    vae: &orrery_vae::WanVae,
    device: &Device,
    frames: &[RgbImage],
) -> Result<Tensor> {
    let clip = clip_from_frames(frames)?.to_device(device)?;
    Ok(vae.encode(&clip, orrery_vae::Chunking::Whole)?)
}

/// The frames of unnormalised `latent` (1, C, T', h, w), decoded whole by `vae`.
pub fn decode_frames(vae: &orrery_vae::WanVae, latent: &Tensor) -> Result<Vec<RgbImage>> {
    frames_from_clip(
        &vae.decode(latent, orrery_vae::Chunking::Whole)?
            .to_device(&Device::Cpu)?,
    )
}

/// `frames` through `vae` (on `device`): encoded (the latent mean) and decoded whole, as a perfect latent
/// prediction would look.
pub fn vae_round_trip(
    vae: &orrery_vae::WanVae,
    device: &Device,
    frames: &[RgbImage],
) -> Result<Vec<RgbImage>> {
    decode_frames(vae, &encode_frames(vae, device, frames)?)
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
        assert!(validate_size(93, 100_000, 100_000)
            .unwrap_err()
            .to_string()
            .contains("at most 4096"));
        assert!(validate_size(usize::MAX - 2, 1280, 704)
            .unwrap_err()
            .to_string()
            .contains("GiB"));
    }

    #[test]
    fn video_conditioning_takes_the_last_five_frames() {
        let video: Vec<RgbImage> = (0..8)
            .map(|i| RgbImage::from_pixel(4, 4, orrery_media::Rgb([i, 0, 0])))
            .collect();
        let f = conditioning_frames(&video, 2, 4).unwrap();
        assert_eq!(
            f.iter().map(|x| x.get_pixel(0, 0)[0]).collect::<Vec<_>>(),
            vec![3, 4, 5, 6, 7]
        );
        let short = conditioning_frames(&video[..2], 2, 4).unwrap();
        assert_eq!(
            short
                .iter()
                .map(|x| x.get_pixel(0, 0)[0])
                .collect::<Vec<_>>(),
            vec![0, 1, 1, 1, 1]
        );
        assert_eq!(conditioning_frames(&video, 1, 4).unwrap().len(), 1);
        // A VAE compressing time twice: two latent frames are the last three pixel frames.
        let t2 = conditioning_frames(&video, 2, 2).unwrap();
        assert_eq!(
            t2.iter().map(|x| x.get_pixel(0, 0)[0]).collect::<Vec<_>>(),
            vec![5, 6, 7]
        );
    }
}

//! Animated GIF output, for contact sheets and previews a person can open anywhere.

use std::io::Write;
use std::path::Path;

use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, RgbImage, RgbaImage};

use crate::atomic::write_atomically;
use crate::error::{MediaError, Result};

/// Encodes frames as a looping GIF at `fps` (GIF delays are whole centiseconds).
pub fn encode_gif(frames: &[RgbImage], fps: f64) -> Result<Vec<u8>> {
    if frames.is_empty() {
        return Err(MediaError::invalid("video", "no frames to write"));
    }
    if !(fps.is_finite() && fps > 0.0 && fps <= 100.0) {
        return Err(MediaError::invalid(
            "frame rate",
            format!("{fps} fps (a GIF needs 0 < fps <= 100)"),
        ));
    }
    let encode_err = |e: image::ImageError| MediaError::Encode {
        path: "GIF".into(),
        format: "GIF",
        detail: e.to_string(),
    };
    let delay_ms = (1000.0 / fps).round() as u32;
    let mut bytes = Vec::new();
    {
        // Speed 10 is the NeuQuant default: good palettes at a fraction of the slowest setting's time.
        let mut encoder = GifEncoder::new_with_speed(&mut bytes, 10);
        encoder.set_repeat(Repeat::Infinite).map_err(encode_err)?;
        for frame in frames {
            let rgba: RgbaImage = image::DynamicImage::ImageRgb8(frame.clone()).to_rgba8();
            let frame = Frame::from_parts(rgba, 0, 0, Delay::from_numer_denom_ms(delay_ms, 1));
            encoder.encode_frame(frame).map_err(encode_err)?;
        }
    }
    Ok(bytes)
}

/// Writes frames as a looping GIF at `fps`, atomically.
pub fn write_gif(path: &Path, frames: &[RgbImage], fps: f64) -> Result<()> {
    let bytes = encode_gif(frames, fps).map_err(|e| match e {
        MediaError::Encode { format, detail, .. } => MediaError::Encode {
            path: path.to_owned(),
            format,
            detail,
        },
        other => other,
    })?;
    write_atomically(path, |out| {
        out.write_all(&bytes).map_err(|e| MediaError::io(path, e))
    })
}

//! Animated GIF output, for contact sheets and previews a person can open anywhere.

use std::path::Path;

use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, RgbImage, RgbaImage};

use crate::atomic::write_atomically;
use crate::error::{MediaError, Result};

/// Writes frames as a looping GIF at `fps` (GIF delays are whole centiseconds), atomically.
pub fn write_gif(path: &Path, frames: &[RgbImage], fps: f64) -> Result<()> {
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
        path: path.to_owned(),
        format: "GIF",
        detail: e.to_string(),
    };
    let delay_ms = (1000.0 / fps).round() as u32;
    write_atomically(path, |out| {
        // Speed 10 is the NeuQuant default: good palettes at a fraction of the slowest setting's time.
        let mut encoder = GifEncoder::new_with_speed(out, 10);
        encoder.set_repeat(Repeat::Infinite).map_err(encode_err)?;
        for frame in frames {
            let rgba: RgbaImage = image::DynamicImage::ImageRgb8(frame.clone()).to_rgba8();
            let frame = Frame::from_parts(rgba, 0, 0, Delay::from_numer_denom_ms(delay_ms, 1));
            encoder.encode_frame(frame).map_err(encode_err)?;
        }
        Ok(())
    })
}

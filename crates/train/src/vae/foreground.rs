//! Pixel weights that make small objects count in the VAE's reconstruction loss. In a physics world a few
//! balls and boxes cover about 1% of the pixels; a plain L1 loss is met by reproducing the background, and small
//! VAEs learn to drop the objects (the scene's whole point). Pixels far from their frame's background colour
//! (the per-channel median of the frame) get extra weight; optionally only those whose colour is rare in the
//! frame, so that the ground (a tenth of the pixels, easy to learn) does not take the objects' share.

use candle_core::{Result, Tensor};

/// Summed absolute per-channel distance from the frame's median colour (pixels in [-1, 1]) above which a pixel
/// counts as foreground: about 19/255 on one channel.
const FOREGROUND_DISTANCE: f32 = 0.15;
/// Colour bins per channel for counting how much of a frame a colour covers.
const COLOR_LEVELS: usize = 8;

/// Per-pixel loss weights (B, 1, T, H, W) for `video` (B, 3, T, H, W) in [-1, 1]: `1 + extra` on foreground
/// pixels whose colour bin covers at most `max_fraction` of the frame (1: every foreground pixel), 1 elsewhere.
pub fn foreground_weights(video: &Tensor, extra: f32, max_fraction: f32) -> Result<Tensor> {
    let (b, c, t, h, w) = video.dims5()?;
    let data = video.flatten_all()?.to_vec1::<f32>()?;
    let plane = h * w;
    let mut weights = vec![1f32; b * t * plane];
    let mut scratch = vec![0f32; plane];
    let mut distance = vec![0f32; plane];
    let mut bins = vec![0usize; plane];
    let mut bin_counts = vec![0usize; COLOR_LEVELS.pow(3)];
    let max_count = (max_fraction.clamp(0.0, 1.0) * plane as f32) as usize;
    for bi in 0..b {
        for ti in 0..t {
            let out = &mut weights[(bi * t + ti) * plane..(bi * t + ti + 1) * plane];
            distance.fill(0.0);
            bins.fill(0);
            for ci in 0..c {
                let start = ((bi * c + ci) * t + ti) * plane;
                let channel = &data[start..start + plane];
                scratch.copy_from_slice(channel);
                let mid = plane / 2;
                let (_, median, _) = scratch.select_nth_unstable_by(mid, f32::total_cmp);
                let median = *median;
                distance
                    .iter_mut()
                    .zip(channel)
                    .for_each(|(d, v)| *d += (v - median).abs());
                bins.iter_mut().zip(channel).for_each(|(b, v)| {
                    let level = ((v + 1.0) * 0.5 * COLOR_LEVELS as f32) as usize;
                    *b = *b * COLOR_LEVELS + level.min(COLOR_LEVELS - 1);
                });
            }
            bin_counts.fill(0);
            bins.iter().for_each(|b| bin_counts[*b] += 1);
            for ((o, d), b) in out.iter_mut().zip(&distance).zip(&bins) {
                if *d > FOREGROUND_DISTANCE && bin_counts[*b] <= max_count {
                    *o += extra;
                }
            }
        }
    }
    Tensor::from_vec(weights, (b, 1, t, h, w), video.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The weights of a one-frame 4x4 video given as (3, 16) channel-major values.
    fn frame_weights(v: Vec<f32>, max_fraction: f32) -> Vec<f32> {
        let video = Tensor::from_vec(v, (1, 3, 1, 4, 4), &Device::Cpu).unwrap();
        foreground_weights(&video, 9.0, max_fraction)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    }

    #[test]
    fn objects_on_a_plain_background_get_the_extra_weight() {
        // One frame, 4x4, grey background with one red pixel.
        let mut v = vec![0f32; 3 * 16];
        v[5] = 1.0; // red channel, pixel 5
        let w = frame_weights(v, 1.0);
        for (i, x) in w.iter().enumerate() {
            assert_eq!(*x, if i == 5 { 10.0 } else { 1.0 }, "pixel {i}");
        }
    }

    #[test]
    fn a_common_foreground_colour_gets_no_extra_weight_under_a_fraction_limit() {
        // 4x4 frame: grey background (10 pixels), a blue "ground" row (4 pixels), two red "object" pixels.
        let mut v = vec![0f32; 3 * 16];
        (12..16).for_each(|p| v[32 + p] = 1.0); // blue channel, bottom row
        v[1] = 1.0;
        v[2] = 1.0; // red channel, pixels 1 and 2
        let rare = frame_weights(v.clone(), 0.2);
        let all = frame_weights(v, 1.0);
        for i in 0..16 {
            let object = i == 1 || i == 2;
            let ground = i >= 12;
            assert_eq!(
                rare[i],
                if object { 10.0 } else { 1.0 },
                "pixel {i}, limit 0.2"
            );
            assert_eq!(
                all[i],
                if object || ground { 10.0 } else { 1.0 },
                "pixel {i}, no limit"
            );
        }
    }
}

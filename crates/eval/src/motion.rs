//! Physics-IQ's motion-mask metrics (Motamed et al. 2025, github.com/google-deepmind/physics-IQ-benchmark):
//! where and when things move in a real continuation and in a generated one, compared as spatial IoU,
//! spatiotemporal IoU, weighted spatial IoU and MSE, and normalised by the "physical variance" between two real
//! takes of the same scene.
//!
//! Masks follow the benchmark's `generate_mask` with OpenCV's integer arithmetic reproduced exactly: grey
//! (BT.601, 14-bit fixed point), 5x5 Gaussian blur (sigma 0 = the binomial 1-4-6-4-1 kernel, reflect-101
//! borders, rounded), a running background `avg = 0.7 avg + 0.3 grey` in float64, rounded to 8 bits; a pixel
//! moves where |grey - background| > 10, cleaned by a 5x5 opening then closing. The first frame has no motion.
//! Unlike the benchmark, masks and frames are compared at their own resolution (it scales its 1080p videos to a
//! quarter and stores masks as lossy MP4 first).

use orrery_media::RgbImage;

/// Threshold on |grey - background| of the benchmark.
pub const MOTION_THRESHOLD: u8 = 10;
const BACKGROUND_RATE: f64 = 0.3;

/// A binary motion mask, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    pub width: usize,
    pub height: usize,
    pub moving: Vec<bool>,
}

impl Mask {
    fn empty(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            moving: vec![false; width * height],
        }
    }

    pub fn count(&self) -> usize {
        self.moving.iter().filter(|&&m| m).count()
    }
}

/// OpenCV's RGB -> grey for 8-bit images: (4899 R + 9617 G + 1868 B + 2^13) >> 14.
fn grey(frame: &RgbImage) -> Vec<u8> {
    frame
        .as_raw()
        .chunks_exact(3)
        .map(|p| {
            ((4899 * p[0] as u32 + 9617 * p[1] as u32 + 1868 * p[2] as u32 + (1 << 13)) >> 14) as u8
        })
        .collect()
}

/// Index `i` reflected into 0..n without repeating the edge (OpenCV's BORDER_REFLECT_101).
fn reflect101(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let mut i = i;
    while i < 0 || i >= n {
        i = if i < 0 { -i } else { 2 * (n - 1) - i };
    }
    i as usize
}

/// OpenCV's bit-exact `GaussianBlur(ksize 5, sigma 0)` of an 8-bit image: the binomial kernel /16 in each
/// direction, the exact sum rounded half up.
fn blur5(img: &[u8], w: usize, h: usize) -> Vec<u8> {
    const K: [u32; 5] = [1, 4, 6, 4, 1];
    let mut rows = vec![0u32; w * h];
    for y in 0..h {
        for x in 0..w {
            rows[y * w + x] = (0..5)
                .map(|k| K[k] * img[y * w + reflect101(x as isize + k as isize - 2, w)] as u32)
                .sum();
        }
    }
    let mut out = vec![0u8; w * h];
    for y in 0..h {
        for x in 0..w {
            let sum: u32 = (0..5)
                .map(|k| K[k] * rows[reflect101(y as isize + k as isize - 2, h) * w + x])
                .sum();
            out[y * w + x] = ((sum + 128) >> 8) as u8;
        }
    }
    out
}

/// Binary erosion (`min`) or dilation (`max`) with a 5x5 square; pixels outside the image are ignored
/// (OpenCV's default morphology border).
fn morph5(mask: &[bool], w: usize, h: usize, dilate: bool) -> Vec<bool> {
    let mut out = vec![false; w * h];
    for y in 0..h {
        for x in 0..w {
            let ys = y.saturating_sub(2)..(y + 3).min(h);
            let xs = x.saturating_sub(2)..(x + 3).min(w);
            let mut window = ys.flat_map(|yy| xs.clone().map(move |xx| mask[yy * w + xx]));
            out[y * w + x] = if dilate {
                window.any(|m| m)
            } else {
                window.all(|m| m)
            };
        }
    }
    out
}

/// The motion mask of every frame of a clip (the first is empty).
pub fn motion_masks(frames: &[RgbImage]) -> Vec<Mask> {
    let Some(first) = frames.first() else {
        return Vec::new();
    };
    let (w, h) = (first.width() as usize, first.height() as usize);
    let mut background: Vec<f64> = blur5(&grey(first), w, h)
        .iter()
        .map(|&v| v as f64)
        .collect();
    let mut masks = vec![Mask::empty(w, h)];
    for frame in &frames[1..] {
        let g = blur5(&grey(frame), w, h);
        let raw: Vec<bool> = g
            .iter()
            .zip(background.iter_mut())
            .map(|(&v, avg)| {
                *avg = v as f64 * BACKGROUND_RATE + *avg * (1.0 - BACKGROUND_RATE);
                let bg = avg.abs().round_ties_even().min(255.0) as u8;
                v.abs_diff(bg) > MOTION_THRESHOLD
            })
            .collect();
        let opened = morph5(&morph5(&raw, w, h, false), w, h, true);
        let closed = morph5(&morph5(&opened, w, h, true), w, h, false);
        masks.push(Mask {
            width: w,
            height: h,
            moving: closed,
        });
    }
    masks
}

/// Intersection over union of two masks; 1 when both are empty (the benchmark's convention).
fn iou(a: &[bool], b: &[bool]) -> f64 {
    let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// Where anything moved at any time.
fn spatial(masks: &[Mask]) -> Vec<bool> {
    let n = masks.first().map_or(0, |m| m.moving.len());
    (0..n).map(|i| masks.iter().any(|m| m.moving[i])).collect()
}

/// The fraction of frames in which each pixel moved.
fn weighted_spatial(masks: &[Mask]) -> Vec<f64> {
    let n = masks.first().map_or(0, |m| m.moving.len());
    (0..n)
        .map(|i| masks.iter().filter(|m| m.moving[i]).count() as f64 / masks.len() as f64)
        .collect()
}

fn weighted_iou(a: &[f64], b: &[f64]) -> f64 {
    let inter: f64 = a.iter().zip(b).map(|(x, y)| x.min(*y)).sum();
    let union: f64 = a.iter().zip(b).map(|(x, y)| x.max(*y)).sum();
    if union == 0.0 {
        1.0
    } else {
        inter / union
    }
}

/// Mean squared error of two frames with values scaled to [0, 1].
fn frame_mse(a: &RgbImage, b: &RgbImage) -> f64 {
    let sum: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| {
            let d = (x as f64 - y as f64) / 255.0;
            d * d
        })
        .sum();
    sum / a.as_raw().len() as f64
}

/// The four Physics-IQ metrics of one continuation against one real take (or of two real takes: the physical
/// variance). IoUs: higher is better; MSE: lower is better.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MotionScores {
    pub spatial_iou: f64,
    /// Mean over frames of the per-frame IoU.
    pub spatiotemporal_iou: f64,
    pub weighted_spatial_iou: f64,
    /// Mean over frames of the per-frame MSE of [0, 1] pixel values.
    pub mse: f64,
}

/// Scores of `generated` frames against `real` frames of the same length and size, with their masks.
pub fn motion_scores(
    real: &[RgbImage],
    real_masks: &[Mask],
    generated: &[RgbImage],
    generated_masks: &[Mask],
) -> Result<MotionScores, String> {
    if real.len() != generated.len()
        || real_masks.len() != real.len()
        || generated_masks.len() != real.len()
    {
        return Err(format!(
            "real ({} frames, {} masks) and generated ({} frames, {} masks) clips differ in length",
            real.len(),
            real_masks.len(),
            generated.len(),
            generated_masks.len()
        ));
    }
    if real.is_empty() {
        return Err("no frames to compare".into());
    }
    if real[0].dimensions() != generated[0].dimensions() {
        return Err(format!(
            "real frames are {:?}, generated frames {:?}",
            real[0].dimensions(),
            generated[0].dimensions()
        ));
    }
    let n = real.len() as f64;
    let spatiotemporal = real_masks
        .iter()
        .zip(generated_masks)
        .map(|(a, b)| iou(&a.moving, &b.moving))
        .sum::<f64>()
        / n;
    let mse = real
        .iter()
        .zip(generated)
        .map(|(a, b)| frame_mse(a, b))
        .sum::<f64>()
        / n;
    Ok(MotionScores {
        spatial_iou: iou(&spatial(real_masks), &spatial(generated_masks)),
        spatiotemporal_iou: spatiotemporal,
        weighted_spatial_iou: weighted_iou(
            &weighted_spatial(real_masks),
            &weighted_spatial(generated_masks),
        ),
        mse,
    })
}

/// The Physics-IQ score (0-100) of a model over scenarios: each mean IoU divided by its physical variance (the
/// same metric between two real takes), averaged, minus the MSE in excess of the takes' MSE; clamped to [0, 100].
pub fn physics_iq_score(scores: &[MotionScores], variance: &[MotionScores]) -> Result<f64, String> {
    if scores.is_empty() || variance.is_empty() {
        return Err(
            "a Physics-IQ score needs at least one scored scenario and one pair of real takes"
                .into(),
        );
    }
    let mean = |v: &[MotionScores], f: fn(&MotionScores) -> f64| {
        v.iter().map(f).sum::<f64>() / v.len() as f64
    };
    let ratio = |f: fn(&MotionScores) -> f64| mean(scores, f) / mean(variance, f);
    let ious = (ratio(|s| s.spatiotemporal_iou)
        + ratio(|s| s.spatial_iou)
        + ratio(|s| s.weighted_spatial_iou))
        / 3.0;
    let score = 100.0 * (ious - (mean(scores, |s| s.mse) - mean(variance, |s| s.mse)));
    Ok(score.clamp(0.0, 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use orrery_media::Rgb;

    fn clip_with_square(frames: usize, step: u32) -> Vec<RgbImage> {
        (0..frames as u32)
            .map(|t| {
                RgbImage::from_fn(40, 30, |x, y| {
                    let x0 = 4 + step * t;
                    if (x0..x0 + 8).contains(&x) && (10..18).contains(&y) {
                        Rgb([250, 240, 30])
                    } else {
                        Rgb([30, 40, 80])
                    }
                })
            })
            .collect()
    }

    #[test]
    fn a_still_clip_has_no_motion_and_a_moving_square_does() {
        let still = motion_masks(&clip_with_square(5, 0));
        assert!(still.iter().all(|m| m.count() == 0));
        let moving = motion_masks(&clip_with_square(5, 3));
        assert_eq!(moving[0].count(), 0);
        assert!(moving[1..].iter().all(|m| m.count() > 0));
    }

    #[test]
    fn a_clip_scores_perfectly_against_itself() {
        let clip = clip_with_square(6, 2);
        let masks = motion_masks(&clip);
        let s = motion_scores(&clip, &masks, &clip, &masks).unwrap();
        assert_eq!(
            (
                s.spatial_iou,
                s.spatiotemporal_iou,
                s.weighted_spatial_iou,
                s.mse
            ),
            (1.0, 1.0, 1.0, 0.0)
        );
        assert_eq!(physics_iq_score(&[s], &[s]).unwrap(), 100.0);
    }

    #[test]
    fn reflect_101_matches_opencv() {
        let got: Vec<usize> = (-2..6).map(|i| reflect101(i, 4)).collect();
        assert_eq!(got, vec![2, 1, 0, 1, 2, 3, 2, 1]);
    }
}

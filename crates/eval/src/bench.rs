//! Scoring predicted continuations of physics clips against the real frames and the simulator's ground truth.

use orrery_media::RgbImage;
use orrery_physics::GroundTruth;
use serde::Serialize;

use crate::metrics::{ssim, video_psnr};
use crate::track::locate;

/// Scores of one method on one clip's predicted frames.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClipScore {
    pub psnr: f64,
    pub ssim: f64,
    /// Sum of object position errors (pixels) over object-frames found in both real and predicted frames.
    pub trajectory_error_sum: f64,
    /// Object-frames visible in the real frames.
    pub visible: usize,
    /// ... of which found in the predicted frames.
    pub found: usize,
}

/// Scores `predicted`, frames `start..start + predicted.len()` of a clip, against `real` (the same frames) and
/// the ground-truth object positions.
pub fn score_clip(
    real: &[RgbImage],
    predicted: &[RgbImage],
    truth: &GroundTruth,
    start: usize,
) -> ClipScore {
    let mut s = ClipScore {
        psnr: video_psnr(real, predicted),
        ssim: real
            .iter()
            .zip(predicted)
            .map(|(a, b)| ssim(a, b))
            .sum::<f64>()
            / real.len().max(1) as f64,
        ..ClipScore::default()
    };
    for (object, track) in truth.scene.objects.iter().zip(&truth.tracks) {
        for (k, (r, p)) in real.iter().zip(predicted).enumerate() {
            // Occluded or out of frame in reality: nothing to compare.
            if locate(r, object.color).is_none() {
                continue;
            }
            s.visible += 1;
            if let Some((c, _)) = locate(p, object.color) {
                let gt = track.pixel[start + k];
                s.found += 1;
                s.trajectory_error_sum +=
                    ((c[0] - gt[0] as f64).powi(2) + (c[1] - gt[1] as f64).powi(2)).sqrt();
            }
        }
    }
    s
}

/// Mean scores of one method over clips.
#[derive(Debug, Clone, Serialize)]
pub struct MethodSummary {
    pub method: String,
    pub clips: usize,
    pub psnr: f64,
    pub ssim: f64,
    /// Mean position error (pixels) of objects found in the predicted frames.
    pub trajectory_error_px: f64,
    /// Fraction of visible object-frames whose object was found in the prediction.
    pub found_rate: f64,
}

pub fn summarise(method: &str, scores: &[ClipScore]) -> MethodSummary {
    let n = scores.len().max(1) as f64;
    let found: usize = scores.iter().map(|s| s.found).sum();
    let visible: usize = scores.iter().map(|s| s.visible).sum();
    MethodSummary {
        method: method.to_owned(),
        clips: scores.len(),
        psnr: scores.iter().map(|s| s.psnr.min(100.0)).sum::<f64>() / n,
        ssim: scores.iter().map(|s| s.ssim).sum::<f64>() / n,
        trajectory_error_px: scores.iter().map(|s| s.trajectory_error_sum).sum::<f64>()
            / found.max(1) as f64,
        found_rate: found as f64 / visible.max(1) as f64,
    }
}

/// A Markdown table of summaries.
pub fn table(rows: &[MethodSummary]) -> String {
    let mut out = String::from(
        "| method | clips | PSNR (dB) | SSIM | trajectory error (px) | objects found |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {:.2} | {:.4} | {:.2} | {:.1}% |\n",
            r.method,
            r.clips,
            r.psnr,
            r.ssim,
            r.trajectory_error_px,
            100.0 * r.found_rate
        ));
    }
    out
}

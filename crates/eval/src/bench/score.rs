//! Scoring predicted continuations of physics clips against the real frames and the simulator's ground truth.

use std::collections::BTreeMap;

use orrery_media::RgbImage;
use orrery_physics::GroundTruth;
use serde::Serialize;

use crate::grounded::{score_grounded, GroundedScore};
use crate::metrics::{psnr, psnr_of_mse, ssim, video_mse, video_psnr, PSNR_CAP_DB};
use crate::track::locate;

/// Scores of one method on one clip's predicted frames.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClipScore {
    pub psnr: f64,
    /// Mean squared error (8-bit units) over the predicted frames.
    pub mse: f64,
    /// PSNR of each predicted frame (capped at 100 dB for identical frames).
    pub psnr_per_frame: Vec<f64>,
    pub ssim: f64,
    /// One entry per object-frame visible in the real frames (objects in scene order, frames in time order): the
    /// object's position error (pixels) against the ground truth where it is found in the predicted frame.
    pub object_errors: Vec<Option<f64>>,
    /// Per object colour name: [object-frames visible in the real frames, of which found in the prediction]. A
    /// colour the VAE's decoder shifts past the detector's tolerance shows here as a colour never found.
    pub found_by_color: BTreeMap<String, [usize; 2]>,
    /// Gravity, permanence, object count and ground penetration.
    pub grounded: GroundedScore,
}

impl ClipScore {
    /// The clip's PSNR, capped at [`PSNR_CAP_DB`].
    pub fn capped_psnr(&self) -> f64 {
        self.psnr.min(PSNR_CAP_DB)
    }

    /// Object-frames visible in the real frames.
    pub fn visible(&self) -> usize {
        self.object_errors.len()
    }

    /// Position errors of the object-frames found in the prediction.
    pub fn found_errors(&self) -> impl Iterator<Item = f64> + '_ {
        self.object_errors.iter().flatten().copied()
    }
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
        mse: video_mse(real, predicted),
        psnr_per_frame: real
            .iter()
            .zip(predicted)
            .map(|(a, b)| psnr(a, b).min(PSNR_CAP_DB))
            .collect(),
        ssim: real
            .iter()
            .zip(predicted)
            .map(|(a, b)| ssim(a, b))
            .sum::<f64>()
            / real.len().max(1) as f64,
        grounded: score_grounded(real, predicted, truth, start),
        ..ClipScore::default()
    };
    for (object, track) in truth.scene.objects.iter().zip(&truth.tracks) {
        for (k, (r, p)) in real.iter().zip(predicted).enumerate() {
            // Occluded or out of frame in reality: nothing to compare.
            if locate(r, object.color).is_none() {
                continue;
            }
            let gt = track.pixel[start + k];
            let error = locate(p, object.color).map(|(c, _)| {
                ((c[0] - gt[0] as f64).powi(2) + (c[1] - gt[1] as f64).powi(2)).sqrt()
            });
            tally(&mut s.found_by_color, &object.color_name, error.is_some());
            s.object_errors.push(error);
        }
    }
    s
}

/// Mean scores of one method over clips.
#[derive(Debug, Clone, Serialize)]
pub struct MethodSummary {
    pub method: String,
    pub clips: usize,
    /// Mean over clips of their PSNR, each capped at 100 dB (a method exact on a clip scores 100 there).
    pub psnr: f64,
    /// PSNR of the mean squared error over all clips' predicted frames: no cap decides it, unlike the mean of
    /// per-clip PSNRs, which a few clips a method gets exactly right (a still world for copy-last-frame) dominate.
    pub pooled_psnr: f64,
    /// Median over clips of their PSNR: neither a few exact clips nor a few failures decide it.
    pub median_psnr: f64,
    pub ssim: f64,
    /// Mean position error (pixels) of objects found in the predicted frames; `None` when none was found.
    pub trajectory_error_px: Option<f64>,
    /// Fraction of visible object-frames whose object was found in the prediction.
    pub found_rate: f64,
    /// `found_rate` of each object colour (by name) visible in some clip.
    pub found_rate_by_color: BTreeMap<String, f64>,
    /// Mean |g_fit - g| / g over free-fall stretches fitted; `None` when none could be fitted.
    pub gravity_error: Option<f64>,
    /// Free-fall stretches fitted / all stretches long enough to fit.
    pub gravity_fitted: usize,
    pub gravity_stretches: usize,
    /// Fraction of frames whose number of objects found equals the number visible in reality.
    pub count_accuracy: f64,
    /// Fraction of object-frames reappearing in reality after being hidden that are found in the prediction.
    pub permanence: Option<f64>,
    /// Fraction of found object-frames sunk into the ground, and their mean depth (pixels).
    pub penetration_rate: f64,
    pub penetration_depth_px: f64,
}

pub fn summarise(method: &str, scores: &[ClipScore]) -> MethodSummary {
    let n = scores.len().max(1) as f64;
    let found: usize = scores.iter().map(|s| s.found_errors().count()).sum();
    let visible: usize = scores.iter().map(ClipScore::visible).sum();
    let total =
        |f: fn(&GroundedScore) -> usize| scores.iter().map(|s| f(&s.grounded)).sum::<usize>();
    let fits: Vec<_> = scores
        .iter()
        .flat_map(|s| s.grounded.gravity.iter())
        .collect();
    let penetrating = total(|g| g.penetrating);
    let capped: Vec<f64> = scores.iter().map(ClipScore::capped_psnr).collect();
    MethodSummary {
        method: method.to_owned(),
        clips: scores.len(),
        psnr: capped.iter().sum::<f64>() / n,
        pooled_psnr: psnr_of_mse(scores.iter().map(|s| s.mse).sum::<f64>() / n),
        median_psnr: median(capped),
        ssim: scores.iter().map(|s| s.ssim).sum::<f64>() / n,
        trajectory_error_px: (found > 0)
            .then(|| scores.iter().flat_map(ClipScore::found_errors).sum::<f64>() / found as f64),
        found_rate: found as f64 / visible.max(1) as f64,
        found_rate_by_color: found_rate_by_color(scores),
        gravity_error: (!fits.is_empty())
            .then(|| fits.iter().map(|f| f.relative_error()).sum::<f64>() / fits.len() as f64),
        gravity_fitted: fits.len(),
        gravity_stretches: fits.len() + total(|g| g.gravity_unfitted),
        count_accuracy: total(|g| g.count_matches) as f64 / total(|g| g.frames).max(1) as f64,
        permanence: (total(|g| g.reappearing) > 0)
            .then(|| total(|g| g.reappeared) as f64 / total(|g| g.reappearing) as f64),
        penetration_rate: penetrating as f64 / total(|g| g.found).max(1) as f64,
        penetration_depth_px: scores
            .iter()
            .map(|s| s.grounded.penetration_sum_px)
            .sum::<f64>()
            / penetrating.max(1) as f64,
    }
}

/// Per colour name: object-frames found / visible, pooled over clips.
fn found_rate_by_color(scores: &[ClipScore]) -> BTreeMap<String, f64> {
    pooled_rates(scores.iter().flat_map(|s| &s.found_by_color))
}

/// What the objects-found-by-colour table shows, for the HTML reports.
pub const FOUND_BY_COLOR_ABOUT: &str = "Objects found (%) by colour: the detector finds an object by its flat \
    colour, so a colour the VAE shifts past the detector's tolerance is lost in every row that passes through the \
    VAE, the round trip included.";

/// Objects found by colour: a header row (method, then each colour seen) and one row per summary, in %, then the
/// `extra` row (name, rate per colour) where given.
pub fn found_by_color_table(
    summaries: &[MethodSummary],
    extra: Option<(&str, BTreeMap<String, f64>)>,
) -> (Vec<String>, Vec<Vec<String>>) {
    let mut colors: Vec<&String> = summaries
        .iter()
        .flat_map(|s| s.found_rate_by_color.keys())
        .chain(extra.iter().flat_map(|(_, rates)| rates.keys()))
        .collect();
    colors.sort();
    colors.dedup();
    let headers = std::iter::once("method".to_owned())
        .chain(colors.iter().map(|c| c.to_string()))
        .collect();
    let row = |name: &str, rates: &BTreeMap<String, f64>| -> Vec<String> {
        std::iter::once(name.to_owned())
            .chain(colors.iter().map(|c| {
                rates
                    .get(*c)
                    .map_or_else(|| "-".to_owned(), |r| format!("{:.1}", 100.0 * r))
            }))
            .collect()
    };
    let mut rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| row(&s.method, &s.found_rate_by_color))
        .collect();
    if let Some((name, rates)) = &extra {
        rows.push(row(name, rates));
    }
    (headers, rows)
}

/// Counts one more `[count, hits]` entry for `color`, a hit where `hit`.
pub(crate) fn tally(counts: &mut BTreeMap<String, [usize; 2]>, color: &str, hit: bool) {
    let c = counts.entry(color.to_owned()).or_default();
    c[0] += 1;
    c[1] += usize::from(hit);
}

/// Per colour name: the sum of the hits over the sum of the counts of `[count, hits]` entries.
pub(crate) fn pooled_rates<'a>(
    counts: impl Iterator<Item = (&'a String, &'a [usize; 2])>,
) -> BTreeMap<String, f64> {
    let mut pooled: BTreeMap<String, [usize; 2]> = BTreeMap::new();
    for (color, [count, hits]) in counts {
        let p = pooled.entry(color.clone()).or_default();
        p[0] += count;
        p[1] += hits;
    }
    pooled
        .into_iter()
        .map(|(color, [count, hits])| (color, hits as f64 / count.max(1) as f64))
        .collect()
}

/// Median of `v` (mean of the middle two for an even count; 0 for none).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Clips on which method `a` scores a higher PSNR than method `b` (the same clips, in the same order).
pub fn clips_won(a: &[ClipScore], b: &[ClipScore]) -> usize {
    a.iter().zip(b).filter(|(a, b)| a.psnr > b.psnr).count()
}

/// Two methods' trajectory errors on the same object-frames: those both find. A method that finds objects only
/// where they are easy to place (still, unblurred) would otherwise look more accurate than one that finds them
/// everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MatchedTrajectory {
    /// Object-frames found by both methods.
    pub object_frames: usize,
    /// Mean position error (pixels) of each method over them; `None` when there are none.
    pub error_a_px: Option<f64>,
    pub error_b_px: Option<f64>,
}

/// [`MatchedTrajectory`] of methods `a` and `b` (the same clips, in the same order).
pub fn matched_trajectory(a: &[ClipScore], b: &[ClipScore]) -> MatchedTrajectory {
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .zip(b)
        .flat_map(|(a, b)| a.object_errors.iter().zip(&b.object_errors))
        .filter_map(|(ea, eb)| Some(((*ea)?, (*eb)?)))
        .collect();
    let n = pairs.len();
    let mean =
        |f: fn(&(f64, f64)) -> f64| (n > 0).then(|| pairs.iter().map(f).sum::<f64>() / n as f64);
    MatchedTrajectory {
        object_frames: n,
        error_a_px: mean(|p| p.0),
        error_b_px: mean(|p| p.1),
    }
}

/// Mean PSNR over clips of the k-th predicted frame, k = 0.. (as far as every clip reaches).
pub fn psnr_by_horizon(scores: &[ClipScore]) -> Vec<f64> {
    let horizon = scores
        .iter()
        .map(|s| s.psnr_per_frame.len())
        .min()
        .unwrap_or(0);
    (0..horizon)
        .map(|k| scores.iter().map(|s| s.psnr_per_frame[k]).sum::<f64>() / scores.len() as f64)
        .collect()
}

/// Column headers of [`table_row`].
pub const TABLE_HEADERS: [&str; 12] = [
    "method",
    "clips",
    "PSNR (dB)",
    "pooled PSNR (dB)",
    "median PSNR (dB)",
    "SSIM",
    "trajectory error (px)",
    "objects found",
    "gravity error (fits)",
    "object count right",
    "permanence",
    "ground penetration (depth px)",
];

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{:.1}%", 100.0 * v))
}

/// A summary's method, clips, PSNR (mean, pooled, median) and SSIM as table cells.
pub fn image_cells(r: &MethodSummary) -> Vec<String> {
    vec![
        r.method.clone(),
        r.clips.to_string(),
        format!("{:.2}", r.psnr),
        format!("{:.2}", r.pooled_psnr),
        format!("{:.2}", r.median_psnr),
        format!("{:.4}", r.ssim),
    ]
}

/// A summary's trajectory error and objects found as table cells.
pub fn object_cells(r: &MethodSummary) -> [String; 2] {
    [
        r.trajectory_error_px
            .map_or_else(|| "-".to_owned(), |e| format!("{e:.2}")),
        percent(Some(r.found_rate)),
    ]
}

/// One summary as table cells, in the order of [`TABLE_HEADERS`].
pub fn table_row(r: &MethodSummary) -> Vec<String> {
    let mut cells = image_cells(r);
    cells.extend(object_cells(r));
    cells.extend([
        format!(
            "{} ({}/{})",
            percent(r.gravity_error),
            r.gravity_fitted,
            r.gravity_stretches
        ),
        percent(Some(r.count_accuracy)),
        percent(r.permanence),
        format!(
            "{} ({:.1})",
            percent(Some(r.penetration_rate)),
            r.penetration_depth_px
        ),
    ]);
    cells
}

/// A Markdown table of `rows` of cells under `headers`.
pub fn markdown_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "| {} |\n|{}\n",
        headers.join(" | "),
        "---|".repeat(headers.len())
    );
    for r in rows {
        out.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    out
}

/// A Markdown table of summaries.
pub fn table(rows: &[MethodSummary]) -> String {
    let cells: Vec<Vec<String>> = rows.iter().map(table_row).collect();
    markdown_table(&TABLE_HEADERS, &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_psnr_is_not_decided_by_the_cap_of_an_exact_clip() {
        let clip = |mse: f64| ClipScore {
            psnr: psnr_of_mse(mse),
            mse,
            ..ClipScore::default()
        };
        // Exact on one clip, MSE 65.025 (30 dB) on the other.
        let s = summarise("m", &[clip(0.0), clip(65.025)]);
        assert!((s.psnr - 65.0).abs() < 1e-9, "{}", s.psnr);
        assert!((s.pooled_psnr - (30.0 + 10.0 * 2f64.log10())).abs() < 1e-9);
        assert!((s.median_psnr - 65.0).abs() < 1e-9, "{}", s.median_psnr);
        assert_eq!(table_row(&s).len(), TABLE_HEADERS.len());
        // One exact clip among three: the median is the middle clip's.
        let s = summarise("m", &[clip(0.0), clip(65.025), clip(650.25)]);
        assert!((s.median_psnr - 30.0).abs() < 1e-9, "{}", s.median_psnr);
    }

    #[test]
    fn matched_trajectory_compares_only_object_frames_both_find() {
        let clip = |errors: &[Option<f64>]| ClipScore {
            object_errors: errors.to_vec(),
            ..ClipScore::default()
        };
        // a finds one easy object-frame; b finds all three, the shared one less well.
        let a = [clip(&[Some(1.0), None]), clip(&[None])];
        let b = [clip(&[Some(3.0), Some(9.0)]), clip(&[Some(2.0)])];
        assert_eq!(summarise("a", &a).trajectory_error_px, Some(1.0));
        assert_eq!(summarise("b", &b).found_rate, 1.0);
        let m = matched_trajectory(&a, &b);
        assert_eq!(m.object_frames, 1);
        assert_eq!((m.error_a_px, m.error_b_px), (Some(1.0), Some(3.0)));
        assert_eq!(matched_trajectory(&a[1..], &b[1..]).error_a_px, None);
    }

    #[test]
    fn clips_won_counts_strictly_higher_psnr() {
        let clip = |psnr: f64| ClipScore {
            psnr,
            ..ClipScore::default()
        };
        let a = [clip(30.0), clip(20.0), clip(25.0)];
        let b = [clip(25.0), clip(21.0), clip(25.0)];
        assert_eq!((clips_won(&a, &b), clips_won(&b, &a)), (1, 1));
    }

    #[test]
    fn found_rates_by_colour_pool_object_frames_over_clips() {
        let clip = |counts: &[(&str, [usize; 2])]| ClipScore {
            found_by_color: counts.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
            ..ClipScore::default()
        };
        let s = summarise(
            "m",
            &[
                clip(&[("cyan", [10, 0]), ("red", [4, 4])]),
                clip(&[("red", [6, 1])]),
            ],
        );
        assert_eq!(s.found_rate_by_color["cyan"], 0.0);
        assert_eq!(s.found_rate_by_color["red"], 0.5);
        assert_eq!(s.found_rate_by_color.len(), 2);
    }
}

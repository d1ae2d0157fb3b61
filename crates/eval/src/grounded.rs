//! Physical-fidelity metrics that only a simulator can ground: gravity fitted to falling objects, objects kept
//! through occlusion (permanence) and counted right, and objects sinking into the ground (penetration).
//! Objects are located in frames by their colour ([`crate::track`]); the truth comes from the simulation.

use orrery_media::RgbImage;
use orrery_physics::GroundTruth;
use serde::Serialize;

use crate::track::{locate, matches};

/// Fewest consecutive free-fall frames (and found positions in them) to fit gravity to.
pub const MIN_FALL_FRAMES: usize = 6;
/// A frame is free fall when the true acceleration is within this fraction of g of (0, -g).
const FREE_FALL_TOLERANCE: f64 = 0.05;
/// Object pixels deeper than this below the ground line count as penetration (anti-aliased edges).
pub const PENETRATION_TOLERANCE_PX: f64 = 1.0;

/// Least-squares fit y = a + b t + c t^2; `None` when fewer than 4 points or degenerate.
pub fn fit_quadratic(points: &[(f64, f64)]) -> Option<[f64; 3]> {
    if points.len() < 4 {
        return None;
    }
    // Normal equations in powers of t, centred on the mean time for conditioning.
    let t0 = points.iter().map(|p| p.0).sum::<f64>() / points.len() as f64;
    let mut m = [[0.0f64; 4]; 3];
    for &(t, y) in points {
        let t = t - t0;
        let pw = [1.0, t, t * t];
        for r in 0..3 {
            for c in 0..3 {
                m[r][c] += pw[r] * pw[c];
            }
            m[r][3] += pw[r] * y;
        }
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..3 {
        let pivot = (col..3).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        m.swap(col, pivot);
        if m[col][col].abs() < 1e-12 {
            return None;
        }
        for r in 0..3 {
            if r != col {
                let f = m[r][col] / m[col][col];
                let pivot_row = m[col];
                for (c, v) in m[r].iter_mut().enumerate().skip(col) {
                    *v -= f * pivot_row[c];
                }
            }
        }
    }
    let (a, b, c) = (m[0][3] / m[0][0], m[1][3] / m[1][1], m[2][3] / m[2][2]);
    // Back from centred time: a + b (t - t0) + c (t - t0)^2.
    Some([a - b * t0 + c * t0 * t0, b - 2.0 * c * t0, c])
}

/// Frames `k` in `range` where object `i` is in free fall according to the simulation (central differences of
/// the true velocity), as maximal runs.
fn free_fall_runs(
    truth: &GroundTruth,
    object: usize,
    range: std::ops::Range<usize>,
) -> Vec<Vec<usize>> {
    let g = truth.scene.gravity as f64;
    let v = &truth.tracks[object].velocity;
    let fps = truth.fps as f64;
    let mut runs: Vec<Vec<usize>> = Vec::new();
    let mut current = Vec::new();
    for k in range {
        let free = k >= 1 && k + 1 < v.len() && g > 0.0 && {
            let ax = (v[k + 1][0] - v[k - 1][0]) as f64 * fps / 2.0;
            let ay = (v[k + 1][1] - v[k - 1][1]) as f64 * fps / 2.0;
            ax.abs() < FREE_FALL_TOLERANCE * g && (ay + g).abs() < FREE_FALL_TOLERANCE * g
        };
        if free {
            current.push(k);
        } else if !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// One gravity fit: the true g and the g fitted to the object's positions found in the frames (m/s^2).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GravityFit {
    pub object: usize,
    pub true_gravity: f64,
    pub fitted_gravity: f64,
}

impl GravityFit {
    pub fn relative_error(&self) -> f64 {
        (self.fitted_gravity - self.true_gravity).abs() / self.true_gravity
    }
}

/// Grounded scores of predicted frames `start..start + frames.len()` of a clip.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroundedScore {
    /// Gravity fitted in each free-fall stretch long enough to fit (objects found in enough of its frames).
    pub gravity: Vec<GravityFit>,
    /// Free-fall stretches that could not be fitted because the object was not found often enough.
    pub gravity_unfitted: usize,
    /// Frames where the number of objects found equals the number visible in the real frames.
    pub count_matches: usize,
    pub frames: usize,
    /// Object-frames visible in reality after the object had been hidden (occluded or out of view) ...
    pub reappearing: usize,
    /// ... of which the object is found in the prediction too.
    pub reappeared: usize,
    /// Object-frames found in the prediction ...
    pub found: usize,
    /// ... of which penetrating the ground by more than [`PENETRATION_TOLERANCE_PX`].
    pub penetrating: usize,
    /// Sum of penetration depths (pixels) over penetrating object-frames.
    pub penetration_sum_px: f64,
}

/// Deepest pixel of colour `rgb` below the ground line, in pixels (0 when none is below).
fn penetration_px(frame: &RgbImage, rgb: [u8; 3], ground_y_px: f64) -> f64 {
    let mut deepest = 0.0f64;
    for (_, y, p) in frame.enumerate_pixels() {
        if matches(p, rgb) {
            deepest = deepest.max(y as f64 + 1.0 - ground_y_px);
        }
    }
    deepest
}

/// Scores `predicted` (frames `start..`) against `real` (the same frames) and the clip's truth.
pub fn score_grounded(
    real: &[RgbImage],
    predicted: &[RgbImage],
    truth: &GroundTruth,
    start: usize,
) -> GroundedScore {
    let n = real.len().min(predicted.len());
    let objects = &truth.scene.objects;
    let mut s = GroundedScore {
        frames: n,
        ..GroundedScore::default()
    };
    let real_found: Vec<Vec<bool>> = objects
        .iter()
        .map(|o| {
            real[..n]
                .iter()
                .map(|f| locate(f, o.color).is_some())
                .collect()
        })
        .collect();
    let predicted_at: Vec<Vec<Option<[f64; 2]>>> = objects
        .iter()
        .map(|o| {
            predicted[..n]
                .iter()
                .map(|f| locate(f, o.color).map(|(c, _)| c))
                .collect()
        })
        .collect();
    for k in 0..n {
        let visible = real_found.iter().filter(|f| f[k]).count();
        let found = predicted_at.iter().filter(|p| p[k].is_some()).count();
        s.count_matches += usize::from(visible == found);
    }
    let ground_y_px = truth
        .scene
        .ground
        .then(|| truth.camera.to_pixel([0.0, 0.0])[1] as f64);
    for (i, object) in objects.iter().enumerate() {
        // Permanence: real frames where the object is visible again after having been hidden.
        let mut seen = false;
        let mut gone = false;
        for k in 0..n {
            if real_found[i][k] {
                if seen && gone {
                    s.reappearing += 1;
                    s.reappeared += usize::from(predicted_at[i][k].is_some());
                }
                seen = true;
            } else if seen {
                gone = true;
            }
        }
        // Penetration of the ground.
        if let Some(ground) = ground_y_px {
            for k in 0..n {
                if predicted_at[i][k].is_some() {
                    s.found += 1;
                    let depth = penetration_px(&predicted[k], object.color, ground);
                    if depth > PENETRATION_TOLERANCE_PX {
                        s.penetrating += 1;
                        s.penetration_sum_px += depth;
                    }
                }
            }
        }
        // Gravity in each free-fall stretch of the predicted window.
        let camera = &truth.camera;
        for run in free_fall_runs(truth, i, start..start + n) {
            if run.len() < MIN_FALL_FRAMES {
                continue;
            }
            let points: Vec<(f64, f64)> = run
                .iter()
                .filter_map(|&k| {
                    let [_, py] = predicted_at[i][k - start]?;
                    // Pixel row (down) -> world height (up), metres.
                    let y = camera.y_bottom as f64
                        + (camera.height_px as f64 - py) / camera.scale as f64;
                    Some((k as f64 / truth.fps as f64, y))
                })
                .collect();
            match fit_quadratic(&points).filter(|_| points.len() >= MIN_FALL_FRAMES) {
                Some([_, _, c]) => s.gravity.push(GravityFit {
                    object: i,
                    true_gravity: truth.scene.gravity as f64,
                    fitted_gravity: -2.0 * c,
                }),
                None => s.gravity_unfitted += 1,
            }
        }
    }
    s
}

//! Rewards of RL post-training, computed on decoded rollouts of physics worlds, whose simulation is the truth.
//!
//! Each [`RewardKind`] scores one rollout in [0, 1] (higher is better) or gives no value where it does not apply
//! (a trajectory reward on Text2World, which has no true continuation; permanence where nothing reappears). As
//! the reference does with a failed reward model, a rollout without a value gets its group's mean, so its
//! advantage for that reward is 0.
//!
//! - grounded (the simulator's continuation is known; Image2World and Video2World): `trajectory`, `found`,
//!   `count`, `permanence`, `penetration`, `gravity`, `psnr`;
//! - plausibility (no continuation needed, so Text2World too): `plausibility`;
//! - caption adherence: `caption` (the captioned objects appear), `events` (the captioned events happen);
//! - `external`: a command that reads a video and a prompt and prints a score.

use std::path::Path;
use std::process::Command;

use orrery_eval::bench::run::object_shown;
use orrery_eval::bench::{score_clip, ClipScore};
use orrery_eval::events::captioned_events_shown;
use orrery_eval::track::matches;
use orrery_media::RgbImage;
use orrery_physics::GroundTruth;
use serde::{Deserialize, Serialize};

/// A position error of this fraction of the frame width (or a missed object) scores 0 in `trajectory`.
pub const TRAJECTORY_CAP_FRACTION: f64 = 0.25;
/// PSNR (dB) that scores 1 in `psnr`.
pub const PSNR_FULL_DB: f64 = 50.0;
/// Fewest pixels of a colour that count as a blob in `plausibility` (as the tracker's smallest object).
const MIN_BLOB_PIXELS: usize = orrery_eval::track::MIN_PIXELS;

/// One reward term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RewardKind {
    /// `1 - mean(min(error, cap) / cap)` over the object-frames visible in reality; a missed object errs `cap`.
    Trajectory,
    /// Object-frames visible in reality that are found in the rollout.
    Found,
    /// Frames whose number of objects found equals the number visible in reality.
    Count,
    /// Object-frames reappearing after occlusion that the rollout shows again.
    Permanence,
    /// Found object-frames that do not sink into the ground.
    Penetration,
    /// `1 - min(|g_fit - g| / g, 1)` over the free-fall stretches the rollout can be fitted on.
    Gravity,
    /// PSNR of the predicted frames against reality, over [`PSNR_FULL_DB`] (capped at 1).
    Psnr,
    /// Objects that neither vanish in open view nor split into several blobs, and do not sink into the ground.
    Plausibility,
    /// Captioned objects shown (found in at least half of the frames).
    Caption,
    /// Captioned events that happen in the rollout (`orrery_eval::events`); no value when the caption tells none.
    Events,
    /// The score an external command prints.
    External,
}

impl RewardKind {
    pub fn name(self) -> &'static str {
        match self {
            RewardKind::Trajectory => "trajectory",
            RewardKind::Found => "found",
            RewardKind::Count => "count",
            RewardKind::Permanence => "permanence",
            RewardKind::Penetration => "penetration",
            RewardKind::Gravity => "gravity",
            RewardKind::Psnr => "psnr",
            RewardKind::Plausibility => "plausibility",
            RewardKind::Caption => "caption",
            RewardKind::Events => "events",
            RewardKind::External => "external",
        }
    }

    /// Whether the reward needs the true continuation (so Image2World or Video2World).
    pub fn needs_continuation(self) -> bool {
        !matches!(
            self,
            RewardKind::Plausibility
                | RewardKind::Caption
                | RewardKind::Events
                | RewardKind::External
        )
    }
}

/// One weighted term of the composed reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardTerm {
    pub kind: RewardKind,
    pub weight: f64,
}

/// A rollout and what it is judged against.
pub struct Judged<'a> {
    /// Every frame of the rollout (the conditioning frames first).
    pub frames: &'a [RgbImage],
    /// The simulated clip's frames, as many.
    pub real: &'a [RgbImage],
    pub truth: &'a GroundTruth,
    /// Pixel frames given as conditioning (0 for Text2World).
    pub conditioning: usize,
    pub caption: &'a str,
    pub fps: f64,
}

/// The bench's scores of the predicted frames, when there is a true continuation.
pub fn continuation_score(j: &Judged) -> Option<ClipScore> {
    (j.conditioning > 0 && j.conditioning < j.frames.len()).then(|| {
        let s = j.conditioning;
        score_clip(&j.real[s..], &j.frames[s..], j.truth, s)
    })
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// The value of one (non-external) reward; `score` is [`continuation_score`] of the same rollout.
pub fn reward(kind: RewardKind, j: &Judged, score: Option<&ClipScore>) -> Option<f64> {
    match kind {
        RewardKind::Plausibility => Some(plausibility(j)),
        RewardKind::Caption => {
            let objects = &j.truth.scene.objects;
            let shown = objects
                .iter()
                .filter(|o| object_shown(j.frames, o.color))
                .count();
            ratio(shown, objects.len())
        }
        RewardKind::Events => captioned_events_shown(j.frames, j.truth, j.caption),
        RewardKind::External => None,
        _ => {
            let s = score?;
            let g = &s.grounded;
            match kind {
                RewardKind::Trajectory => {
                    let cap = TRAJECTORY_CAP_FRACTION * j.truth.camera.width_px as f64;
                    let n = s.object_errors.len();
                    let err: f64 = s
                        .object_errors
                        .iter()
                        .map(|e| e.map_or(cap, |e| e.min(cap)))
                        .sum();
                    (n > 0).then(|| 1.0 - err / (cap * n as f64))
                }
                RewardKind::Found => ratio(s.found_errors().count(), s.visible()),
                RewardKind::Count => ratio(g.count_matches, g.frames),
                RewardKind::Permanence => ratio(g.reappeared, g.reappearing),
                RewardKind::Penetration => ratio(g.found - g.penetrating, g.found).or(Some(1.0)),
                RewardKind::Gravity => (!g.gravity.is_empty()).then(|| {
                    let e: f64 = g.gravity.iter().map(|f| f.relative_error().min(1.0)).sum();
                    1.0 - e / g.gravity.len() as f64
                }),
                RewardKind::Psnr => Some((s.capped_psnr() / PSNR_FULL_DB).clamp(0.0, 1.0)),
                _ => unreachable!("the other kinds are handled above"),
            }
        }
    }
}

/// Connected blobs (4-neighbour) of colour `rgb` with at least [`MIN_BLOB_PIXELS`] pixels, with whether any
/// touches the border.
fn blobs(frame: &RgbImage, rgb: [u8; 3]) -> (usize, bool) {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let mask: Vec<bool> = frame.pixels().map(|p| matches(p, rgb)).collect();
    let mut seen = vec![false; w * h];
    let (mut count, mut border) = (0, false);
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut size, mut touches) = (0, false);
        while let Some(i) = stack.pop() {
            size += 1;
            let (x, y) = (i % w, i / w);
            touches |= x == 0 || y == 0 || x + 1 == w || y + 1 == h;
            let mut visit = |j: usize| {
                if mask[j] && !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < w {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - w);
            }
            if y + 1 < h {
                visit(i + w);
            }
        }
        if size >= MIN_BLOB_PIXELS {
            count += 1;
            border |= touches;
        }
    }
    (count, border)
}

/// `1 - faults / object-frames`: a fault is an object shown in several blobs (a duplicate), an object that
/// vanishes in open view (found, away from the border, then not found in the next frame), or one sinking into
/// the ground. Needs only the objects' colours and the ground line, not the continuation.
pub fn plausibility(j: &Judged) -> f64 {
    let from = j.conditioning.saturating_sub(1);
    let frames = &j.frames[from..];
    let ground = j
        .truth
        .scene
        .ground
        .then(|| j.truth.camera.to_pixel([0.0, 0.0])[1] as f64);
    let (mut shown, mut faults) = (0usize, 0usize);
    for object in &j.truth.scene.objects {
        let per_frame: Vec<(usize, bool)> = frames.iter().map(|f| blobs(f, object.color)).collect();
        for (k, &(count, border)) in per_frame.iter().enumerate() {
            if count == 0 {
                continue;
            }
            shown += 1;
            faults += usize::from(count > 1);
            let vanishes = per_frame.get(k + 1).is_some_and(|next| next.0 == 0);
            faults += usize::from(vanishes && !border);
            if let Some(y) = ground {
                faults += usize::from(sinks(&frames[k], object.color, y));
            }
        }
    }
    if shown == 0 {
        return 0.0;
    }
    1.0 - (faults as f64 / shown as f64).min(1.0)
}

/// Whether pixels of colour `rgb` lie more than the penetration tolerance below the ground line.
fn sinks(frame: &RgbImage, rgb: [u8; 3], ground_y_px: f64) -> bool {
    frame.enumerate_pixels().any(|(_, y, p)| {
        matches(p, rgb)
            && y as f64 + 1.0 - ground_y_px > orrery_eval::grounded::PENETRATION_TOLERANCE_PX
    })
}

/// Runs `command VIDEO PROMPT` (split on whitespace, the video and prompt appended as the last two arguments) and
/// reads the last number it prints. `None` (with a warning) when it fails or prints no number.
pub fn external_reward(command: &str, video: &Path, prompt: &str) -> Option<f64> {
    let mut words = command.split_whitespace();
    let program = words.next()?;
    let out = Command::new(program)
        .args(words)
        .arg(video)
        .arg(prompt)
        .output();
    let out = match out {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            tracing::warn!(
                "reward command `{command}` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Err(e) => {
            tracing::warn!("reward command `{command}` could not run: {e}");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let value = text
        .split_whitespace()
        .rev()
        .find_map(|w| w.parse::<f64>().ok())
        .filter(|v| v.is_finite());
    if value.is_none() {
        tracing::warn!(
            "reward command `{command}` printed no number: {}",
            text.trim()
        );
    }
    value
}

//! The action bench, our counterpart of the paper's Bridge table: held-out clips of scripted policies in the
//! manipulation worlds, each predicted from its first frame and the actions recorded in it, scored against the
//! real frames beside models that take no actions and the copy and constant-velocity baselines.
//!
//! - Every method sees frame 0; constant velocity also sees frame 1 (it needs a velocity), so every method is
//!   scored on the frames from [`SCORED_FROM`] on.
//! - Latent L2 is the root mean square difference between the VAE latents of the prediction and of the real clip
//!   (normalised as the DiT sees them), over the latent frames after the first (the conditioning frame).
//! - Clip i samples with seed i for every model (the same noise where the shapes agree).

use orrery_media::{encode_gif, tile_clips, RgbImage};
use orrery_physics::clip::Clip;
use serde_json::{json, Map, Value};

use crate::baselines::{constant_velocity, copy_last_frame};
use crate::bench::score::{
    clips_won, found_by_color_table, image_cells, markdown_table, matched_trajectory, object_cells,
    score_clip, summarise, ClipScore, MatchedTrajectory, MethodSummary, FOUND_BY_COLOR_ABOUT,
};
use crate::report::{Block, Report, Section};

/// First frame scored: constant velocity sees frames 0 and 1.
pub const SCORED_FROM: usize = 2;

/// Row names of the baselines.
pub const COPY_FIRST_FRAME: &str = "copy first frame";
pub const CONSTANT_VELOCITY: &str = "constant velocity (sees frames 0 and 1)";
pub const VAE_ROUND_TRIP: &str = "VAE round trip (ceiling)";

/// A model that predicts a clip from its first frame, with or without the clip's actions.
pub trait ActionPredictor {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The row's name in the table.
    fn name(&self) -> String;
    /// Called once with every caption before any prediction.
    fn prepare(&mut self, captions: &[&str]) -> Result<(), Self::Error>;
    /// The clip of caption `caption` (an index into the prepared captions), `actions.len() + 1` frames with
    /// `first` first, where `actions[k]` is the model-scaled action taken after frame k. A model without action
    /// embedders predicts from the first frame alone.
    fn predict(
        &mut self,
        caption: usize,
        first: &RgbImage,
        actions: &[Vec<f64>],
        seed: u64,
    ) -> Result<Vec<RgbImage>, Self::Error>;
}

/// The VAE whose latents the latent L2 compares.
pub trait LatentSpace {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The latent frames of `frames`, each flattened (normalised as the DiT sees them).
    fn latents(&mut self, frames: &[RgbImage]) -> Result<Vec<Vec<f32>>, Self::Error>;
    /// `frames` encoded and decoded.
    fn round_trip(&mut self, frames: &[RgbImage]) -> Result<Vec<RgbImage>, Self::Error>;
}

/// A clip's scored frames (from [`SCORED_FROM`]) per row, in row order, the real ones first: what the caller keeps
/// as videos.
pub struct ScoredFrames<'a> {
    pub real: &'a [RgbImage],
    pub rows: Vec<(&'a str, &'a [RgbImage])>,
}

/// Every score of an action bench.
pub struct ActionBenchResult {
    pub clips: usize,
    /// Row names, in table order: the predictors, then the baselines and the VAE ceiling.
    pub rows: Vec<String>,
    /// Per row, each clip's scores and latent L2.
    pub scores: Vec<Vec<ClipScore>>,
    pub latent_l2: Vec<Vec<f64>>,
    /// Per predictor, wall-clock seconds of its calls per clip.
    pub seconds_per_clip: Vec<f64>,
    /// (caption, GIF bytes) of the first clips: real | each predictor | constant velocity.
    pub gifs: Vec<(String, Vec<u8>)>,
}

/// The actions of a manipulation clip as a model takes them, one row per frame after the first.
pub fn clip_actions(clip: &Clip) -> Option<Vec<Vec<f64>>> {
    let record = clip.truth.manipulation.as_ref()?;
    Some(
        record
            .model_actions()
            .iter()
            .map(|row| row.iter().map(|&v| f64::from(v)).collect())
            .collect(),
    )
}

/// Root mean square difference of two clips' latents over the latent frames after the first.
pub fn latent_l2(real: &[Vec<f32>], predicted: &[Vec<f32>]) -> f64 {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for (a, b) in real.iter().zip(predicted).skip(1) {
        for (x, y) in a.iter().zip(b) {
            sum += f64::from(x - y).powi(2);
            n += 1;
        }
    }
    (sum / n.max(1) as f64).sqrt()
}

/// The colours constant velocity moves: the scene's objects and the gripper.
fn moving_colors(clip: &Clip) -> Vec<[u8; 3]> {
    let mut colors: Vec<[u8; 3]> = clip.truth.scene.objects.iter().map(|o| o.color).collect();
    if let Some(m) = &clip.truth.scene.manipulation {
        colors.push(m.gripper.color);
    }
    colors
}

/// Runs the bench over `clips` (held-out manipulation clips, never trained or tuned on) with each predictor;
/// `on_clip(i, frames)` sees each clip's scored frames, `on_progress` each clip done.
pub fn run_action_bench<E: std::error::Error + Send + Sync + 'static>(
    predictors: &mut [&mut dyn ActionPredictor<Error = E>],
    vae: &mut dyn LatentSpace<Error = E>,
    clips: &[Clip],
    gif_clips: usize,
    fps: f64,
    mut on_clip: impl FnMut(usize, &ScoredFrames) -> Result<(), E>,
    mut on_progress: impl FnMut(),
) -> Result<ActionBenchResult, ActionBenchError<E>> {
    let captions: Vec<&str> = clips
        .iter()
        .map(|c| c.truth.captions.medium.as_str())
        .collect();
    for p in predictors.iter_mut() {
        p.prepare(&captions).map_err(ActionBenchError::Model)?;
    }
    let mut rows: Vec<String> = predictors.iter().map(|p| p.name()).collect();
    rows.extend([COPY_FIRST_FRAME, CONSTANT_VELOCITY, VAE_ROUND_TRIP].map(String::from));
    let mut scores = vec![Vec::new(); rows.len()];
    let mut latent = vec![Vec::new(); rows.len()];
    let mut seconds = vec![0.0; predictors.len()];
    let mut gifs = Vec::new();
    for (i, clip) in clips.iter().enumerate() {
        let actions = clip_actions(clip).ok_or_else(|| {
            ActionBenchError::Clip(format!("clip {} records no actions", clip.truth.key))
        })?;
        let real = clip.images();
        if real.len() != actions.len() + 1 || real.len() <= SCORED_FROM {
            return Err(ActionBenchError::Clip(format!(
                "clip {} has {} frames and {} actions: the bench needs one action per frame after the first \
                 and more than {SCORED_FROM} frames",
                clip.truth.key,
                real.len(),
                actions.len()
            )));
        }
        let mut predictions = Vec::with_capacity(rows.len());
        for (p, s) in predictors.iter_mut().zip(&mut seconds) {
            let start = std::time::Instant::now();
            let frames = p
                .predict(i, &real[0], &actions, i as u64)
                .map_err(ActionBenchError::Model)?;
            *s += start.elapsed().as_secs_f64();
            if frames.len() != real.len() {
                return Err(ActionBenchError::Clip(format!(
                    "{} predicted {} frames of clip {}, which has {}",
                    p.name(),
                    frames.len(),
                    clip.truth.key,
                    real.len()
                )));
            }
            predictions.push(frames);
        }
        let n = real.len();
        let mut copy = vec![real[0].clone()];
        copy.extend(copy_last_frame(&real[..1], n - 1));
        predictions.push(copy);
        let mut cv = real[..2].to_vec();
        cv.extend(constant_velocity(&real[..2], &moving_colors(clip), n - 2));
        predictions.push(cv);
        predictions.push(vae.round_trip(&real).map_err(ActionBenchError::Model)?);

        let real_latents = vae.latents(&real).map_err(ActionBenchError::Model)?;
        for (r, frames) in predictions.iter().enumerate() {
            scores[r].push(score_clip(
                &real[SCORED_FROM..],
                &frames[SCORED_FROM..],
                &clip.truth,
                SCORED_FROM,
            ));
            let l = vae.latents(frames).map_err(ActionBenchError::Model)?;
            latent[r].push(latent_l2(&real_latents, &l));
        }
        let scored = ScoredFrames {
            real: &real[SCORED_FROM..],
            rows: rows
                .iter()
                .zip(&predictions)
                .map(|(name, f)| (name.as_str(), &f[SCORED_FROM..]))
                .collect(),
        };
        on_clip(i, &scored).map_err(ActionBenchError::Model)?;
        if i < gif_clips {
            let (w, h) = real[0].dimensions();
            let mut row: Vec<&[RgbImage]> = vec![&real];
            row.extend(predictions[..predictors.len()].iter().map(Vec::as_slice));
            row.push(&predictions[rows.len() - 2]);
            let tiled = tile_clips(&[row], w, h);
            let gif = encode_gif(&tiled, fps).map_err(|e| ActionBenchError::Clip(e.to_string()))?;
            gifs.push((clip.truth.captions.medium.clone(), gif));
        }
        on_progress();
    }
    let n = clips.len().max(1) as f64;
    Ok(ActionBenchResult {
        clips: clips.len(),
        rows,
        scores,
        latent_l2: latent,
        seconds_per_clip: seconds.iter().map(|s| s / n).collect(),
        gifs,
    })
}

/// Why a bench stopped: a model failed, or a clip cannot be benched.
#[derive(Debug)]
pub enum ActionBenchError<E> {
    Model(E),
    Clip(String),
}

impl<E: std::fmt::Display> std::fmt::Display for ActionBenchError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActionBenchError::Model(e) => e.fmt(f),
            ActionBenchError::Clip(why) => f.write_str(why),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for ActionBenchError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ActionBenchError::Model(e) => Some(e),
            ActionBenchError::Clip(_) => None,
        }
    }
}

/// The first row (the action model) against another, clip by clip.
pub struct RowComparison {
    pub other: String,
    /// Clips on which the first row has the higher PSNR.
    pub won: usize,
    /// Clips on which the first row has the lower latent L2.
    pub won_latent: usize,
    pub matched: MatchedTrajectory,
}

impl ActionBenchResult {
    /// Each row's summary (PSNR, SSIM, trajectory error, objects found) and its mean latent L2.
    pub fn summaries(&self) -> Vec<(MethodSummary, f64)> {
        self.rows
            .iter()
            .zip(&self.scores)
            .zip(&self.latent_l2)
            .map(|((name, s), l)| (summarise(name, s), mean(l)))
            .collect()
    }

    /// The first row against every other.
    pub fn comparisons(&self) -> Vec<RowComparison> {
        let (Some(first), Some(first_l)) = (self.scores.first(), self.latent_l2.first()) else {
            return Vec::new();
        };
        self.rows
            .iter()
            .zip(&self.scores)
            .zip(&self.latent_l2)
            .skip(1)
            .map(|((name, s), l)| RowComparison {
                other: name.clone(),
                won: clips_won(first, s),
                won_latent: first_l.iter().zip(l).filter(|(a, b)| a < b).count(),
                matched: matched_trajectory(first, s),
            })
            .collect()
    }

    pub fn table(&self) -> String {
        markdown_table(&HEADERS, &self.table_rows())
    }

    fn table_rows(&self) -> Vec<Vec<String>> {
        self.summaries()
            .iter()
            .map(|(s, l)| {
                let mut cells = image_cells(s);
                cells.push(format!("{l:.4}"));
                cells.extend(object_cells(s));
                cells
            })
            .collect()
    }

    /// One sentence per comparison of the first row with another.
    pub fn comparison_lines(&self) -> Vec<String> {
        let first = self.rows.first().map_or("", String::as_str);
        let px = |e: Option<f64>| e.map_or_else(|| "-".to_owned(), |e| format!("{e:.2} px"));
        self.comparisons()
            .iter()
            .map(|c| {
                format!(
                    "{first} has the higher PSNR on {} and the lower latent L2 on {} of {} clips against {}; on \
                     the {} object-frames both find, trajectory error {} against {}",
                    c.won,
                    c.won_latent,
                    self.clips,
                    c.other,
                    c.matched.object_frames,
                    px(c.matched.error_a_px),
                    px(c.matched.error_b_px)
                )
            })
            .collect()
    }

    /// The bench's JSON: `header` (models, seed, sampling: what the caller knows) then the results.
    pub fn to_json(&self, header: Map<String, Value>) -> Value {
        let mut v = header;
        v.insert("clips".into(), json!(self.clips));
        v.insert("scored_from_frame".into(), json!(SCORED_FROM));
        let methods: Vec<Value> = self
            .summaries()
            .into_iter()
            .map(|(s, l)| {
                let mut m = serde_json::to_value(&s).unwrap_or(Value::Null);
                if let Value::Object(o) = &mut m {
                    o.insert("latent_l2".into(), json!(l));
                }
                m
            })
            .collect();
        v.insert("methods".into(), json!(methods));
        let per_row = |f: &dyn Fn(usize) -> Value| -> Value {
            self.rows
                .iter()
                .enumerate()
                .map(|(r, name)| (name.clone(), f(r)))
                .collect::<Map<_, _>>()
                .into()
        };
        v.insert(
            "clip_psnr".into(),
            per_row(&|r| {
                json!(self.scores[r]
                    .iter()
                    .map(ClipScore::capped_psnr)
                    .collect::<Vec<_>>())
            }),
        );
        v.insert(
            "clip_latent_l2".into(),
            per_row(&|r| json!(self.latent_l2[r])),
        );
        let comparisons: Map<String, Value> = self
            .comparisons()
            .into_iter()
            .map(|c| {
                (
                    c.other,
                    json!({"clips_won_psnr": c.won, "clips_won_latent_l2": c.won_latent,
                           "trajectory_matched": c.matched}),
                )
            })
            .collect();
        v.insert("first_row_against".into(), Value::Object(comparisons));
        v.insert(
            "seconds_per_clip".into(),
            json!(self
                .rows
                .iter()
                .zip(&self.seconds_per_clip)
                .map(|(n, s)| (n.clone(), json!(s)))
                .collect::<Map<_, _>>()),
        );
        Value::Object(v)
    }

    /// A self-contained HTML page: `about`, the table, the comparisons and the side-by-side GIFs.
    pub fn to_html(&self, about: &str) -> String {
        Report {
            title: "orrery action bench".into(),
            sections: vec![
                Section {
                    title:
                        "Held-out manipulation clips predicted from their first frame and actions"
                            .into(),
                    blocks: vec![
                        Block::Paragraph(about.to_owned()),
                        Block::Table {
                            headers: HEADERS.iter().map(|h| h.to_string()).collect(),
                            rows: self.table_rows(),
                        },
                        Block::Paragraph(self.comparison_lines().join(". ") + "."),
                        Block::Paragraph(FOUND_BY_COLOR_ABOUT.into()),
                        {
                            let summaries: Vec<MethodSummary> =
                                self.summaries().into_iter().map(|(s, _)| s).collect();
                            let (headers, rows) = found_by_color_table(&summaries, None);
                            Block::Table { headers, rows }
                        },
                    ],
                },
                Section {
                    title: "Real | each model | constant velocity".into(),
                    blocks: vec![Block::Gifs(self.gifs.clone())],
                },
            ],
        }
        .to_html()
    }
}

const HEADERS: [&str; 9] = [
    "method",
    "clips",
    "PSNR (dB)",
    "pooled PSNR (dB)",
    "median PSNR (dB)",
    "SSIM",
    "latent L2",
    "trajectory error (px)",
    "objects found",
];

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latent_l2_skips_the_conditioning_frame() {
        let real = vec![vec![0.0f32; 4], vec![1.0; 4], vec![2.0; 4]];
        let mut pred = real.clone();
        pred[0] = vec![9.0; 4];
        assert_eq!(latent_l2(&real, &pred), 0.0);
        pred[2] = vec![4.0; 4];
        // Differences 0 over frame 1 and 2 over frame 2: sqrt((0 + 4) / 2).
        assert!((latent_l2(&real, &pred) - 2f64.sqrt()).abs() < 1e-12);
    }
}

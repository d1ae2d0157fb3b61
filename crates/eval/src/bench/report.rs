//! What a bench reports: the table, the head-to-head comparisons, its JSON and its HTML page.

use serde_json::{json, Map, Value};

use super::method::Method;
use super::run::{BenchResult, OBSERVED_FRAMES};
use super::score::{
    clips_won, found_by_color_table, matched_trajectory, psnr_by_horizon, summarise, table,
    table_row, ClipScore, MatchedTrajectory, MethodSummary, FOUND_BY_COLOR_ABOUT, TABLE_HEADERS,
};
use crate::report::{Block, LinePlot, Report, Section};

/// A model row against a baseline, clip by clip.
#[derive(Debug, Clone)]
pub struct HeadToHead {
    pub model: Method,
    pub baseline: Method,
    /// Clips on which the model has the higher PSNR.
    pub won: usize,
    pub matched: MatchedTrajectory,
}

impl HeadToHead {
    /// `"A vs B"`, the key in the JSON.
    pub fn key(&self) -> String {
        format!("{} vs {}", self.model.name(), self.baseline.name())
    }
}

impl BenchResult {
    pub fn scores_of(&self, method: Method) -> &[ClipScore] {
        self.scores.get(&method).map_or(&[], Vec::as_slice)
    }

    /// The summary of each row, in table order.
    pub fn summaries(&self) -> Vec<MethodSummary> {
        self.rows
            .iter()
            .map(|&m| summarise(m.name(), self.scores_of(m)))
            .collect()
    }

    pub fn table(&self) -> String {
        table(&self.summaries())
    }

    pub fn head_to_head(&self) -> Vec<HeadToHead> {
        Method::head_to_head(&self.rows)
            .into_iter()
            .map(|(model, baseline)| HeadToHead {
                model,
                baseline,
                won: clips_won(self.scores_of(model), self.scores_of(baseline)),
                matched: matched_trajectory(self.scores_of(model), self.scores_of(baseline)),
            })
            .collect()
    }

    /// One sentence per head-to-head comparison.
    pub fn head_to_head_lines(&self) -> Vec<String> {
        let px = |e: Option<f64>| e.map_or_else(|| "-".to_owned(), |e| format!("{e:.2} px"));
        self.head_to_head()
            .iter()
            .map(|h| {
                format!(
                    "{} has the higher PSNR on {} of {} clips against {}; on the {} object-frames both find, \
                     trajectory error {} against {}",
                    h.model.name(),
                    h.won,
                    self.clips,
                    h.baseline.name(),
                    h.matched.object_frames,
                    px(h.matched.error_a_px),
                    px(h.matched.error_b_px)
                )
            })
            .collect()
    }

    pub fn text2world_line(&self) -> String {
        let t = &self.text2world;
        format!(
            "text2world: {} of {} captioned objects shown ({:.1}%), {} of {} captioned events ({:.1}%) in {} clips",
            t.shown(),
            t.objects(),
            100.0 * t.rate(),
            t.events_shown,
            t.events,
            100.0 * t.events_rate(),
            t.clips
        )
    }

    /// Mean wall-clock seconds of the model per clip in each mode (0 where the mode did not run).
    pub fn seconds_per_clip(&self) -> (f64, f64, f64) {
        let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
        let s = &self.seconds;
        (
            mean(&s.video2world),
            mean(&s.image2world),
            mean(&s.text2world),
        )
    }

    /// The median over clips of the model's seconds in each mode: unlike the mean, it leaves out the one-time
    /// cost of the first clip (fresh memory) whatever the clip count.
    pub fn median_seconds_per_clip(&self) -> (f64, f64, f64) {
        let s = &self.seconds;
        let median = |s: &[f64]| super::score::median(s.to_vec());
        (
            median(&s.video2world),
            median(&s.image2world),
            median(&s.text2world),
        )
    }

    pub fn seconds_line(&self) -> String {
        let (v, i, t) = self.seconds_per_clip();
        let (mv, mi, mt) = self.median_seconds_per_clip();
        format!(
            "model time per clip (mean / median): video2world {v:.3} / {mv:.3} s, image2world {i:.3} / {mi:.3} s, \
             text2world {t:.3} / {mt:.3} s"
        )
    }

    fn by_method(&self, per_method: impl Fn(&[ClipScore]) -> Vec<f64>) -> Value {
        self.rows
            .iter()
            .map(|&m| (m.name().to_owned(), json!(per_method(self.scores_of(m)))))
            .collect::<Map<_, _>>()
            .into()
    }

    /// Objects found by colour ([`found_by_color_table`]), then Text2World's objects shown where it ran.
    pub fn found_by_color_table(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let text2world = (self.text2world.objects() > 0).then(|| {
            (
                "text2world: captioned objects shown",
                self.text2world.rate_by_color(),
            )
        });
        found_by_color_table(&self.summaries(), text2world)
    }

    /// The bench's JSON: `header` (model, seed, sampling: what the caller knows) then the results.
    pub fn to_json(&self, header: Map<String, Value>) -> Value {
        let mut v = header;
        let h2h = self.head_to_head();
        let t = &self.text2world;
        v.insert("clips".into(), json!(self.clips));
        v.insert("observed_frames".into(), json!(OBSERVED_FRAMES));
        v.insert("methods".into(), json!(self.summaries()));
        // Each method's PSNR on each clip (capped as in the means), to see where a method wins or loses, and
        // its mean PSNR k frames ahead, to see whether it loses near the observed frames or far from them.
        v.insert(
            "clip_psnr".into(),
            self.by_method(|s| s.iter().map(ClipScore::capped_psnr).collect()),
        );
        v.insert("psnr_by_horizon".into(), self.by_method(psnr_by_horizon));
        let by_pair = |f: &dyn Fn(&HeadToHead) -> Value| -> Value {
            h2h.iter()
                .map(|h| (h.key(), f(h)))
                .collect::<Map<_, _>>()
                .into()
        };
        v.insert("clips_won".into(), by_pair(&|h| json!(h.won)));
        // Trajectory errors of model and baseline on the object-frames both find (`error_a_px` the model's).
        v.insert("trajectory_matched".into(), by_pair(&|h| json!(h.matched)));
        v.insert(
            "text2world".into(),
            json!({"clips": t.clips, "objects": t.objects(), "shown": t.shown(), "rate": t.rate(),
                "rate_by_color": t.rate_by_color(),
                "events": t.events, "events_shown": t.events_shown, "events_rate": t.events_rate()}),
        );
        let (v2w, i2w, t2w) = self.seconds_per_clip();
        v.insert(
            "seconds_per_clip".into(),
            json!({"video2world": v2w, "image2world": i2w, "text2world": t2w}),
        );
        let (v2w, i2w, t2w) = self.median_seconds_per_clip();
        v.insert(
            "median_seconds_per_clip".into(),
            json!({"video2world": v2w, "image2world": i2w, "text2world": t2w}),
        );
        let s = &self.seconds;
        v.insert(
            "clip_seconds".into(),
            json!({"video2world": s.video2world, "image2world": s.image2world, "text2world": s.text2world}),
        );
        Value::Object(v)
    }

    /// A self-contained HTML page: `about` (what was run), the table, the comparisons, PSNR by frames ahead and
    /// the side-by-side GIFs.
    pub fn to_html(&self, about: &str) -> String {
        let plotted = [
            Method::Video2WorldModel,
            Method::CopyLastFrame,
            Method::ConstantVelocity,
            Method::VaeRoundTrip,
            Method::Video2WorldDecoderOnly,
        ];
        let series = plotted
            .into_iter()
            .filter(|m| self.rows.contains(m))
            .map(|m| {
                let curve = psnr_by_horizon(self.scores_of(m));
                let points = curve
                    .iter()
                    .enumerate()
                    .map(|(k, p)| (k as f64 + 1.0, *p))
                    .collect();
                (
                    m.name().trim_start_matches("video2world: ").to_owned(),
                    points,
                )
            })
            .collect();
        Report {
            title: "orrery physics bench".into(),
            sections: vec![
                Section {
                    title: "Predictions of held-out physics clips".into(),
                    blocks: vec![
                        Block::Paragraph(about.to_owned()),
                        Block::Table {
                            headers: TABLE_HEADERS.iter().map(|h| h.to_string()).collect(),
                            rows: self.summaries().iter().map(table_row).collect(),
                        },
                        Block::Paragraph(self.head_to_head_lines().join(". ") + "."),
                        Block::Paragraph(format!(
                            "Text2World{}.",
                            &self.text2world_line()["text2world".len()..]
                        )),
                        Block::Paragraph(format!("{}.", self.seconds_line())),
                        Block::Paragraph(FOUND_BY_COLOR_ABOUT.into()),
                        {
                            let (headers, rows) = self.found_by_color_table();
                            Block::Table { headers, rows }
                        },
                        Block::Plot(LinePlot {
                            title: "Video2World: mean PSNR by frames ahead".into(),
                            x_label: "frames after the observed ones".into(),
                            y_label: "PSNR (dB)".into(),
                            series,
                        }),
                    ],
                },
                Section {
                    title: "Real and predicted".into(),
                    blocks: vec![Block::Gifs(self.gifs.clone())],
                },
            ],
        }
        .to_html()
    }
}

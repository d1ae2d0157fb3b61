//! What a policy evaluation reports: a table per world, the comparison between worlds (success-rate gaps and
//! Spearman's rank correlation), its JSON and its HTML page with side-by-side GIFs.

use orrery_media::{encode_gif, tile_clips};
use serde_json::{json, Value};

use super::run::{spearman, EvalOptions, WorldResult};
use crate::report::{Block, Report, Section};

const HEADERS: [&str; 5] = [
    "policy",
    "success rate",
    "completion (s)",
    "effort (m²/s)",
    "state success rate",
];

fn rows(world: &WorldResult) -> Vec<Vec<String>> {
    world
        .summaries
        .iter()
        .map(|s| {
            vec![
                s.policy.name().to_owned(),
                format!("{:.1}%", 100.0 * s.success_rate),
                s.mean_completion_seconds
                    .map_or("-".into(), |t| format!("{t:.2}")),
                format!("{:.3}", s.mean_effort),
                s.state_success_rate
                    .map_or("-".into(), |r| format!("{:.1}%", 100.0 * r)),
            ]
        })
        .collect()
}

/// A plain-text table of one world's summaries.
pub fn table(world: &WorldResult) -> String {
    let mut all = vec![HEADERS.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    all.extend(rows(world));
    let widths: Vec<usize> = (0..HEADERS.len())
        .map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!("{}\n", world.world);
    for r in &all {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The first world (the simulator) against each other: Spearman's rank correlation of the policies' success
/// rates and the largest gap between them.
pub fn comparisons(worlds: &[WorldResult]) -> Vec<Value> {
    let Some((sim, others)) = worlds.split_first() else {
        return Vec::new();
    };
    others
        .iter()
        .map(|w| {
            let (a, b) = (sim.success_rates(), w.success_rates());
            let gap = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            json!({"reference": sim.world, "world": w.world, "spearman": spearman(&a, &b),
                   "max_success_rate_gap": gap})
        })
        .collect()
}

/// One sentence per comparison.
pub fn comparison_lines(worlds: &[WorldResult]) -> Vec<String> {
    comparisons(worlds)
        .iter()
        .map(|c| {
            format!(
                "{} against {}: Spearman rank correlation of success rates {}, largest success-rate gap {:.1} points",
                c["world"].as_str().unwrap_or(""),
                c["reference"].as_str().unwrap_or(""),
                c["spearman"]
                    .as_f64()
                    .map_or("undefined (a constant side)".into(), |r| format!("{r:.3}")),
                100.0 * c["max_success_rate_gap"].as_f64().unwrap_or(0.0)
            )
        })
        .collect()
}

/// The evaluation's JSON: the settings, each world's summaries and episodes, and the comparisons.
pub fn to_json(options: &EvalOptions, worlds: &[WorldResult]) -> Value {
    json!({
        "task": options.task.name(),
        "policies": options.policies.iter().map(|p| p.name()).collect::<Vec<_>>(),
        "episodes": options.episodes,
        "seed": options.seed,
        "frames": options.frames,
        "fps": options.fps,
        "size": [options.width, options.height],
        "worlds": worlds,
        "comparisons": comparisons(worlds),
    })
}

/// Side-by-side GIFs of the kept episodes: one column per policy, one row per world.
pub fn gifs(options: &EvalOptions, worlds: &[WorldResult]) -> Vec<(String, Vec<u8>)> {
    let names = |v: Vec<String>| v.join(" | ");
    let columns = names(options.policies.iter().map(|p| p.name().into()).collect());
    let rows_named = names(worlds.iter().map(|w| w.world.clone()).collect());
    (0..options.keep_frames.min(options.episodes))
        .filter_map(|e| {
            let rows: Vec<Vec<&[orrery_media::RgbImage]>> = worlds
                .iter()
                .map(|w| {
                    options
                        .policies
                        .iter()
                        .filter_map(|&p| w.outcome(p, e)?.frames.as_deref())
                        .collect()
                })
                .collect();
            let tiled = tile_clips(&rows, options.width, options.height);
            let gif = encode_gif(&tiled, options.fps as f64).ok()?;
            let verdicts = worlds
                .iter()
                .map(|w| {
                    options
                        .policies
                        .iter()
                        .map(|&p| match w.outcome(p, e) {
                            Some(o) if o.success => "✓",
                            _ => "✗",
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect::<Vec<_>>()
                .join(" / ");
            Some((
                format!("episode {e}: {columns} (rows: {rows_named}); success {verdicts}"),
                gif,
            ))
        })
        .collect()
}

/// A self-contained HTML page: what was run, a table per world, the comparisons and the GIFs.
pub fn to_html(options: &EvalOptions, worlds: &[WorldResult], about: &str) -> String {
    let mut blocks = vec![Block::Paragraph(about.to_owned())];
    for w in worlds {
        blocks.push(Block::Paragraph(format!(
            "{} ({} episodes per policy, {:.1} s):",
            w.world, options.episodes, w.seconds
        )));
        blocks.push(Block::Table {
            headers: HEADERS.iter().map(|h| h.to_string()).collect(),
            rows: rows(w),
        });
    }
    let lines = comparison_lines(worlds);
    if !lines.is_empty() {
        blocks.push(Block::Paragraph(lines.join(". ") + "."));
    }
    Report {
        title: format!("orrery policy evaluation: {}", options.task.name()),
        sections: vec![
            Section {
                title: "Success rate, completion time and effort".into(),
                blocks,
            },
            Section {
                title: "Episodes side by side".into(),
                blocks: vec![Block::Gifs(gifs(options, worlds))],
            },
        ],
    }
    .to_html()
}

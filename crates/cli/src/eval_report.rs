//! The HTML report of `orrery eval`: summary and per-video tables, PSNR over time, real | generated | motion GIFs.

use anyhow::Result;
use orrery_eval::motion::Mask;
use orrery_eval::report::{Block, LinePlot, Report, Section};
use orrery_media::{encode_gif, tile_clips, Rgb, RgbImage, Video};
use serde_json::Value;

use crate::eval_cmd::EvalArgs;

/// One colour per mask pixel: red real only, green generated only, yellow both.
pub fn mask_overlay(real: &Mask, generated: &Mask) -> RgbImage {
    RgbImage::from_fn(real.width as u32, real.height as u32, |x, y| {
        let i = y as usize * real.width + x as usize;
        match (real.moving[i], generated.moving[i]) {
            (true, true) => Rgb([240, 220, 40]),
            (true, false) => Rgb([220, 50, 50]),
            (false, true) => Rgb([50, 200, 80]),
            (false, false) => Rgb([20, 20, 20]),
        }
    })
}

fn fmt_opt(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

#[allow(clippy::too_many_arguments)]
pub fn build_report(
    args: &EvalArgs,
    names: &[String],
    real: &[Video],
    generated: &[Video],
    per_video: &[Value],
    summary: &serde_json::Map<String, Value>,
    masks: &[Vec<RgbImage>],
) -> Result<Report> {
    let summary_rows: Vec<Vec<String>> = summary
        .iter()
        .map(|(k, v)| {
            let digits = if k.ends_with("frames") || k.ends_with("clips") {
                0
            } else {
                4
            };
            vec![k.clone(), fmt_opt(v, digits)]
        })
        .collect();
    let headers = [
        "video",
        "frames",
        "PSNR (dB)",
        "SSIM",
        "spatial IoU",
        "spatiotemporal IoU",
        "weighted spatial IoU",
        "MSE",
    ];
    let rows: Vec<Vec<String>> = per_video
        .iter()
        .map(|v| {
            let m = &v["motion"];
            vec![
                v["name"].as_str().unwrap_or("").to_owned(),
                v["frames"].to_string(),
                fmt_opt(&v["psnr"], 2),
                fmt_opt(&v["ssim"], 4),
                fmt_opt(&m["spatial_iou"], 4),
                fmt_opt(&m["spatiotemporal_iou"], 4),
                fmt_opt(&m["weighted_spatial_iou"], 4),
                fmt_opt(&m["mse"], 5),
            ]
        })
        .collect();
    let mut sections = vec![
        Section {
            title: "Summary".into(),
            blocks: vec![
                Block::Paragraph(format!(
                    "{} generated videos ({}) against real videos ({}).",
                    names.len(),
                    args.generated.display(),
                    args.real.display()
                )),
                Block::Table {
                    headers: vec!["metric".into(), "value".into()],
                    rows: summary_rows,
                },
            ],
        },
        Section {
            title: "Per video".into(),
            blocks: vec![Block::Table {
                headers: headers.iter().map(|h| h.to_string()).collect(),
                rows,
            }],
        },
    ];
    let curves: Vec<(String, Vec<(f64, f64)>)> = per_video
        .iter()
        .take(6)
        .filter_map(|v| {
            let values = v["psnr_per_frame"].as_array()?;
            let pts = values
                .iter()
                .enumerate()
                .filter_map(|(k, p)| Some((k as f64, p.as_f64()?)))
                .collect();
            Some((v["name"].as_str().unwrap_or("").to_owned(), pts))
        })
        .collect();
    if !curves.is_empty() {
        sections.push(Section {
            title: "PSNR over time".into(),
            blocks: vec![Block::Plot(LinePlot {
                title: "PSNR per frame (first videos)".into(),
                x_label: "frame".into(),
                y_label: "PSNR (dB)".into(),
                series: curves,
            })],
        });
    }
    let mut gifs = Vec::new();
    for i in 0..names.len().min(args.gifs) {
        let (r, g) = (&real[i], &generated[i]);
        let (w, h) = r.frames[0].dimensions();
        let mut row: Vec<&[RgbImage]> = vec![&r.frames, &g.frames];
        if let Some(m) = masks.get(i) {
            row.push(m);
        }
        let tiled = tile_clips(&[row], w, h);
        let fps = r.fps.clamp(1.0, 50.0);
        gifs.push((
            format!(
                "{}: real | generated{}",
                names[i],
                if masks.get(i).is_some() {
                    " | motion (red real, green generated, yellow both)"
                } else {
                    ""
                }
            ),
            encode_gif(&tiled, fps)?,
        ));
    }
    if !gifs.is_empty() {
        sections.push(Section {
            title: "Real and generated".into(),
            blocks: vec![Block::Gifs(gifs)],
        });
    }
    Ok(Report {
        title: "orrery evaluation".into(),
        sections,
    })
}

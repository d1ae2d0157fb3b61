//! Loss curves as PNG: raw losses in light grey, a smoothed curve in blue, log-scaled loss axis, and the axis
//! ranges printed with a small built-in digit font (no font files needed).

use std::path::Path;

use tiny_skia::{Color, Paint, PathBuilder, Pixmap, Rect, Stroke, Transform};

use crate::error::{Result, TrainError};
use crate::trainer::session::LossPoint;

const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;
const MARGIN: f32 = 48.0;

/// 3x5 glyphs, rows top to bottom, 3 bits each (MSB left).
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 2, 2],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        'e' => [7, 4, 6, 4, 7],
        _ => return None,
    })
}

fn draw_text(pixmap: &mut Pixmap, text: &str, x: f32, y: f32, scale: f32) {
    let mut paint = Paint::default();
    paint.set_color(Color::from_rgba8(40, 40, 40, 255));
    for (i, c) in text.chars().enumerate() {
        let Some(rows) = glyph(c) else { continue };
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    let px = x + (i as f32 * 4.0 + col as f32) * scale;
                    let py = y + r as f32 * scale;
                    if let Some(rect) = Rect::from_xywh(px, py, scale, scale) {
                        pixmap.fill_rect(rect, &paint, Transform::identity(), None);
                    }
                }
            }
        }
    }
}

fn stroke(pixmap: &mut Pixmap, points: &[(f32, f32)], color: Color, width: f32) {
    let mut pb = PathBuilder::new();
    for (i, &(x, y)) in points.iter().enumerate() {
        if i == 0 {
            pb.move_to(x, y);
        } else {
            pb.line_to(x, y);
        }
    }
    if points.len() == 1 {
        pb.line_to(points[0].0 + 0.5, points[0].1);
    }
    let Some(path) = pb.finish() else { return };
    let mut paint = Paint::default();
    paint.set_color(color);
    paint.anti_alias = true;
    let stroke = Stroke {
        width,
        ..Stroke::default()
    };
    pixmap.stroke_path(&path, &paint, &stroke, Transform::identity(), None);
}

/// Exponential moving average of the losses (weight 0.98, bias-corrected).
pub fn smoothed(losses: &[f32]) -> Vec<f32> {
    let mut avg = 0.0f64;
    losses
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            avg = 0.98 * avg + 0.02 * l as f64;
            (avg / (1.0 - 0.98f64.powi(i as i32 + 1))) as f32
        })
        .collect()
}

/// Draws the curve of `history` to `path` (PNG, written atomically), losses on a log scale.
pub fn write_loss_plot(path: &Path, history: &[LossPoint]) -> Result<()> {
    let points: Vec<(usize, f32)> = history
        .iter()
        .map(|p| (p.step, p.loss.max(1e-12)))
        .collect();
    write_curve_plot(path, &points, true)
}

/// Draws `(step, value)` points and their smoothed curve to `path` (PNG, written atomically), on a log scale
/// (positive values) or a linear one.
pub fn write_curve_plot(path: &Path, points: &[(usize, f32)], log_scale: bool) -> Result<()> {
    let mut pixmap = Pixmap::new(WIDTH, HEIGHT).expect("fixed size");
    pixmap.fill(Color::WHITE);
    let frame = [
        (MARGIN, MARGIN / 2.0),
        (MARGIN, HEIGHT as f32 - MARGIN),
        (WIDTH as f32 - MARGIN / 2.0, HEIGHT as f32 - MARGIN),
    ];
    stroke(&mut pixmap, &frame, Color::from_rgba8(0, 0, 0, 255), 1.0);
    let axis = |v: f32| if log_scale { v.log10() } else { v };
    let losses: Vec<f32> = points.iter().map(|p| p.1).collect();
    if !losses.is_empty() {
        let (lo, hi) = losses
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &l| (a.min(l), b.max(l)));
        let (llo, lhi) = (axis(lo), axis(hi).max(axis(lo) + 1e-3));
        let (x0, x1) = (MARGIN, WIDTH as f32 - MARGIN / 2.0);
        let (y0, y1) = (HEIGHT as f32 - MARGIN, MARGIN / 2.0);
        let n = losses.len().max(2) - 1;
        let to_xy = |i: usize, l: f32| {
            let fx = i as f32 / n as f32;
            let fy = (axis(l) - llo) / (lhi - llo);
            (x0 + fx * (x1 - x0), y0 + fy * (y1 - y0))
        };
        let raw: Vec<(f32, f32)> = losses
            .iter()
            .enumerate()
            .map(|(i, &l)| to_xy(i, l))
            .collect();
        stroke(
            &mut pixmap,
            &raw,
            Color::from_rgba8(190, 190, 190, 255),
            1.0,
        );
        let smooth: Vec<(f32, f32)> = smoothed(&losses)
            .iter()
            .enumerate()
            .map(|(i, &l)| to_xy(i, l))
            .collect();
        stroke(
            &mut pixmap,
            &smooth,
            Color::from_rgba8(30, 90, 200, 255),
            2.0,
        );
        draw_text(&mut pixmap, &format!("{hi:.3e}"), 4.0, y1, 2.0);
        draw_text(&mut pixmap, &format!("{lo:.3e}"), 4.0, y0 - 10.0, 2.0);
        let last = points.last().map_or(0, |p| p.0);
        draw_text(&mut pixmap, &points[0].0.to_string(), x0, y0 + 8.0, 2.0);
        let label = last.to_string();
        draw_text(
            &mut pixmap,
            &label,
            x1 - label.len() as f32 * 8.0,
            y0 + 8.0,
            2.0,
        );
    }
    // Opaque everywhere, so the premultiplied RGBA is plain RGBA.
    let img =
        image::RgbaImage::from_raw(WIDTH, HEIGHT, pixmap.data().to_vec()).expect("fixed size");
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| TrainError::Data(format!("encoding the plot {}: {e}", path.display())))?;
    crate::trainer::session::write_file(path, &png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_is_a_png_with_the_curve() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        let history: Vec<LossPoint> = (1..=50)
            .map(|s| LossPoint {
                step: s,
                loss: 1.0 / s as f32,
                lr: 1e-3,
                grad_norm: 1.0,
            })
            .collect();
        write_loss_plot(&path, &history).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        let blue = img.pixels().filter(|p| p[2] > 150 && p[0] < 100).count();
        assert!(blue > 200, "{blue} curve pixels");
        let s = smoothed(&[2.0, 2.0, 2.0]);
        assert!(s.iter().all(|v| (v - 2.0).abs() < 1e-5));
    }
}

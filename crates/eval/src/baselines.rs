//! Prediction baselines that see only the observed frames, as a model does.

use std::collections::HashMap;

use orrery_media::{Rgb, RgbImage};

use crate::track::{locate, matches};

/// The last observed frame, repeated `n` times.
pub fn copy_last_frame(observed: &[RgbImage], n: usize) -> Vec<RgbImage> {
    let last = observed.last().expect("at least one observed frame");
    vec![last.clone(); n]
}

/// The most frequent colour of a frame (the plain background of a physics world).
pub fn dominant_color(frame: &RgbImage) -> Rgb<u8> {
    let mut counts: HashMap<[u8; 3], usize> = HashMap::new();
    for p in frame.pixels() {
        *counts.entry(p.0).or_default() += 1;
    }
    let best = counts
        .into_iter()
        .max_by_key(|(c, n)| (*n, *c))
        .map(|(c, _)| c)
        .unwrap_or([0, 0, 0]);
    Rgb(best)
}

/// Each object (by colour) found in the last two observed frames keeps moving at the image velocity between
/// them: its pixels in the last frame are cut out (filled with the background colour) and pasted shifted by
/// `k v` in predicted frame k. Objects not found in both frames stay where they are.
pub fn constant_velocity(observed: &[RgbImage], colors: &[[u8; 3]], n: usize) -> Vec<RgbImage> {
    let last = observed.last().expect("at least one observed frame");
    let (w, h) = last.dimensions();
    let moving: Vec<([u8; 3], [f64; 2])> = colors
        .iter()
        .filter_map(|&rgb| {
            let prev = observed.get(observed.len().checked_sub(2)?)?;
            let (a, _) = locate(prev, rgb)?;
            let (b, _) = locate(last, rgb)?;
            Some((rgb, [b[0] - a[0], b[1] - a[1]]))
        })
        .collect();
    let background = dominant_color(last);
    let mut base = last.clone();
    for p in base.pixels_mut() {
        if moving.iter().any(|(rgb, _)| matches(p, *rgb)) {
            *p = background;
        }
    }
    (1..=n)
        .map(|k| {
            let mut frame = base.clone();
            for (rgb, v) in &moving {
                let (dx, dy) = (
                    (v[0] * k as f64).round() as i64,
                    (v[1] * k as f64).round() as i64,
                );
                for (x, y, p) in last.enumerate_pixels() {
                    if matches(p, *rgb) {
                        let (tx, ty) = (x as i64 + dx, y as i64 + dy);
                        if tx >= 0 && ty >= 0 && tx < w as i64 && ty < h as i64 {
                            frame.put_pixel(tx as u32, ty as u32, *p);
                        }
                    }
                }
            }
            frame
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(x: u32) -> RgbImage {
        let mut img = RgbImage::from_pixel(32, 16, Rgb([240, 240, 240]));
        for y in 6..9 {
            for dx in 0..3 {
                img.put_pixel(x + dx, y, Rgb([200, 20, 20]));
            }
        }
        img
    }

    #[test]
    fn extrapolates_a_moving_dot() {
        let observed = [dot(2), dot(5)];
        let pred = constant_velocity(&observed, &[[200, 20, 20]], 3);
        for (k, frame) in pred.iter().enumerate() {
            assert_eq!(frame, &dot(5 + 3 * (k as u32 + 1)), "frame {k}");
        }
        let copy = copy_last_frame(&observed, 2);
        assert_eq!(copy, vec![dot(5), dot(5)]);
    }
}

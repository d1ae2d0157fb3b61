//! Locating the objects of a physics world in frames by colour: every object of a scene has a distinct flat
//! colour, so its visible pixels are those close to that colour, and their centroid is its image position.

use orrery_media::{Rgb, RgbImage};

/// Pixels whose colour is within this Euclidean distance (8-bit units) belong to the object.
pub const COLOR_TOLERANCE: f64 = 40.0;
/// Fewer matching pixels than this: the object is not visible.
pub const MIN_PIXELS: usize = 3;

/// Whether pixel `p` has the colour `rgb` (within [`COLOR_TOLERANCE`]).
pub fn matches(p: &Rgb<u8>, rgb: [u8; 3]) -> bool {
    let d2: f64 = (0..3)
        .map(|c| {
            let d = p[c] as f64 - rgb[c] as f64;
            d * d
        })
        .sum();
    d2 <= COLOR_TOLERANCE * COLOR_TOLERANCE
}

/// Centroid (x, y) in pixels (pixel centres at +0.5) of the pixels of colour `rgb`, with their count; `None`
/// when fewer than [`MIN_PIXELS`] match.
pub fn locate(frame: &RgbImage, rgb: [u8; 3]) -> Option<([f64; 2], usize)> {
    let (mut sx, mut sy, mut n) = (0.0, 0.0, 0usize);
    for (x, y, p) in frame.enumerate_pixels() {
        if matches(p, rgb) {
            sx += x as f64 + 0.5;
            sy += y as f64 + 0.5;
            n += 1;
        }
    }
    (n >= MIN_PIXELS).then(|| ([sx / n as f64, sy / n as f64], n))
}

/// Per-frame centroids of colour `rgb`.
pub fn track(frames: &[RgbImage], rgb: [u8; 3]) -> Vec<Option<[f64; 2]>> {
    frames
        .iter()
        .map(|f| locate(f, rgb).map(|(c, _)| c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use orrery_media::Rgb;

    #[test]
    fn finds_a_square_and_ignores_other_colours() {
        let mut img = RgbImage::from_pixel(20, 20, Rgb([200, 200, 200]));
        for y in 4..8 {
            for x in 10..14 {
                img.put_pixel(x, y, Rgb([220, 30, 30]));
            }
        }
        let (c, n) = locate(&img, [230, 40, 35]).unwrap();
        assert_eq!(n, 16);
        assert!((c[0] - 12.0).abs() < 1e-9 && (c[1] - 6.0).abs() < 1e-9);
        assert!(locate(&img, [30, 30, 220]).is_none());
    }
}

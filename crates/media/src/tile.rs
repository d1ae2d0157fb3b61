//! Several clips shown side by side in one video: contact sheets of samples, real beside generated.

use image::RgbImage;

/// Frames of several clips per row, tiled into one video of rows x columns cells of `w` x `h` pixels. Shorter
/// clips hold their last frame; frames are placed at the cell's top-left corner as they are.
pub fn tile_clips(rows: &[Vec<&[RgbImage]>], w: u32, h: u32) -> Vec<RgbImage> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let frames = rows.iter().flatten().map(|c| c.len()).max().unwrap_or(0);
    (0..frames)
        .map(|f| {
            let mut img = RgbImage::new(cols * w, rows.len() as u32 * h);
            for (r, row) in rows.iter().enumerate() {
                for (c, clip) in row.iter().enumerate() {
                    if let Some(frame) = clip.get(f.min(clip.len().saturating_sub(1))) {
                        image::imageops::replace(
                            &mut img,
                            frame,
                            (c as u32 * w) as i64,
                            (r as u32 * h) as i64,
                        );
                    }
                }
            }
            img
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn clips_land_in_their_cells_and_short_ones_hold_their_last_frame() {
        let red = [
            RgbImage::from_pixel(2, 2, Rgb([255, 0, 0])),
            RgbImage::from_pixel(2, 2, Rgb([255, 0, 0])),
            RgbImage::from_pixel(2, 2, Rgb([255, 0, 0])),
        ];
        let blue = [RgbImage::from_pixel(2, 2, Rgb([0, 0, 255]))];
        let out = tile_clips(&[vec![&red[..], &blue[..]]], 2, 2);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].dimensions(), (4, 2));
        assert_eq!(out[2].get_pixel(0, 0), &Rgb([255, 0, 0]));
        assert_eq!(out[2].get_pixel(3, 1), &Rgb([0, 0, 255]));
    }
}

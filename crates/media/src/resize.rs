//! Resizing as the reference prepares its inputs: torchvision's antialiased bilinear resize of uint8 images
//! (Pillow's separable triangle filter with fixed-point weights, horizontal pass first, rounded to uint8 between
//! passes), resize-to-cover and centre crop.

use image::RgbImage;

use crate::error::{MediaError, Result};

/// Fixed-point precision of the filter weights (Pillow's `PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first input index and fixed-point weights.
struct Coefficients {
    bounds: Vec<(usize, usize)>,
    weights: Vec<Vec<i32>>,
}

/// Pillow's `precompute_coeffs` with the bilinear (triangle) filter, support widened by the downscale factor.
fn coefficients(in_size: usize, out_size: usize) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale;
    // Pillow multiplies by the reciprocal; dividing instead changes the last bit of some weights.
    let inv_scale = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin);
        let mut k: Vec<f64> = (0..count)
            .map(|x| {
                let t = ((x + xmin) as f64 - center + 0.5) * inv_scale;
                (1.0 - t.abs()).max(0.0)
            })
            .collect();
        let total: f64 = k.iter().sum();
        if total != 0.0 {
            k.iter_mut().for_each(|w| *w /= total);
        }
        let one = (1u32 << PRECISION_BITS) as f64;
        let fixed = k
            .iter()
            .map(|&w| {
                if w < 0.0 {
                    (-0.5 + w * one) as i32
                } else {
                    (0.5 + w * one) as i32
                }
            })
            .collect();
        bounds.push((xmin, count));
        weights.push(fixed);
    }
    Coefficients { bounds, weights }
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

#[derive(Clone, Copy, PartialEq)]
enum Axis {
    Horizontal,
    Vertical,
}

/// One separable pass: resamples `src` along `axis` to `out_len` pixels, rounding to uint8 (as Pillow does
/// between its passes).
fn resample(src: &RgbImage, axis: Axis, out_len: u32) -> RgbImage {
    let (w, h) = src.dimensions();
    let (in_len, out_w, out_h) = match axis {
        Axis::Horizontal => (w, out_len, h),
        Axis::Vertical => (h, w, out_len),
    };
    let coeffs = coefficients(in_len as usize, out_len as usize);
    let mut out = RgbImage::new(out_w, out_h);
    let src_raw = src.as_raw();
    let (row, out_row) = (w as usize * 3, out_w as usize * 3);
    // Byte offset of (position along the axis, position across it, channel) in the source.
    let at = |along: usize, across: usize, c: usize| match axis {
        Axis::Horizontal => across * row + along * 3 + c,
        Axis::Vertical => along * row + across * 3 + c,
    };
    let across_len = match axis {
        Axis::Horizontal => h as usize,
        Axis::Vertical => w as usize,
    };
    let out_raw: &mut [u8] = &mut out;
    for across in 0..across_len {
        for (i, ((start, count), k)) in coeffs.bounds.iter().zip(&coeffs.weights).enumerate() {
            for c in 0..3 {
                let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                for (j, &wgt) in k.iter().enumerate().take(*count) {
                    acc += src_raw[at(start + j, across, c)] as i64 * wgt as i64;
                }
                let dst = match axis {
                    Axis::Horizontal => across * out_row + i * 3 + c,
                    Axis::Vertical => i * out_row + across * 3 + c,
                };
                out_raw[dst] = clip8(acc);
            }
        }
    }
    out
}

fn check_sizes(src: &RgbImage, width: u32, height: u32) -> Result<()> {
    if width == 0 || height == 0 || src.width() == 0 || src.height() == 0 {
        return Err(MediaError::invalid(
            "resize",
            format!(
                "{}x{} -> {width}x{height}: sizes must be positive",
                src.width(),
                src.height()
            ),
        ));
    }
    Ok(())
}

/// Antialiased bilinear resize to `width` x `height`, as Pillow's `Image.resize(BILINEAR)` and torchvision's
/// `resize(antialias=True)` on uint8 compute it.
pub fn resize_bilinear_antialias(src: &RgbImage, width: u32, height: u32) -> Result<RgbImage> {
    check_sizes(src, width, height)?;
    let horizontal = if width != src.width() {
        resample(src, Axis::Horizontal, width)
    } else {
        src.clone()
    };
    Ok(if height != horizontal.height() {
        resample(&horizontal, Axis::Vertical, height)
    } else {
        horizontal
    })
}

/// Python's `round()` (half to even), which torchvision's `center_crop` uses for its offsets.
fn round_half_even(x: f64) -> i64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        (r - x.signum()) as i64
    } else {
        r as i64
    }
}

/// torchvision's `center_crop` for a crop no larger than the image.
pub fn center_crop(src: &RgbImage, width: u32, height: u32) -> Result<RgbImage> {
    if width > src.width() || height > src.height() || width == 0 || height == 0 {
        return Err(MediaError::invalid(
            "crop",
            format!(
                "{width}x{height} out of a {}x{} image",
                src.width(),
                src.height()
            ),
        ));
    }
    let top = round_half_even((src.height() - height) as f64 / 2.0) as u32;
    let left = round_half_even((src.width() - width) as f64 / 2.0) as u32;
    Ok(image::imageops::crop_imm(src, left, top, width, height).to_image())
}

/// The size an image is resized to before cropping: the smallest that covers the target, keeping the aspect
/// ratio (`ceil(ratio * side)` as the reference's `resize_input` computes it).
pub fn cover_size(src_w: u32, src_h: u32, width: u32, height: u32) -> (u32, u32) {
    let ratio = (width as f64 / src_w as f64).max(height as f64 / src_h as f64);
    (
        (ratio * src_w as f64).ceil() as u32,
        (ratio * src_h as f64).ceil() as u32,
    )
}

/// The reference's `resize_input`: resize to cover `width` x `height` keeping the aspect ratio, then centre-crop.
pub fn resize_to_cover_and_crop(src: &RgbImage, width: u32, height: u32) -> Result<RgbImage> {
    check_sizes(src, width, height)?;
    let (cover_w, cover_h) = cover_size(src.width(), src.height(), width, height);
    let resized = resize_bilinear_antialias(src, cover_w, cover_h)?;
    center_crop(&resized, width, height)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_rounding() {
        assert_eq!(round_half_even(0.5), 0);
        assert_eq!(round_half_even(1.5), 2);
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(2.4), 2);
        assert_eq!(round_half_even(2.6), 3);
    }

    #[test]
    fn same_size_is_identity_and_constant_stays_constant() {
        let img = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 7]));
        assert_eq!(resize_bilinear_antialias(&img, 7, 5).unwrap(), img);
        let flat = RgbImage::from_pixel(13, 9, image::Rgb([200, 10, 77]));
        let out = resize_bilinear_antialias(&flat, 5, 17).unwrap();
        assert!(out.pixels().all(|p| p.0 == [200, 10, 77]));
    }

    #[test]
    fn cover_then_crop_sizes() {
        assert_eq!(cover_size(1280, 720, 1280, 704), (1280, 720));
        assert_eq!(cover_size(640, 480, 1280, 704), (1280, 960));
        let img = RgbImage::new(64, 48);
        assert_eq!(
            resize_to_cover_and_crop(&img, 32, 32).unwrap().dimensions(),
            (32, 32)
        );
        assert!(center_crop(&img, 65, 10).is_err());
        assert!(resize_bilinear_antialias(&img, 0, 10).is_err());
    }
}

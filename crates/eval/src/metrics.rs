//! PSNR and SSIM of 8-bit RGB frames.
//!
//! SSIM follows Wang et al. 2004 as scikit-image computes it with `gaussian_weights=True, sigma=1.5,
//! use_sample_covariance=False, data_range=255`: an 11x11 Gaussian window (truncated at 3.5 sigma, radius 5),
//! K1 = 0.01, K2 = 0.03, per channel, averaged over the pixels at least 5 from the border, then over channels.

use orrery_media::RgbImage;

/// PSNR given to an exact prediction (infinite otherwise) wherever PSNRs are averaged.
pub const PSNR_CAP_DB: f64 = 100.0;

/// PSNR in dB of two frames of equal size (infinite when identical).
pub fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    psnr_of_mse(mse(a, b))
}

/// PSNR in dB of a mean squared error in 8-bit units (infinite for 0).
pub fn psnr_of_mse(mse: f64) -> f64 {
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// Mean squared error over all channels, in 8-bit units.
pub fn mse(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions(), "frames of different sizes");
    let n = a.as_raw().len() as f64;
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| {
            let d = *x as f64 - *y as f64;
            d * d
        })
        .sum::<f64>()
        / n
}

/// PSNR of a video: of the mean MSE over its frames (the convention of video prediction benchmarks).
pub fn video_psnr(a: &[RgbImage], b: &[RgbImage]) -> f64 {
    psnr_of_mse(video_mse(a, b))
}

/// Mean over frames of their mean squared error, in 8-bit units.
pub fn video_mse(a: &[RgbImage], b: &[RgbImage]) -> f64 {
    assert_eq!(a.len(), b.len(), "videos of different lengths");
    a.iter().zip(b).map(|(x, y)| mse(x, y)).sum::<f64>() / a.len().max(1) as f64
}

const RADIUS: usize = 5;

fn gaussian_kernel() -> [f64; 2 * RADIUS + 1] {
    let mut k = [0.0; 2 * RADIUS + 1];
    for (i, v) in k.iter_mut().enumerate() {
        let x = i as f64 - RADIUS as f64;
        *v = (-x * x / (2.0 * 1.5 * 1.5)).exp();
    }
    let s: f64 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    k
}

/// Separable Gaussian filter over the valid region (output (h - 10) x (w - 10)).
fn filter(img: &[f64], w: usize, h: usize, k: &[f64]) -> Vec<f64> {
    let (ow, oh) = (w - 2 * RADIUS, h - 2 * RADIUS);
    let mut rows = vec![0.0; ow * h];
    for y in 0..h {
        for x in 0..ow {
            rows[y * ow + x] = (0..k.len()).map(|i| k[i] * img[y * w + x + i]).sum();
        }
    }
    let mut out = vec![0.0; ow * oh];
    for y in 0..oh {
        for x in 0..ow {
            out[y * ow + x] = (0..k.len()).map(|i| k[i] * rows[(y + i) * ow + x]).sum();
        }
    }
    out
}

/// Mean SSIM of two RGB frames (at least 11 x 11).
pub fn ssim(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions(), "frames of different sizes");
    let (w, h) = (a.width() as usize, a.height() as usize);
    assert!(
        w > 2 * RADIUS && h > 2 * RADIUS,
        "SSIM needs frames of at least 11x11"
    );
    let k = gaussian_kernel();
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let mut total = 0.0;
    for c in 0..3 {
        let x: Vec<f64> = a.pixels().map(|p| p[c] as f64).collect();
        let y: Vec<f64> = b.pixels().map(|p| p[c] as f64).collect();
        let xx: Vec<f64> = x.iter().map(|v| v * v).collect();
        let yy: Vec<f64> = y.iter().map(|v| v * v).collect();
        let xy: Vec<f64> = x.iter().zip(&y).map(|(p, q)| p * q).collect();
        let (mx, my) = (filter(&x, w, h, &k), filter(&y, w, h, &k));
        let (sxx, syy, sxy) = (
            filter(&xx, w, h, &k),
            filter(&yy, w, h, &k),
            filter(&xy, w, h, &k),
        );
        let n = mx.len();
        let mut sum = 0.0;
        for i in 0..n {
            let (ux, uy) = (mx[i], my[i]);
            let (vx, vy, cov) = (sxx[i] - ux * ux, syy[i] - uy * uy, sxy[i] - ux * uy);
            sum += ((2.0 * ux * uy + c1) * (2.0 * cov + c2))
                / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
        }
        total += sum / n as f64;
    }
    total / 3.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use orrery_media::Rgb;

    fn gradient(w: u32, h: u32, shift: u8) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                (x * 7 + y) as u8,
                (y * 5) as u8 ^ shift,
                ((x * y) % 251) as u8,
            ])
        })
    }

    #[test]
    fn identical_frames_are_perfect() {
        let a = gradient(32, 24, 0);
        assert_eq!(psnr(&a, &a), f64::INFINITY);
        assert!((ssim(&a, &a) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn psnr_of_a_constant_offset() {
        let a = RgbImage::from_pixel(16, 16, Rgb([100, 100, 100]));
        let b = RgbImage::from_pixel(16, 16, Rgb([110, 110, 110]));
        // MSE 100: 10 log10(255^2 / 100) = 28.1308 dB.
        assert!((psnr(&a, &b) - 28.130_803_6).abs() < 1e-6);
        assert!((video_psnr(&[a.clone(), a.clone()], &[b.clone(), a]) - 31.141_103_6).abs() < 1e-6);
    }

    #[test]
    fn ssim_drops_with_distortion() {
        let a = gradient(32, 32, 0);
        let b = gradient(32, 32, 3);
        let c = gradient(32, 32, 60);
        let (sb, sc) = (ssim(&a, &b), ssim(&a, &c));
        assert!(sb < 1.0 && sc < sb, "{sb} {sc}");
    }
}

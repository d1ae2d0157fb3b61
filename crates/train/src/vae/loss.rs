//! The VAE loss's terms beyond the KL: the (optionally weighted) reconstruction error, the edge term, and the
//! per-channel scale of the noise added to the decoder's input latents.

use candle_core::Tensor;

use crate::error::Result;
use crate::vae::config::Reconstruction;

/// Mean absolute difference between neighbouring pixels along H and W, of x - y.
pub(super) fn edge_l1(x: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    let d = (x - y)?;
    let (h, w) = (d.dim(3)?, d.dim(4)?);
    let dy = (d.narrow(3, 1, h - 1)? - d.narrow(3, 0, h - 1)?)?
        .abs()?
        .mean_all()?;
    let dx = (d.narrow(4, 1, w - 1)? - d.narrow(4, 0, w - 1)?)?
        .abs()?
        .mean_all()?;
    dx + dy
}

/// Mean per-pixel error of `recon` against `video` (same shape), weighted by `weights` (broadcast against them)
/// and normalised by the weights' mean, so that weighting keeps the loss's scale.
pub fn reconstruction_error(
    recon: &Tensor,
    video: &Tensor,
    kind: Reconstruction,
    weights: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let diff = (recon - video)?;
    let error = match kind {
        Reconstruction::L1 => diff.abs()?,
        Reconstruction::Mse => diff.sqr()?,
    };
    match weights {
        Some(w) => error.broadcast_mul(w)?.mean_all()? / (w.mean_all()?.to_scalar::<f32>()? as f64),
        None => error.mean_all(),
    }
}

/// (1, C, 1, 1, 1): the std of each channel of `z` (B, C, T, H, W) over everything but the channel.
pub(super) fn channel_std(z: &Tensor) -> Result<Tensor> {
    let per_channel = z.transpose(0, 1)?.flatten_from(1)?; // (C, N)
    let mean = per_channel.mean_keepdim(1)?;
    let var = per_channel.broadcast_sub(&mean)?.sqr()?.mean(1)?;
    Ok(var.sqrt()?.reshape((1, (), 1, 1, 1))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn channel_std_is_per_channel() {
        let d = Device::Cpu;
        // Channel 0: 1, 3 (std 1); channel 1: 5, 5 (std 0); batch of 2, one element each.
        let z = Tensor::new(&[1f32, 5.0, 3.0, 5.0], &d)
            .unwrap()
            .reshape((2, 2, 1, 1, 1))
            .unwrap();
        let s = channel_std(&z).unwrap();
        assert_eq!(s.dims(), &[1, 2, 1, 1, 1]);
        assert_eq!(
            s.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [1.0, 0.0]
        );
    }

    #[test]
    fn reconstruction_errors_are_weighted_means() {
        let d = Device::Cpu;
        let video = Tensor::zeros((1, 1, 1, 1, 4), DType::F32, &d).unwrap();
        let recon = Tensor::new(&[1f32, -2.0, 0.0, 3.0], &d)
            .unwrap()
            .reshape((1, 1, 1, 1, 4))
            .unwrap();
        let value = |kind, w: Option<&Tensor>| {
            reconstruction_error(&recon, &video, kind, w)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert_eq!(value(Reconstruction::L1, None), 1.5);
        assert_eq!(value(Reconstruction::Mse, None), 3.5);
        // Weights 1, 1, 1, 5 (mean 2): (1 + 4 + 0 + 5 * 9) / 4 / 2.
        let w = Tensor::new(&[1f32, 1.0, 1.0, 5.0], &d)
            .unwrap()
            .reshape((1, 1, 1, 1, 4))
            .unwrap();
        assert_eq!(value(Reconstruction::Mse, Some(&w)), 6.25);
        assert_eq!(value(Reconstruction::L1, Some(&w)), 2.25);
    }
}

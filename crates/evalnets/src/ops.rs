//! The few operations the two networks need beyond candle's: TF "SAME" padding, padded pooling and the
//! resize both metrics use.

use candle_core::{Device, Result, Tensor, D};
use orrery_media::RgbImage;

/// TensorFlow's "SAME" padding of one axis: (before, after) so that the output has ceil(input / stride) entries.
pub fn same_pads(input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(input);
    (total / 2, total - total / 2)
}

/// Pads `dim` of `x` with `before` and `after` entries of `value`.
pub fn pad_value(
    x: &Tensor,
    dim: usize,
    before: usize,
    after: usize,
    value: f32,
) -> Result<Tensor> {
    if before == 0 && after == 0 {
        return Ok(x.clone());
    }
    if value == 0.0 {
        return x.pad_with_zeros(dim, before, after);
    }
    let mut parts = Vec::with_capacity(3);
    let mut shape = x.dims().to_vec();
    if before > 0 {
        shape[dim] = before;
        parts.push(Tensor::full(value, shape.as_slice(), x.device())?.to_dtype(x.dtype())?);
    }
    parts.push(x.clone());
    if after > 0 {
        shape[dim] = after;
        parts.push(Tensor::full(value, shape.as_slice(), x.device())?.to_dtype(x.dtype())?);
    }
    Tensor::cat(&parts, dim)
}

/// (N, C, H, W) padded by `pads` = (top, bottom, left, right) with `value`.
pub fn pad2d(x: &Tensor, pads: [usize; 4], value: f32) -> Result<Tensor> {
    let x = pad_value(x, 2, pads[0], pads[1], value)?;
    pad_value(&x, 3, pads[2], pads[3], value)
}

/// A 2D convolution with bias and any zero padding: (N, Cin, H, W) -> (N, Cout, H', W').
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    pads: [usize; 4],
) -> Result<Tensor> {
    let symmetric = pads.iter().all(|&p| p == pads[0]);
    let y = if symmetric {
        x.conv2d(weight, pads[0], stride, 1, 1)?
    } else {
        pad2d(x, pads, 0.0)?.conv2d(weight, 0, stride, 1, 1)?
    };
    y.broadcast_add(&bias.reshape((1, (), 1, 1))?)
}

/// Max pooling over a (k x k) window with stride `stride`; padded entries never win (-inf), as in PyTorch and TF.
pub fn max_pool2d(x: &Tensor, k: usize, stride: usize, pads: [usize; 4]) -> Result<Tensor> {
    pad2d(x, pads, f32::NEG_INFINITY)?.max_pool2d_with_stride(k, stride)
}

/// Average pooling 3x3, stride 1, padding 1, padded entries not counted (`count_include_pad=False`).
pub fn avg_pool3x3_same_exclude_pad(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let sums = (x
        .pad_with_zeros(2, 1, 1)?
        .pad_with_zeros(3, 1, 1)?
        .avg_pool2d_with_stride(3, 1)?
        * 9.0)?;
    let counts: Vec<f32> = (0..h)
        .flat_map(|i| {
            let rows = 3 - usize::from(i == 0) - usize::from(i + 1 == h);
            (0..w).map(move |j| (rows * (3 - usize::from(j == 0) - usize::from(j + 1 == w))) as f32)
        })
        .collect();
    let counts = Tensor::from_vec(counts, (1, 1, h, w), x.device())?.to_dtype(x.dtype())?;
    sums.broadcast_div(&counts)
}

/// Mean over `dim` of each window of `k` consecutive entries (stride 1, no padding).
pub fn sliding_mean(x: &Tensor, dim: usize, k: usize) -> Result<Tensor> {
    let n = x.dim(dim)?;
    let mut acc = x.narrow(dim, 0, n + 1 - k)?;
    for j in 1..k {
        acc = (acc + x.narrow(dim, j, n + 1 - k)?)?;
    }
    acc / k as f64
}

/// Frames resized to (height, width) by bilinear interpolation with source coordinate `dst * in / out` and
/// clamped borders: TensorFlow 1's `resize_bilinear` (used by the reference FVD) and NVIDIA's resize of the
/// TF-FID Inception (`nv_bilinear`: identical arithmetic). No antialiasing, as both references. Values stay in
/// [0, 255]. Returns (N, 3, height, width).
pub fn resize_frames(
    frames: &[&RgbImage],
    height: usize,
    width: usize,
    device: &Device,
) -> Result<Tensor> {
    let mut out = vec![0f32; frames.len() * 3 * height * width];
    for (n, frame) in frames.iter().enumerate() {
        let (w_in, h_in) = (frame.width() as usize, frame.height() as usize);
        let taps = |dst: usize, n_in: usize, n_out: usize| {
            let src = dst as f32 * (n_in as f32 / n_out as f32);
            let i0 = (src.floor() as usize).min(n_in - 1);
            (i0, (i0 + 1).min(n_in - 1), src - i0 as f32)
        };
        let cols: Vec<_> = (0..width).map(|x| taps(x, w_in, width)).collect();
        let raw = frame.as_raw();
        let pixel = |y: usize, x: usize, c: usize| raw[(y * w_in + x) * 3 + c] as f32;
        for y in 0..height {
            let (y0, y1, fy) = taps(y, h_in, height);
            for (x, &(x0, x1, fx)) in cols.iter().enumerate() {
                for c in 0..3 {
                    let top = pixel(y0, x0, c) + (pixel(y0, x1, c) - pixel(y0, x0, c)) * fx;
                    let bottom = pixel(y1, x0, c) + (pixel(y1, x1, c) - pixel(y1, x0, c)) * fx;
                    out[((n * 3 + c) * height + y) * width + x] = top + (bottom - top) * fy;
                }
            }
        }
    }
    Tensor::from_vec(out, (frames.len(), 3, height, width), device)
}

/// Folds an inference batch norm without scale, `(y - mean) / sqrt(var + eps) + beta`, into the preceding
/// convolution: returns (weight', bias') with the output channel first in `weight`.
pub fn fold_batch_norm(
    weight: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor)> {
    let inv = (var + eps)?.sqrt()?.recip()?;
    let mut shape = vec![1usize; weight.rank()];
    shape[0] = inv.dim(0)?;
    let weight = weight.broadcast_mul(&inv.reshape(shape)?)?;
    let bias = (beta - (mean * &inv)?)?;
    Ok((weight, bias))
}

/// Mean over the last dimension pair (H, W) of (N, C, H, W) -> (N, C).
pub fn spatial_mean(x: &Tensor) -> Result<Tensor> {
    x.flatten_from(2)?.mean(D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_follows_tensorflow() {
        assert_eq!(same_pads(224, 7, 2), (2, 3));
        assert_eq!(same_pads(33, 7, 2), (3, 3));
        assert_eq!(same_pads(56, 3, 1), (1, 1));
        assert_eq!(same_pads(5, 2, 2), (0, 1));
        assert_eq!(same_pads(4, 2, 2), (0, 0));
    }

    #[test]
    fn average_pool_counts_only_real_entries() -> Result<()> {
        let x = Tensor::ones((1, 1, 3, 4), candle_core::DType::F32, &Device::Cpu)?;
        let y = avg_pool3x3_same_exclude_pad(&x)?;
        let values = y.flatten_all()?.to_vec1::<f32>()?;
        assert!(values.iter().all(|v| (v - 1.0).abs() < 1e-6), "{values:?}");
        Ok(())
    }

    #[test]
    fn max_pool_ignores_padding() -> Result<()> {
        let x = Tensor::full(-5f32, (1, 1, 2, 2), &Device::Cpu)?;
        let y = max_pool2d(&x, 3, 1, [1, 1, 1, 1])?;
        assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![-5.0; 4]);
        Ok(())
    }
}

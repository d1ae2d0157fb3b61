//! Differentiable tensor operations shared by every network.
//!
//! Each op is written once here so that every network gets the fast kernel from one place. On the CPU, float32,
//! bfloat16 and float16 inputs run the fused kernels of [`crate::kernels`] (float32 inside, analytic backward);
//! float64 inputs (finite-difference gradient checks) and other devices run the composed candle ops of
//! [`composed`]. candle 0.11's own fused `softmax_last_dim`, `layer_norm` and `rms_norm` have no backward pass
//! (gradients silently stop), so they are never used. Norms, softmax and attention compute in float32 whatever
//! the input type, as the reference does, and return the input's type.

use candle_core::{DType, Device, Result, Tensor, D};

use crate::kernels;

/// Whether `x` takes the fused CPU kernels.
fn fused(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() != DType::F64
}

/// LayerNorm over the last dimension without affine parameters: `(x - mean) / sqrt(var + eps)`, biased variance.
pub fn layer_norm_no_affine(x: &Tensor, eps: f64) -> Result<Tensor> {
    if fused(x) {
        return kernels::layer_norm(x, None, eps)?.to_dtype(x.dtype());
    }
    composed::layer_norm_no_affine(x, eps)
}

/// LayerNorm over the last dimension with a weight and a bias of the last dimension's size.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if fused(x) {
        return kernels::layer_norm(x, Some((weight, bias)), eps)?.to_dtype(x.dtype());
    }
    let dtype = x.dtype();
    composed::layer_norm_no_affine(x, eps)?
        .to_dtype(DType::F32)?
        .broadcast_mul(&weight.to_dtype(DType::F32)?)?
        .broadcast_add(&bias.to_dtype(DType::F32)?)?
        .to_dtype(dtype)
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x^2) + eps) * weight`, computed in float32 (weight included,
/// as TransformerEngine's RMSNorm does) and returned in the input's type.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    if fused(x) {
        return kernels::rms_norm(x, weight, eps)?.to_dtype(x.dtype());
    }
    composed::rms_norm(x, weight, eps)
}

/// The Wan VAE's RMS norm over channels, `F.normalize(x, dim=1) * sqrt(C) * gamma`, of `x` (N, C, ...), then SiLU
/// when `silu`; `gamma` holds C elements. In float32, returned in the input's type.
pub fn channel_rms_norm(x: &Tensor, gamma: &Tensor, silu: bool) -> Result<Tensor> {
    if fused(x) {
        return kernels::channel_rms_norm(x, gamma, silu)?.to_dtype(x.dtype());
    }
    let y = composed::channel_rms_norm(x, gamma)?;
    if silu {
        y.silu()
    } else {
        Ok(y)
    }
}

/// Nearest-neighbour 2x spatial upsampling of `x` (N, C, H, W): (N, C, 2H, 2W), output pixel (y, x) the input's
/// (y / 2, x / 2) (`nearest-exact` at scale 2).
pub fn upsample_nearest_2x(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        return kernels::upsample_nearest_2x(x)?.to_dtype(x.dtype());
    }
    composed::upsample_nearest_2x(x)
}

/// Softmax over the last dimension, in float32.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        return kernels::softmax_last_dim(x)?.to_dtype(x.dtype());
    }
    composed::softmax_last_dim(x)
}

/// Scaled dot-product attention without a mask. `q` (B, H, Lq, Dh), `k`/`v` (B, H, Lk, Dh) -> (B, H, Lq, Dh).
/// Scores, softmax and the weighted sum run in float32 (as flash attention accumulates); the result has `v`'s
/// type. On the CPU the (Lq x Lk) score matrix is never materialised.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    if fused(v) {
        return kernels::flash_attention(q, k, v)?.to_dtype(v.dtype());
    }
    composed::attention(q, k, v)
}

/// Attention whose keys may be padding: `key_bias` (B, 1, 1, Lk) is added to every score row, 0 for a real key
/// and a large negative number for padding (see [`key_padding_bias`]). Runs the composed ops on every device
/// (the fused CPU kernel takes no mask).
pub fn attention_with_key_bias(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_bias: &Tensor,
) -> Result<Tensor> {
    composed::attention_with_bias(q, k, v, Some(key_bias))
}

/// The `key_bias` of [`attention_with_key_bias`] for sequences of `lengths` padded to `padded`: (B, 1, 1, padded).
pub fn key_padding_bias(lengths: &[usize], padded: usize, device: &Device) -> Result<Tensor> {
    // Finite, so a row of padding alone (an empty sequence) softmaxes to uniform weights instead of NaN.
    const PADDING: f32 = -1e9;
    let values = lengths
        .iter()
        .flat_map(|&n| (0..padded).map(move |j| if j < n { 0.0 } else { PADDING }))
        .collect();
    Tensor::from_vec(values, (lengths.len(), 1, 1, padded), device)
}

/// The adaLN modulation of DiT blocks: `LayerNorm(x) (1 + scale) + shift` with a LayerNorm without affine
/// parameters. `x` (B, G, R, D); `shift`, `scale` (B, G', 1, D) with G' = G or 1 (one row per frame or one per
/// clip). In `x`'s type.
pub fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor, eps: f64) -> Result<Tensor> {
    if fused(x) {
        return kernels::modulate(x, shift, scale, eps)?.to_dtype(x.dtype());
    }
    let dtype = x.dtype();
    layer_norm_no_affine(x, eps)?
        .broadcast_mul(&(scale.to_dtype(dtype)? + 1.0)?)?
        .broadcast_add(&shift.to_dtype(dtype)?)
}

/// The gated residual of DiT blocks, `x + gate y`: `x`, `y` (B, G, R, D), `gate` (B, G', 1, D) with G' = G or 1.
/// In `x`'s type.
pub fn gated_residual(x: &Tensor, y: &Tensor, gate: &Tensor) -> Result<Tensor> {
    if fused(x) {
        return kernels::gated_residual(x, y, gate)?.to_dtype(x.dtype());
    }
    x + y.broadcast_mul(&gate.to_dtype(x.dtype())?)?
}

/// Causal scaled dot-product attention: query i attends to keys 0..=i. Shapes and types as [`attention`];
/// Lq must equal Lk.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let dtype = v.dtype();
    let (len, head_dim) = (q.dim(D::Minus2)?, q.dim(D::Minus1)?);
    let scale = 1.0 / (head_dim as f64).sqrt();
    let q = q.to_dtype(DType::F32)?.contiguous()?;
    let k = k.to_dtype(DType::F32)?.contiguous()?;
    let v = v.to_dtype(DType::F32)?.contiguous()?;
    let mask: Vec<f32> = (0..len * len)
        .map(|i| {
            if i % len > i / len {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, (len, len), q.device())?;
    let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
    softmax_last_dim(&scores)?.matmul(&v)?.to_dtype(dtype)
}

/// Rotary embedding in the non-interleaved ("rotate half") layout, in float32: `x cos + rotate_half(x) sin`
/// with rotate_half(x) = [-x2, x1]. `x` (..., L, Dh), `cos`/`sin` (L, Dh) (constants: they get no gradient).
pub fn rotate_half_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if fused(x) {
        return kernels::rotate_half_rope(x, cos, sin);
    }
    composed::rotate_half_rope(x, cos, sin)
}

/// 3D convolution of frame-major video: `x` (B, T, Cin, H, W), `kernel` (Cout, Cin, kt, kh, kw) ->
/// (B, (T - kt) / stride_t + 1, Cout, H + 2 padding - kh + 1, W + 2 padding - kw + 1). Spatial stride 1, zero
/// padding `padding` on every side, no temporal padding (causal callers prepend their context frames), no bias.
/// In `x`'s type.
pub fn conv3d(x: &Tensor, kernel: &Tensor, stride_t: usize, padding: usize) -> Result<Tensor> {
    let p = kernels::Conv3d {
        stride_t,
        padding: (padding, padding),
        front: 0,
    };
    conv3d_with(x, kernel, None, p)
}

/// [`conv3d`] with `p.front` zero frames before `x` (a causal convolution's start, without building them) and a
/// bias (Cout) added when given: `p.padding` (ph, pw) as in [`kernels::conv3d_with`].
pub fn conv3d_with(
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    p: kernels::Conv3d,
) -> Result<Tensor> {
    if fused(x) {
        return kernels::conv3d_with(x, kernel, bias, p)?.to_dtype(x.dtype());
    }
    let (ph, pw) = p.padding;
    if ph != pw {
        candle_core::bail!("conv3d: padding ({ph}, {pw}) differs per axis (fused CPU kernel only)");
    }
    let x = if p.front > 0 {
        let (b, _, c, h, w) = x.dims5()?;
        let zeros = Tensor::zeros((b, p.front, c, h, w), x.dtype(), x.device())?;
        Tensor::cat(&[&zeros, x], 1)?
    } else {
        x.clone()
    };
    let y = composed::conv3d(&x, kernel, p.stride_t, ph)?;
    match bias {
        None => Ok(y),
        Some(b) => y.broadcast_add(&b.reshape((1, 1, b.elem_count(), 1, 1))?),
    }
}

/// Exact (erf) GELU.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        return kernels::gelu_erf(x)?.to_dtype(x.dtype());
    }
    x.gelu_erf()
}

/// GELU's tanh approximation.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        return kernels::gelu_tanh(x)?.to_dtype(x.dtype());
    }
    x.gelu()
}

/// SiLU, `x * sigmoid(x)`.
pub fn silu(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        return kernels::silu(x)?.to_dtype(x.dtype());
    }
    x.silu()
}

/// The same operations composed from candle's differentiable primitives: the path for float64 and non-CPU
/// devices, and the reference the fused kernels are tested against.
pub mod composed {
    use super::*;

    /// [`super::conv3d`] as a sum over temporal taps of candle 2D convolutions of the selected frames.
    pub fn conv3d(x: &Tensor, kernel: &Tensor, stride_t: usize, padding: usize) -> Result<Tensor> {
        let (b, t_in, c, h, w) = x.dims5()?;
        let kt = kernel.dim(2)?;
        if kt == 0 || stride_t == 0 || t_in < kt {
            candle_core::bail!(
                "conv3d: {t_in} frames for a temporal kernel of {kt} (stride {stride_t})"
            );
        }
        let t_out = (t_in - kt) / stride_t + 1;
        let mut out: Option<Tensor> = None;
        for dt in 0..kt {
            let idx: Vec<u32> = (0..t_out).map(|i| (i * stride_t + dt) as u32).collect();
            let frames = x
                .index_select(&Tensor::new(idx, x.device())?, 1)?
                .reshape((b * t_out, c, h, w))?;
            let tap = kernel.narrow(2, dt, 1)?.squeeze(2)?.contiguous()?;
            let y = frames.conv2d(&tap, padding, 1, 1, 1)?;
            out = Some(match out {
                None => y,
                Some(acc) => (acc + y)?,
            });
        }
        let y = out.expect("kt > 0");
        let (_, co, ho, wo) = y.dims4()?;
        y.reshape((b, t_out, co, ho, wo))
    }

    /// Rotary embedding in the non-interleaved ("rotate half") layout, in float32: `x cos + rotate_half(x) sin`
    /// with rotate_half(x) = [-x2, x1]. `x` (..., L, Dh), `cos`/`sin` (L, Dh).
    pub fn rotate_half_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(DType::F32)?;
        let half = x.dim(D::Minus1)? / 2;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        x.broadcast_mul(cos)?.add(&rotated.broadcast_mul(sin)?)
    }

    /// LayerNorm over the last dimension without affine parameters: `(x - mean) / sqrt(var + eps)`, biased variance.
    pub fn layer_norm_no_affine(x: &Tensor, eps: f64) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        centred
            .broadcast_div(&(var + eps)?.sqrt()?)?
            .to_dtype(dtype)
    }

    /// RMSNorm over the last dimension: `x / sqrt(mean(x^2) + eps) * weight`, computed in float32 (weight included,
    /// as TransformerEngine's RMSNorm does) and returned in the input's type.
    pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        x.broadcast_div(&(ms + eps)?.sqrt()?)?
            .broadcast_mul(&weight.to_dtype(DType::F32)?)?
            .to_dtype(dtype)
    }

    /// [`super::upsample_nearest_2x`] as a broadcast and a copy.
    pub fn upsample_nearest_2x(x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        x.reshape((n, c, h, 1, w, 1))?
            .broadcast_as((n, c, h, 2, w, 2))?
            .reshape((n, c, 2 * h, 2 * w))
    }

    /// [`super::channel_rms_norm`] without the SiLU: `x / max(||x||, 1e-12) * sqrt(C) * gamma` over dimension 1.
    pub fn channel_rms_norm(x: &Tensor, gamma: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let c = x.dim(1)?;
        let xf = x.to_dtype(DType::F32)?;
        // F.normalize: x / max(||x||, 1e-12)
        let norm = xf.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(1e-12)?;
        let mut gamma_shape = vec![1; x.rank()];
        gamma_shape[1] = c;
        let gamma = gamma.to_dtype(DType::F32)?.reshape(gamma_shape)?;
        (xf.broadcast_div(&norm)? * (c as f64).sqrt())?
            .broadcast_mul(&gamma)?
            .to_dtype(dtype)
    }

    /// Softmax over the last dimension, in float32.
    pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let max = x.max_keepdim(D::Minus1)?.detach();
        let e = x.broadcast_sub(&max)?.exp()?;
        e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?.to_dtype(dtype)
    }

    /// Scaled dot-product attention without a mask. `q` (B, H, Lq, Dh), `k`/`v` (B, H, Lk, Dh) -> (B, H, Lq, Dh).
    /// Scores, softmax and the weighted sum run in float32 (as flash attention accumulates); the result has `v`'s
    /// type.
    pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        attention_with_bias(q, k, v, None)
    }

    /// Scores held at once by [`attention_with_bias`] (2^28 float32: 1 GiB): longer sequences are computed a block
    /// of query rows at a time, so 84,480 tokens of 16 heads need a few GiB, not the 457 GB of their whole score
    /// matrix.
    pub const MAX_SCORES: usize = 1 << 28;

    /// [`attention`] with `bias` (broadcastable to the (B, H, Lq, Lk) scores) added before the softmax, a block of
    /// query rows at a time when the scores would exceed [`MAX_SCORES`] (each row's softmax is its own, so the
    /// blocks equal the whole).
    pub fn attention_with_bias(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, h, _, _) = q.dims4()?;
        let lk = k.dim(2)?;
        let rows = (MAX_SCORES / (b * h * lk).max(1)).max(1);
        attention_in_row_blocks(q, k, v, bias, rows)
    }

    /// [`attention_with_bias`] over blocks of `rows` query rows, concatenated.
    pub fn attention_in_row_blocks(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
        rows: usize,
    ) -> Result<Tensor> {
        let lq = q.dim(2)?;
        if rows >= lq {
            return attention_block(q, k, v, bias);
        }
        let mut blocks = Vec::with_capacity(lq.div_ceil(rows));
        for start in (0..lq).step_by(rows.max(1)) {
            let len = rows.min(lq - start);
            // A bias with a row per query is cut with the queries; a key bias (one row) applies to every block.
            let bias = match bias {
                Some(b) if b.rank() == 4 && b.dim(2)? == lq && lq > 1 => {
                    Some(b.narrow(2, start, len)?)
                }
                other => other.cloned(),
            };
            blocks.push(attention_block(
                &q.narrow(2, start, len)?,
                k,
                v,
                bias.as_ref(),
            )?);
        }
        Tensor::cat(&blocks, 2)
    }

    fn attention_block(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        let dtype = v.dtype();
        let head_dim = q.dim(D::Minus1)?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let q = q.to_dtype(DType::F32)?.contiguous()?;
        let k = k.to_dtype(DType::F32)?.contiguous()?;
        let v = v.to_dtype(DType::F32)?.contiguous()?;
        let mut scores = (q.matmul(&k.t()?)? * scale)?;
        if let Some(bias) = bias {
            scores = scores.broadcast_add(&bias.to_dtype(DType::F32)?)?;
        }
        let probs = softmax_last_dim(&scores)?;
        probs.matmul(&v)?.to_dtype(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn close(a: &Tensor, b: &[f32], tol: f32) {
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol, "{x} vs {y}");
        }
    }

    #[test]
    fn layer_norm_matches_definition() {
        let x = Tensor::new(&[[1f32, 2., 3., 6.]], &Device::Cpu).unwrap();
        // mean 3, biased var (4 + 1 + 0 + 9) / 4 = 3.5
        let s = (3.5f32 + 1e-6).sqrt();
        close(
            &layer_norm_no_affine(&x, 1e-6).unwrap(),
            &[-2. / s, -1. / s, 0., 3. / s],
            1e-6,
        );
    }

    #[test]
    fn rms_norm_matches_definition() {
        let x = Tensor::new(&[[3f32, 4.]], &Device::Cpu).unwrap();
        let w = Tensor::new(&[2f32, 0.5], &Device::Cpu).unwrap();
        let r = (12.5f32 + 1e-6).sqrt();
        close(&rms_norm(&x, &w, 1e-6).unwrap(), &[6. / r, 2. / r], 1e-6);
    }

    #[test]
    fn causal_attention_ignores_the_future() {
        let dev = Device::Cpu;
        let q = Tensor::new(&[[[[1f32, 0.], [0., 1.], [1., 1.]]]], &dev).unwrap();
        let v = Tensor::new(&[[[[1f32, 2.], [3., 4.], [5., 6.]]]], &dev).unwrap();
        let out = causal_attention(&q, &q, &v).unwrap();
        // The first query sees only the first value.
        let first = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(&first[..2], &[1., 2.]);
        // Changing the last value leaves the first two outputs alone.
        let v2 = Tensor::new(&[[[[1f32, 2.], [3., 4.], [50., 60.]]]], &dev).unwrap();
        let out2 = causal_attention(&q, &q, &v2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(&first[..4], &out2[..4]);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_are_stable() {
        let x = Tensor::new(&[[1000f32, 1001., 1002.]], &Device::Cpu).unwrap();
        let p = softmax_last_dim(&x).unwrap();
        let e = [1f32, std::f32::consts::E, std::f32::consts::E.powi(2)];
        let s: f32 = e.iter().sum();
        close(&p, &[e[0] / s, e[1] / s, e[2] / s], 1e-6);
    }

    /// Central finite differences of `sum(f(x) * probe)` against candle's backward pass.
    fn check_gradient(f: impl Fn(&Tensor) -> Result<Tensor>, x0: &[f32], shape: &[usize]) {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::from_slice(x0, shape, &dev).unwrap()).unwrap();
        let out = f(x.as_tensor()).unwrap();
        let n = out.elem_count();
        let probe: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.4)
            .collect();
        let probe = Tensor::from_vec(probe, out.shape(), &dev).unwrap();
        let loss = (out * &probe).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let g = grads
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let eps = 1e-2f64;
        for i in 0..x0.len() {
            let eval = |d: f64| {
                let mut v: Vec<f64> = x0.iter().map(|&a| a as f64).collect();
                v[i] += d;
                let t = Tensor::from_vec(v, shape, &dev).unwrap();
                (f(&t).unwrap() * probe.to_dtype(DType::F64).unwrap())
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let numeric = (eval(eps) - eval(-eps)) / (2.0 * eps);
            assert!(
                (numeric - g[i] as f64).abs() <= 2e-3 * (1.0 + numeric.abs()),
                "element {i}: finite difference {numeric}, backward {}",
                g[i]
            );
        }
    }

    fn sample(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 % 17) as f32 - 8.0) / 5.0).collect()
    }

    #[test]
    fn gradients_match_finite_differences() {
        check_gradient(|x| layer_norm_no_affine(x, 1e-6), &sample(12), &[3, 4]);
        check_gradient(softmax_last_dim, &sample(12), &[3, 4]);
        check_gradient(gelu_erf, &sample(12), &[12]);
        check_gradient(silu, &sample(12), &[12]);
        check_gradient(
            |x| {
                let w = Tensor::new(&[0.5f32, 1.5, -1.0, 2.0], x.device())?.to_dtype(x.dtype())?;
                rms_norm(x, &w, 1e-6)
            },
            &sample(12),
            &[3, 4],
        );
        check_gradient(
            |x| {
                let x = x.reshape((1, 1, 3, 4))?;
                let k = (x.clone() * 0.5)?;
                attention(&x, &k, &x.tanh()?)
            },
            &sample(12),
            &[3, 4],
        );
        check_gradient(
            |x| {
                let x = x.reshape((1, 1, 3, 4))?;
                causal_attention(&x, &(x.clone() * 0.5)?, &x.tanh()?)
            },
            &sample(12),
            &[3, 4],
        );
    }

    #[test]
    fn attention_in_blocks_of_query_rows_equals_the_whole() {
        let dev = Device::Cpu;
        let q = Var::randn(0f32, 1., (2, 3, 7, 4), &dev).unwrap();
        let k = Tensor::randn(0f32, 1., (2, 3, 5, 4), &dev).unwrap();
        let v = Tensor::randn(0f32, 1., (2, 3, 5, 4), &dev).unwrap();
        let key_bias = key_padding_bias(&[5, 3], 5, &dev).unwrap();
        let row_bias = Tensor::randn(0f32, 1., (1, 1, 7, 5), &dev).unwrap();
        for bias in [None, Some(&key_bias), Some(&row_bias)] {
            let whole = composed::attention_in_row_blocks(q.as_tensor(), &k, &v, bias, 7).unwrap();
            let grad_whole = whole.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            for rows in [1, 2, 3, 6] {
                let blocks =
                    composed::attention_in_row_blocks(q.as_tensor(), &k, &v, bias, rows).unwrap();
                let err = crate::compare::max_abs_diff(&blocks, &whole).unwrap();
                assert!(err < 1e-6, "rows {rows}: {err}");
                let grad = blocks.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                let err = crate::compare::max_abs_diff(
                    grad.get(q.as_tensor()).unwrap(),
                    grad_whole.get(q.as_tensor()).unwrap(),
                )
                .unwrap();
                assert!(err < 1e-5, "rows {rows}: gradient {err}");
            }
        }
        // The default block size follows the score budget; short sequences run in one block.
        let out = composed::attention(q.as_tensor(), &k, &v).unwrap();
        assert_eq!(out.dims(), &[2, 3, 7, 4]);
    }
}

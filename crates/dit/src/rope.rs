//! 3D rotary position embedding of Cosmos-Predict2.5 (`VideoRopePosition3DEmb`, fps modulation off).
//!
//! head_dim is split into h and w parts of `head_dim // 6 * 2` each and a t part with the rest. Each axis has
//! its own NTK-scaled base `10000 * ratio^(dim / (dim - 2))`. A token at (t, h, w) gets the angles
//! `[t f_t | h f_h | w f_w]` (half of head_dim), duplicated to the full head_dim, and q/k are rotated in the
//! non-interleaved ("rotate half") layout.

use candle_core::{Device, Result, Tensor};

/// Angles of every token, (L, head_dim) in (t, h, w) raster order, for a grid of `t x h x w` patches.
pub fn rope_angles(head_dim: usize, ratios_thw: [f64; 3], grid_thw: [usize; 3]) -> Vec<f64> {
    let dim_h = head_dim / 6 * 2;
    let dim_t = head_dim - 2 * dim_h;
    let freqs = |dim: usize, ratio: f64| -> Vec<f64> {
        let theta = 10000.0 * ratio.powf(dim as f64 / (dim as f64 - 2.0));
        (0..dim / 2)
            .map(|j| 1.0 / theta.powf((2 * j) as f64 / dim as f64))
            .collect()
    };
    let f_t = freqs(dim_t, ratios_thw[0]);
    let f_h = freqs(dim_h, ratios_thw[1]);
    let f_w = freqs(dim_h, ratios_thw[2]);
    let [nt, nh, nw] = grid_thw;
    let mut out = Vec::with_capacity(nt * nh * nw * head_dim);
    let mut half = Vec::with_capacity(head_dim / 2);
    for t in 0..nt {
        for h in 0..nh {
            for w in 0..nw {
                half.clear();
                half.extend(f_t.iter().map(|f| t as f64 * f));
                half.extend(f_h.iter().map(|f| h as f64 * f));
                half.extend(f_w.iter().map(|f| w as f64 * f));
                out.extend_from_slice(&half);
                out.extend_from_slice(&half);
            }
        }
    }
    out
}

/// cos and sin of the angles as float32 tensors (L, head_dim).
pub fn rope_table(
    head_dim: usize,
    ratios_thw: [f64; 3],
    grid_thw: [usize; 3],
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let angles = rope_angles(head_dim, ratios_thw, grid_thw);
    let len = grid_thw.iter().product::<usize>();
    let cos: Vec<f32> = angles.iter().map(|a| a.cos() as f32).collect();
    let sin: Vec<f32> = angles.iter().map(|a| a.sin() as f32).collect();
    Ok((
        Tensor::from_vec(cos, (len, head_dim), device)?,
        Tensor::from_vec(sin, (len, head_dim), device)?,
    ))
}

/// Rotates `x` (B, H, L, head_dim) in float32 (the reference casts q and k to float32 first).
pub fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    orrery_nn::ops::rotate_half_rope(x, cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_split_and_bases_for_head_dim_128() {
        // Spec 2.1: dim_h = dim_w = 42, dim_t = 44; theta_h = 10000 * 3^(42/40) ~ 31,694.
        let a = rope_angles(128, [1.0, 3.0, 3.0], [2, 2, 2]);
        let token = |t: usize, h: usize, w: usize| &a[((t * 2 + h) * 2 + w) * 128..][..128];
        // h = 1: the h block starts at 22 with frequency 1, the second h frequency is theta_h^(-2/42).
        let theta_h = 10000f64 * 3f64.powf(42.0 / 40.0);
        assert!((theta_h - 31_694.0).abs() < 1.0);
        let x = token(0, 1, 0);
        assert_eq!(x[22], 1.0);
        assert!((x[23] - theta_h.powf(-2.0 / 42.0)).abs() < 1e-15);
        assert!(x[..22].iter().all(|v| *v == 0.0) && x[43..64].iter().all(|v| *v == 0.0));
        let x = token(1, 0, 1);
        assert!((x[1] - 10000f64.powf(-2.0 / 44.0)).abs() < 1e-15);
        assert_eq!(x[43], 1.0);
        assert_eq!(&x[..64], &x[64..]);
    }

    #[test]
    fn rotation_preserves_norm_and_position_zero_is_identity() {
        let dev = Device::Cpu;
        let (cos, sin) = rope_table(12, [1.0, 1.0, 1.0], [1, 2, 2], &dev).unwrap();
        let x = Tensor::arange(0f32, 48., &dev)
            .unwrap()
            .reshape((1, 1, 4, 12))
            .unwrap();
        let y = apply_rope(&x, &cos, &sin).unwrap();
        let norms = |t: &Tensor| {
            t.sqr()
                .unwrap()
                .sum(3)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        for (a, b) in norms(&x).iter().zip(norms(&y)) {
            assert!((a - b).abs() < 1e-3 * a);
        }
        let first = y
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(first, (0..12).map(|v| v as f32).collect::<Vec<_>>());
    }
}

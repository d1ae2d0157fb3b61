//! The Wan VAE's RMS norm over channels, `F.normalize(x, dim=1) * sqrt(C) * gamma`, of (N, C, S...) activations,
//! optionally followed by SiLU, in two passes: per-pixel inverse norms over blocks of pixels, then each (n, c)
//! row scaled (and activated) on its own. candle composes it from a strided channel reduction and four
//! broadcast passes, a sixth of a VAE decode.
//!
//! With `u = x k / max(||x||, eps)` (k = sqrt(C)), `z = u gamma` and `y = act(z)`: `gz = g act'(z)`,
//! `dgamma = sum gz u`, and with `gu = gz gamma`, `dx = (k / ||x||) (gu - u sum_c(gu u) / k^2)`, or
//! `dx = (k / eps) gu` where the norm is clamped (the clamp passes no gradient, as in PyTorch).

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::activation::{derivative, forward_one, Kind};
use super::storage::{
    f32_data, multiversion, output, par_row_sums, par_rows, par_zeros, prepare, tensor, with_f32,
};

/// `F.normalize`'s floor on the norm.
const EPS: f32 = 1e-12;
/// Pixels per work item of the per-pixel passes.
const PIXEL_BLOCK: usize = 1024;

/// (N, C, S): frames, channels, pixels per channel.
#[derive(Debug, Clone, Copy)]
struct Dims {
    n: usize,
    c: usize,
    s: usize,
}

impl Dims {
    fn of(x: &[usize], gamma_len: usize) -> Result<Self> {
        let [n, c, rest @ ..] = x else {
            candle_core::bail!("channel_rms_norm: input (N, C, ...) expected, got {x:?}")
        };
        if rest.is_empty() || gamma_len != *c {
            candle_core::bail!(
                "channel_rms_norm: gamma of {gamma_len} elements for input {x:?} (channels second)"
            );
        }
        Ok(Self {
            n: *n,
            c: *c,
            s: rest.iter().product(),
        })
    }

    fn k(&self) -> f32 {
        (self.c as f32).sqrt()
    }
}

/// `gz = g act'(z)`: the output gradient through the SiLU when there is one.
#[inline(always)]
fn pre_activation_grad(g: f32, z: f32, silu: bool) -> f32 {
    if silu {
        g * derivative(Kind::Silu, z)
    } else {
        g
    }
}

multiversion! {
    /// `sq[i] = sum_c frame[c][s0 + i]^2` for the pixels of one block of one frame (C, S).
    fn square_sums(frame: &[f32], d: Dims, s0: usize, sq: &mut [f32]) {
        sq.fill(0.0);
        for ch in 0..d.c {
            let row = &frame[ch * d.s + s0..ch * d.s + s0 + sq.len()];
            sq.iter_mut().zip(row).for_each(|(a, &v)| *a += v * v);
        }
    }
}

multiversion! {
    /// `out = act(x inv gamma)` over consecutive (n, c) rows starting at row `first`.
    fn scale_rows(x: &[f32], inv: &[f32], gamma: &[f32], d: Dims, silu: bool, first: usize, out: &mut [f32]) {
        for (i, o) in out.chunks_exact_mut(d.s).enumerate() {
            let r = first + i;
            let (n, g) = (r / d.c, gamma[r % d.c]);
            let xr = &x[r * d.s..(r + 1) * d.s];
            let ir = &inv[n * d.s..(n + 1) * d.s];
            if silu {
                o.iter_mut().zip(xr.iter().zip(ir)).for_each(|(o, (&v, &s))| *o = forward_one(Kind::Silu, v * s * g));
            } else {
                o.iter_mut().zip(xr.iter().zip(ir)).for_each(|(o, (&v, &s))| *o = v * s * g);
            }
        }
    }
}

multiversion! {
    /// `corr[i] = sum_c gu u / k^2` for one block of one frame (0 where the norm is clamped); `inv` holds the
    /// block's inverse norms.
    fn corrections(x: &[f32], g: &[f32], gamma: &[f32], d: Dims, silu: bool, s0: usize, inv: &[f32], corr: &mut [f32]) {
        corr.fill(0.0);
        for (ch, &gm) in gamma.iter().enumerate() {
            let range = ch * d.s + s0..ch * d.s + s0 + corr.len();
            let (xr, gr) = (&x[range.clone()], &g[range]);
            for ((a, &s), (&v, &gv)) in corr.iter_mut().zip(inv).zip(xr.iter().zip(gr)) {
                let u = v * s;
                *a += pre_activation_grad(gv, u * gm, silu) * gm * u;
            }
        }
        let k2 = (d.c as f32).recip();
        let limit = d.k() / EPS;
        corr.iter_mut().zip(inv).for_each(|(a, &s)| *a = if s >= limit { 0.0 } else { *a * k2 });
    }
}

multiversion! {
    /// `dx = inv (gu - u corr)` over consecutive (n, c) rows starting at row `first`.
    fn input_grad_rows(x: &[f32], g: &[f32], inv: &[f32], corr: &[f32], gamma: &[f32], d: Dims, silu: bool, first: usize, out: &mut [f32]) {
        for (i, o) in out.chunks_exact_mut(d.s).enumerate() {
            let r = first + i;
            let (n, gm) = (r / d.c, gamma[r % d.c]);
            let (xr, gr) = (&x[r * d.s..(r + 1) * d.s], &g[r * d.s..(r + 1) * d.s]);
            let (ir, cr) = (&inv[n * d.s..(n + 1) * d.s], &corr[n * d.s..(n + 1) * d.s]);
            for (j, o) in o.iter_mut().enumerate() {
                let u = xr[j] * ir[j];
                *o = ir[j] * (pre_activation_grad(gr[j], u * gm, silu) * gm - u * cr[j]);
            }
        }
    }
}

multiversion! {
    /// `dgamma[c] += sum_s gz u` over `rows` consecutive (n, c) rows starting at row `first`.
    fn gamma_grad_rows(x: &[f32], g: &[f32], inv: &[f32], gamma: &[f32], d: Dims, silu: bool, first: usize, rows: usize, acc: &mut [f32]) {
        for r in first..first + rows {
            let (n, ch) = (r / d.c, r % d.c);
            let (xr, gr) = (&x[r * d.s..(r + 1) * d.s], &g[r * d.s..(r + 1) * d.s]);
            let ir = &inv[n * d.s..(n + 1) * d.s];
            let mut sum = 0.0f32;
            for ((&v, &gv), &s) in xr.iter().zip(gr).zip(ir) {
                let u = v * s;
                sum += pre_activation_grad(gv, u * gamma[ch], silu) * u;
            }
            acc[ch] += sum;
        }
    }
}

/// `k / max(||x[n, :, s]||, eps)` for every pixel (N S), in parallel over blocks of pixels.
fn inverse_norms(x: &[f32], d: Dims) -> Vec<f32> {
    let mut inv = vec![0f32; d.n * d.s];
    let k = d.k();
    inv.par_chunks_mut(d.s.max(1))
        .enumerate()
        .for_each(|(n, frame_inv)| {
            let frame = &x[n * d.c * d.s..(n + 1) * d.c * d.s];
            frame_inv
                .par_chunks_mut(PIXEL_BLOCK)
                .enumerate()
                .for_each(|(b, block)| {
                    square_sums(frame, d, b * PIXEL_BLOCK, block);
                    block.iter_mut().for_each(|a| *a = k / a.sqrt().max(EPS));
                });
        });
    inv
}

fn forward(x: &[f32], gamma: &[f32], d: Dims, silu: bool) -> Vec<f32> {
    let inv = inverse_norms(x, d);
    let mut out = par_zeros(x.len());
    if d.s > 0 {
        par_rows(&mut out, d.s, |first, o| {
            scale_rows(x, &inv, gamma, d, silu, first, o)
        });
    }
    out
}

/// (dx, dgamma) from the output gradient `g`.
fn backward(x: &[f32], gamma: &[f32], g: &[f32], d: Dims, silu: bool) -> (Vec<f32>, Vec<f32>) {
    let inv = inverse_norms(x, d);
    let mut corr = vec![0f32; d.n * d.s];
    corr.par_chunks_mut(d.s.max(1))
        .enumerate()
        .for_each(|(n, frame_corr)| {
            let frame = n * d.c * d.s..(n + 1) * d.c * d.s;
            let (xf, gf) = (&x[frame.clone()], &g[frame]);
            let frame_inv = &inv[n * d.s..(n + 1) * d.s];
            frame_corr
                .par_chunks_mut(PIXEL_BLOCK)
                .enumerate()
                .for_each(|(b, block)| {
                    let s0 = b * PIXEL_BLOCK;
                    let block_inv = &frame_inv[s0..s0 + block.len()];
                    corrections(xf, gf, gamma, d, silu, s0, block_inv, block)
                });
        });
    let mut dx = vec![0f32; x.len()];
    if d.s == 0 {
        return (dx, vec![0f32; d.c]);
    }
    par_rows(&mut dx, d.s, |first, o| {
        input_grad_rows(x, g, &inv, &corr, gamma, d, silu, first, o)
    });
    let dgamma = par_row_sums(d.n * d.c, d.s, d.c, |first, rows, acc| {
        gamma_grad_rows(x, g, &inv, gamma, d, silu, first, rows, acc)
    });
    (dx, dgamma)
}

struct ChannelNorm {
    silu: bool,
}

impl CustomOp2 for ChannelNorm {
    fn name(&self) -> &'static str {
        "orrery-channel-rms-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::of(xl.dims(), gl.shape().elem_count())?;
        let (x, gamma) = (
            f32_data(xs, xl, self.name())?,
            f32_data(gs, gl, self.name())?,
        );
        Ok(output(forward(x, gamma, d, self.silu), xl.shape()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = Dims::of(x.dims(), gamma.elem_count())?;
        let (dx, dgamma) = with_f32(x, |x| {
            with_f32(gamma, |gm| {
                with_f32(grad, |g| backward(x, gm, g, d, self.silu))
            })
        })???;
        Ok((
            Some(tensor(dx, x.shape())?),
            Some(tensor(dgamma, gamma.shape())?),
        ))
    }
}

/// `F.normalize(x, dim=1) * sqrt(C) * gamma` of a float32 CPU tensor (N, C, ...), then SiLU when `silu`;
/// `gamma` holds C elements (any shape; its gradient comes back in that shape).
pub fn channel_rms_norm(x: &Tensor, gamma: &Tensor, silu: bool) -> Result<Tensor> {
    prepare(x)?.apply_op2(&prepare(gamma)?, ChannelNorm { silu })
}

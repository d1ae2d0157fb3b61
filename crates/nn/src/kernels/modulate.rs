//! The adaLN pattern of DiT blocks, fused: `LayerNorm(x) (1 + scale) + shift` and the gated residual
//! `x + gate y`. `x`/`y` are (B, G, R, D) and the modulation (B, G', 1, D) with G' = G or 1: each group of R rows
//! (one frame's tokens) shares one modulation row.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::norm::{layer_stats, normalized_grad};
use super::storage::{
    f32_data, multiversion, output, par_row_sums, par_rows, prepare, tensor, with_f32,
};

/// Which modulation row each row of `x` uses.
#[derive(Debug, Clone, Copy)]
struct Groups {
    /// Rows per group (R).
    rows: usize,
    /// Groups per sample in `x` (G).
    groups: usize,
    /// Groups per sample in the modulation (G' = G or 1).
    mod_groups: usize,
    /// Row length (D).
    d: usize,
}

impl Groups {
    fn new(x: &[usize], m: &[usize]) -> Result<Self> {
        let ([b, g, r, d], [mb, mg, 1, md]) = (x, m) else {
            candle_core::bail!(
                "adaLN: x (B, G, R, D) and modulation (B, G', 1, D) expected, got {x:?} and {m:?}"
            )
        };
        if mb != b || md != d || !(mg == g || *mg == 1) {
            candle_core::bail!("adaLN: modulation {m:?} does not fit x {x:?}");
        }
        Ok(Self {
            rows: *r,
            groups: *g,
            mod_groups: *mg,
            d: *d,
        })
    }

    /// Start of the modulation row used by row `row` of `x`.
    #[inline(always)]
    fn mod_offset(&self, row: usize) -> usize {
        let group = row / self.rows.max(1);
        let (b, g) = (group / self.groups, group % self.groups);
        let mg = if self.mod_groups == 1 { 0 } else { g };
        (b * self.mod_groups + mg) * self.d
    }
}

multiversion! {
    fn modulate_rows(gr: Groups, first: usize, x: &[f32], shift: &[f32], scale: &[f32], out: &mut [f32], eps: f32) {
        let d = gr.d;
        for (i, (xr, or)) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)).enumerate() {
            let m = gr.mod_offset(first + i);
            let (sh, sc) = (&shift[m..m + d], &scale[m..m + d]);
            let (mean, rstd) = layer_stats(xr, eps);
            for (((o, &v), &a), &s) in or.iter_mut().zip(xr).zip(sh).zip(sc) {
                *o = (v - mean) * rstd * (1.0 + s) + a;
            }
        }
    }
}

multiversion! {
    /// dx of each row: LayerNorm's backward of `gw = g (1 + scale)`.
    fn modulate_dx_rows(gr: Groups, first: usize, x: &[f32], g: &[f32], scale: &[f32], out: &mut [f32], eps: f32) {
        let d = gr.d;
        let mut xhat = vec![0f32; d];
        for (i, ((xr, gg), or)) in x.chunks_exact(d).zip(g.chunks_exact(d)).zip(out.chunks_exact_mut(d)).enumerate() {
            let m = gr.mod_offset(first + i);
            let (mean, rstd) = layer_stats(xr, eps);
            xhat.iter_mut().zip(xr).for_each(|(h, &v)| *h = (v - mean) * rstd);
            for ((o, &a), &s) in or.iter_mut().zip(gg).zip(&scale[m..m + d]) {
                *o = a * (1.0 + s);
            }
            normalized_grad(or, &xhat, rstd, true);
        }
    }
}

multiversion! {
    /// Adds each row's `g` into dshift and `g xhat` into dscale at its modulation row; `acc` = [dshift | dscale].
    fn modulate_param_rows(gr: Groups, first: usize, x: &[f32], g: &[f32], acc: &mut [f32], eps: f32) {
        let d = gr.d;
        let half = acc.len() / 2;
        let (dshift, dscale) = acc.split_at_mut(half);
        for (i, (xr, gg)) in x.chunks_exact(d).zip(g.chunks_exact(d)).enumerate() {
            let m = gr.mod_offset(first + i);
            let (mean, rstd) = layer_stats(xr, eps);
            dshift[m..m + d].iter_mut().zip(gg).for_each(|(s, &a)| *s += a);
            for ((s, &a), &v) in dscale[m..m + d].iter_mut().zip(gg).zip(xr) {
                *s += a * (v - mean) * rstd;
            }
        }
    }
}

multiversion! {
    fn gated_rows(gr: Groups, first: usize, x: &[f32], y: &[f32], gate: &[f32], out: &mut [f32]) {
        let d = gr.d;
        for (i, ((xr, yr), or)) in x.chunks_exact(d).zip(y.chunks_exact(d)).zip(out.chunks_exact_mut(d)).enumerate() {
            let m = gr.mod_offset(first + i);
            for (((o, &a), &b), &s) in or.iter_mut().zip(xr).zip(yr).zip(&gate[m..m + d]) {
                *o = a + b * s;
            }
        }
    }
}

multiversion! {
    /// dy = g gate for each row.
    fn gated_dy_rows(gr: Groups, first: usize, g: &[f32], gate: &[f32], out: &mut [f32]) {
        let d = gr.d;
        for (i, (gg, or)) in g.chunks_exact(d).zip(out.chunks_exact_mut(d)).enumerate() {
            let m = gr.mod_offset(first + i);
            for ((o, &a), &s) in or.iter_mut().zip(gg).zip(&gate[m..m + d]) {
                *o = a * s;
            }
        }
    }
}

multiversion! {
    /// Adds `g y` into dgate at each row's modulation row.
    fn gated_dgate_rows(gr: Groups, first: usize, g: &[f32], y: &[f32], acc: &mut [f32]) {
        let d = gr.d;
        for (i, (gg, yr)) in g.chunks_exact(d).zip(y.chunks_exact(d)).enumerate() {
            let m = gr.mod_offset(first + i);
            for ((s, &a), &b) in acc[m..m + d].iter_mut().zip(gg).zip(yr) {
                *s += a * b;
            }
        }
    }
}

struct Modulate {
    eps: f32,
}

impl CustomOp3 for Modulate {
    fn name(&self) -> &'static str {
        "orrery-adaln-modulate"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        shs: &CpuStorage,
        shl: &Layout,
        scs: &CpuStorage,
        scl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let gr = Groups::new(xl.dims(), shl.dims())?;
        Groups::new(xl.dims(), scl.dims())?;
        let x = f32_data(xs, xl, self.name())?;
        let (shift, scale) = (
            f32_data(shs, shl, self.name())?,
            f32_data(scs, scl, self.name())?,
        );
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, gr.d, |first, o| {
            let xr = &x[first * gr.d..first * gr.d + o.len()];
            modulate_rows(gr, first, xr, shift, scale, o, self.eps)
        });
        Ok(output(out, xl.shape()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        shift: &Tensor,
        scale: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let gr = Groups::new(x.dims(), shift.dims())?;
        let (d, rows, mod_len) = (gr.d, x.elem_count() / gr.d.max(1), shift.elem_count());
        let eps = self.eps;
        let (dx, sums) = with_f32(x, |x| {
            with_f32(grad, |g| {
                with_f32(scale, |scale| {
                    let mut dx = vec![0f32; x.len()];
                    par_rows(&mut dx, d, |first, o| {
                        let r = first * d..first * d + o.len();
                        modulate_dx_rows(gr, first, &x[r.clone()], &g[r], scale, o, eps)
                    });
                    let sums = par_row_sums(rows, d, 2 * mod_len, |first, count, acc| {
                        let r = first * d..(first + count) * d;
                        modulate_param_rows(gr, first, &x[r.clone()], &g[r], acc, eps)
                    });
                    (dx, sums)
                })
            })
        })???;
        let (dshift, dscale) = sums.split_at(mod_len);
        Ok((
            Some(tensor(dx, x.shape())?),
            Some(tensor(dshift.to_vec(), shift.shape())?),
            Some(tensor(dscale.to_vec(), scale.shape())?),
        ))
    }
}

struct Gated;

impl CustomOp3 for Gated {
    fn name(&self) -> &'static str {
        "orrery-gated-residual"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if xl.dims() != yl.dims() {
            candle_core::bail!(
                "gated residual: x {:?} and y {:?} differ",
                xl.dims(),
                yl.dims()
            );
        }
        let gr = Groups::new(xl.dims(), gl.dims())?;
        let (x, y) = (
            f32_data(xs, xl, self.name())?,
            f32_data(ys, yl, self.name())?,
        );
        let gate = f32_data(gs, gl, self.name())?;
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, gr.d, |first, o| {
            let r = first * gr.d..first * gr.d + o.len();
            gated_rows(gr, first, &x[r.clone()], &y[r], gate, o)
        });
        Ok(output(out, xl.shape()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        y: &Tensor,
        gate: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let gr = Groups::new(y.dims(), gate.dims())?;
        let (d, rows, mod_len) = (gr.d, y.elem_count() / gr.d.max(1), gate.elem_count());
        let (dy, dgate) = with_f32(grad, |g| {
            with_f32(gate, |gate| {
                let mut dy = vec![0f32; g.len()];
                par_rows(&mut dy, d, |first, o| {
                    let r = first * d..first * d + o.len();
                    gated_dy_rows(gr, first, &g[r], gate, o)
                });
                dy
            })
            .and_then(|dy| {
                let dgate = with_f32(y, |y| {
                    par_row_sums(rows, d, mod_len, |first, count, acc| {
                        let r = first * d..(first + count) * d;
                        gated_dgate_rows(gr, first, &g[r.clone()], &y[r], acc)
                    })
                })?;
                Ok((dy, dgate))
            })
        })??;
        Ok((
            Some(grad.clone()),
            Some(tensor(dy, y.shape())?),
            Some(tensor(dgate, gate.shape())?),
        ))
    }
}

/// `LayerNorm(x) (1 + scale) + shift` (LayerNorm without affine parameters): `x` (B, G, R, D), `shift` and
/// `scale` (B, G', 1, D) with G' = G or 1. Float32 CPU tensors.
pub fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor, eps: f64) -> Result<Tensor> {
    prepare(x)?.apply_op3(
        &prepare(shift)?,
        &prepare(scale)?,
        Modulate { eps: eps as f32 },
    )
}

/// `x + gate y`: `x`, `y` (B, G, R, D), `gate` (B, G', 1, D) with G' = G or 1. Float32 CPU tensors.
pub fn gated_residual(x: &Tensor, y: &Tensor, gate: &Tensor) -> Result<Tensor> {
    prepare(x)?.apply_op3(&prepare(y)?, &prepare(gate)?, Gated)
}

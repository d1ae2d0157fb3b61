//! LayerNorm (with or without affine parameters) and RMSNorm over the last dimension, one pass per row forward
//! and backward; parameter gradients are summed over rows in parallel.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::math::{centred_square_sum, dot, sum};
use super::storage::{
    f32_data, multiversion, output, par_row_sums, par_rows, prepare, tensor, with_f32,
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// `(x - mean) / sqrt(var + eps)`, biased variance.
    Layer,
    /// `x / sqrt(mean(x^2) + eps)`.
    Rms,
}

/// (mean, 1 / std) of one row: the mean is 0 for RMSNorm.
#[inline(always)]
fn row_stats(kind: Kind, x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    match kind {
        Kind::Layer => {
            let mean = sum(x) / n;
            let var = centred_square_sum(x, mean) / n;
            (mean, 1.0 / (var + eps).sqrt())
        }
        Kind::Rms => (0.0, 1.0 / (dot(x, x) / n + eps).sqrt()),
    }
}

/// LayerNorm's (mean, 1 / std) of one row.
#[inline(always)]
pub(super) fn layer_stats(x: &[f32], eps: f32) -> (f32, f32) {
    row_stats(Kind::Layer, x, eps)
}

/// The input gradient of one normalised row, in place: `gw` (the output gradient times the scale) becomes
/// `rstd (gw - mean(gw) - xhat mean(gw xhat))`, without the `mean(gw)` term when not `centred` (RMSNorm).
#[inline(always)]
pub(super) fn normalized_grad(gw: &mut [f32], xhat: &[f32], rstd: f32, centred: bool) {
    let inv_n = 1.0 / gw.len().max(1) as f32;
    let mean_gw = if centred { sum(gw) * inv_n } else { 0.0 };
    let mean_gw_xhat = dot(gw, xhat) * inv_n;
    for (o, &h) in gw.iter_mut().zip(xhat) {
        *o = rstd * (*o - mean_gw - h * mean_gw_xhat);
    }
}

multiversion! {
    /// `out = xhat * w + b` for each `n`-element row (absent `w`/`b`: 1/0).
    fn forward_rows(kind: Kind, x: &[f32], w: Option<&[f32]>, b: Option<&[f32]>, out: &mut [f32], n: usize, eps: f32) {
        for (xr, or) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            let (mean, rstd) = row_stats(kind, xr, eps);
            for (o, &v) in or.iter_mut().zip(xr) {
                *o = (v - mean) * rstd;
            }
            if let Some(w) = w {
                or.iter_mut().zip(w).for_each(|(o, &s)| *o *= s);
            }
            if let Some(b) = b {
                or.iter_mut().zip(b).for_each(|(o, &s)| *o += s);
            }
        }
    }
}

multiversion! {
    /// Input gradient of each row: with `gw = g * w`,
    /// `dx = rstd (gw - mean(gw) - xhat mean(gw xhat))` (LayerNorm) or `rstd (gw - xhat mean(gw xhat))` (RMS).
    fn backward_rows(kind: Kind, x: &[f32], g: &[f32], w: Option<&[f32]>, out: &mut [f32], n: usize, eps: f32) {
        let mut xhat = vec![0f32; n];
        for ((xr, gr), or) in x.chunks_exact(n).zip(g.chunks_exact(n)).zip(out.chunks_exact_mut(n)) {
            let (mean, rstd) = row_stats(kind, xr, eps);
            xhat.iter_mut().zip(xr).for_each(|(h, &v)| *h = (v - mean) * rstd);
            // out holds gw first.
            match w {
                Some(w) => or.iter_mut().zip(gr.iter().zip(w)).for_each(|(o, (&a, &s))| *o = a * s),
                None => or.copy_from_slice(gr),
            }
            normalized_grad(or, &xhat, rstd, kind == Kind::Layer);
        }
    }
}

multiversion! {
    /// Adds `sum_rows g xhat` to `dw` and `sum_rows g` to `db` (when asked) over `rows` rows.
    fn param_grad_rows(kind: Kind, x: &[f32], g: &[f32], n: usize, eps: f32, dw: &mut [f32], db: Option<&mut [f32]>) {
        for (xr, gr) in x.chunks_exact(n).zip(g.chunks_exact(n)) {
            let (mean, rstd) = row_stats(kind, xr, eps);
            for ((d, &v), &a) in dw.iter_mut().zip(xr).zip(gr) {
                *d += a * (v - mean) * rstd;
            }
        }
        if let Some(db) = db {
            for gr in g.chunks_exact(n) {
                db.iter_mut().zip(gr).for_each(|(d, &a)| *d += a);
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Norm {
    kind: Kind,
    eps: f32,
}

impl Norm {
    fn forward(
        &self,
        x: &[f32],
        layout: &Layout,
        w: Option<&[f32]>,
        b: Option<&[f32]>,
    ) -> Result<(CpuStorage, Shape)> {
        let n = row_len(layout);
        for p in [w, b].into_iter().flatten() {
            if p.len() != n {
                candle_core::bail!("norm: parameter of {} elements for rows of {n}", p.len());
            }
        }
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, n, |first, o| {
            let xr = &x[first * n..first * n + o.len()];
            forward_rows(self.kind, xr, w, b, o, n, self.eps)
        });
        Ok(output(out, layout.shape()))
    }

    /// (dx, dw, db): dw when `w` is given, db when `with_bias`.
    fn backward(
        &self,
        x: &Tensor,
        grad: &Tensor,
        w: Option<&Tensor>,
        with_bias: bool,
    ) -> Result<(Tensor, Option<Tensor>, Option<Tensor>)> {
        let n = x.dims().last().copied().unwrap_or(1).max(1);
        let rows = x.elem_count() / n;
        let w_data = w.map(|w| with_f32(w, <[f32]>::to_vec)).transpose()?;
        let (dx, dw, db) = with_f32(x, |x| {
            with_f32(grad, |g| {
                let mut dx = vec![0f32; x.len()];
                par_rows(&mut dx, n, |first, o| {
                    let r = first * n..first * n + o.len();
                    backward_rows(
                        self.kind,
                        &x[r.clone()],
                        &g[r],
                        w_data.as_deref(),
                        o,
                        n,
                        self.eps,
                    )
                });
                let width = if with_bias { 2 * n } else { n };
                let sums = w_data.as_ref().map(|_| {
                    par_row_sums(rows, n, width, |first, count, acc| {
                        let r = first * n..(first + count) * n;
                        let (dw, db) = acc.split_at_mut(n);
                        let db = with_bias.then_some(db);
                        param_grad_rows(self.kind, &x[r.clone()], &g[r], n, self.eps, dw, db)
                    })
                });
                let (dw, db) = match sums {
                    Some(mut s) => {
                        let db = with_bias.then(|| s.split_off(n));
                        (Some(s), db)
                    }
                    None => (None, None),
                };
                (dx, dw, db)
            })
        })??;
        let param = |d: Option<Vec<f32>>| d.map(|d| tensor(d, &Shape::from(n))).transpose();
        Ok((tensor(dx, x.shape())?, param(dw)?, param(db)?))
    }
}

fn row_len(layout: &Layout) -> usize {
    layout.dims().last().copied().unwrap_or(1).max(1)
}

impl CustomOp1 for Norm {
    fn name(&self) -> &'static str {
        "orrery-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        self.forward(f32_data(s, l, CustomOp1::name(self))?, l, None, None)
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.backward(x, grad, None, false)?.0))
    }
}

impl CustomOp2 for Norm {
    fn name(&self) -> &'static str {
        "orrery-norm-weight"
    }

    fn cpu_fwd(
        &self,
        s: &CpuStorage,
        l: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let w = f32_data(ws, wl, CustomOp2::name(self))?;
        self.forward(f32_data(s, l, CustomOp2::name(self))?, l, Some(w), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.backward(x, grad, Some(w), false)?;
        Ok((Some(dx), dw))
    }
}

impl CustomOp3 for Norm {
    fn name(&self) -> &'static str {
        "orrery-norm-affine"
    }

    fn cpu_fwd(
        &self,
        s: &CpuStorage,
        l: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = CustomOp3::name(self);
        let (w, b) = (f32_data(ws, wl, name)?, f32_data(bs, bl, name)?);
        self.forward(f32_data(s, l, name)?, l, Some(w), Some(b))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = self.backward(x, grad, Some(w), true)?;
        Ok((Some(dx), dw, db))
    }
}

/// LayerNorm over the last dimension of a float32 CPU tensor, `(x - mean) / sqrt(var + eps)` (biased variance),
/// then `* weight + bias` when given (both of the last dimension's size).
pub fn layer_norm(x: &Tensor, affine: Option<(&Tensor, &Tensor)>, eps: f64) -> Result<Tensor> {
    let op = Norm {
        kind: Kind::Layer,
        eps: eps as f32,
    };
    let x = prepare(x)?;
    match affine {
        None => x.apply_op1(op),
        Some((w, b)) => x.apply_op3(&prepare(w)?, &prepare(b)?, op),
    }
}

/// RMSNorm over the last dimension of a float32 CPU tensor: `x / sqrt(mean(x^2) + eps) * weight`.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let op = Norm {
        kind: Kind::Rms,
        eps: eps as f32,
    };
    prepare(x)?.apply_op2(&prepare(weight)?, op)
}

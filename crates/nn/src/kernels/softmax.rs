//! Softmax over the last dimension; backward `dx = y (g - sum(g y))` from the saved output.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, D};

use super::math::{dot, exp, max, sum};
use super::storage::{f32_data, multiversion, output, par_rows, prepare};

multiversion! {
    /// Softmax of each `n`-element row of `x` into `out`.
    fn softmax_rows(x: &[f32], out: &mut [f32], n: usize) {
        for (xr, or) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            let top = max(xr);
            // A row of -inf (everything masked) gives zeros rather than NaN.
            let shift = if top == f32::NEG_INFINITY { 0.0 } else { top };
            for (o, &v) in or.iter_mut().zip(xr) {
                *o = exp(v - shift);
            }
            let total = sum(or);
            let inv = if total > 0.0 { 1.0 / total } else { 0.0 };
            or.iter_mut().for_each(|o| *o *= inv);
        }
    }
}

multiversion! {
    fn softmax_backward_rows(y: &[f32], g: &[f32], out: &mut [f32], n: usize) {
        for ((yr, gr), or) in y.chunks_exact(n).zip(g.chunks_exact(n)).zip(out.chunks_exact_mut(n)) {
            let yg = dot(yr, gr);
            for ((o, &a), &b) in or.iter_mut().zip(yr).zip(gr) {
                *o = a * (b - yg);
            }
        }
    }
}

struct Softmax;
struct SoftmaxGrad;

fn last_dim(layout: &Layout) -> usize {
    layout.dims().last().copied().unwrap_or(1).max(1)
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "orrery-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(storage, layout, self.name())?;
        let n = last_dim(layout);
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, n, |first, o| {
            softmax_rows(&x[first * n..first * n + o.len()], o, n)
        });
        Ok(output(out, layout.shape()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = prepare(grad)?;
        Ok(Some(res.apply_op2_no_bwd(&g, &SoftmaxGrad)?))
    }
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "orrery-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = f32_data(ys, yl, self.name())?;
        let g = f32_data(gs, gl, self.name())?;
        let n = last_dim(yl);
        let mut out = vec![0f32; y.len()];
        par_rows(&mut out, n, |first, o| {
            let r = first * n..first * n + o.len();
            softmax_backward_rows(&y[r.clone()], &g[r], o, n)
        });
        Ok(output(out, yl.shape()))
    }
}

/// Softmax over the last dimension of a float32 CPU tensor.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.dims().is_empty() || x.dim(D::Minus1)? == 0 {
        return prepare(x);
    }
    prepare(x)?.apply_op1(Softmax)
}

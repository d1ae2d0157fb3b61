//! Rotary embedding in the "rotate half" layout, `x cos + rotate_half(x) sin` with rotate_half(x) = [-x2, x1],
//! one pass forward and backward (the backward rotates the gradient the other way). The cos/sin tables are
//! constants: they get no gradient.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::storage::{f32_data, multiversion, output, par_rows, prepare, tensor, with_f32};

multiversion! {
    /// Rotates rows of `x` (row `first + i` at position `(first + i) % positions`); `sign` -1 applies the inverse
    /// rotation (the backward pass).
    fn rope_rows(first: usize, x: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32], dh: usize, positions: usize, sign: f32) {
        let half = dh / 2;
        for (i, (xr, or)) in x.chunks_exact(dh).zip(out.chunks_exact_mut(dh)).enumerate() {
            let at = ((first + i) % positions) * dh;
            let (c, s) = (&cos[at..at + dh], &sin[at..at + dh]);
            let (x1, x2) = xr.split_at(half);
            let (o1, o2) = or.split_at_mut(half);
            if sign > 0.0 {
                for j in 0..half {
                    o1[j] = x1[j] * c[j] - x2[j] * s[j];
                    o2[j] = x2[j] * c[half + j] + x1[j] * s[half + j];
                }
            } else {
                for j in 0..half {
                    o1[j] = x1[j] * c[j] + x2[j] * s[half + j];
                    o2[j] = x2[j] * c[half + j] - x1[j] * s[j];
                }
            }
        }
    }
}

struct Rope;

fn rope(
    x: &[f32],
    shape: &Shape,
    cos: &[f32],
    sin: &[f32],
    tables: &[usize],
    sign: f32,
) -> Result<Vec<f32>> {
    let dims = shape.dims();
    let (Some(&dh), Some(&l), &[tl, td]) = (dims.last(), dims.iter().rev().nth(1), tables) else {
        candle_core::bail!(
            "rope: x (..., L, Dh) and tables (L, Dh) expected, got {dims:?} and {tables:?}"
        )
    };
    if tl != l || td != dh || dh % 2 != 0 {
        candle_core::bail!("rope: tables {tables:?} do not fit x {dims:?} (Dh must be even)");
    }
    let mut out = vec![0f32; x.len()];
    par_rows(&mut out, dh, |first, o| {
        let xr = &x[first * dh..first * dh + o.len()];
        rope_rows(first, xr, cos, sin, o, dh, l, sign)
    });
    Ok(out)
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "orrery-rope"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        cs: &CpuStorage,
        cl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if cl.dims() != sl.dims() {
            candle_core::bail!("rope: cos {:?} and sin {:?} differ", cl.dims(), sl.dims());
        }
        let (x, cos, sin) = (
            f32_data(xs, xl, self.name())?,
            f32_data(cs, cl, self.name())?,
            f32_data(ss, sl, self.name())?,
        );
        Ok(output(
            rope(x, xl.shape(), cos, sin, cl.dims(), 1.0)?,
            xl.shape(),
        ))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dx = with_f32(grad, |g| {
            with_f32(cos, |c| {
                with_f32(sin, |s| rope(g, grad.shape(), c, s, cos.dims(), -1.0))
            })
        })????;
        Ok((Some(tensor(dx, grad.shape())?), None, None))
    }
}

/// Rotary embedding, rotate-half layout: `x` (..., L, Dh), `cos`/`sin` (L, Dh), float32 CPU tensors.
pub fn rotate_half_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    prepare(x)?.apply_op3(&prepare(cos)?, &prepare(sin)?, Rope)
}

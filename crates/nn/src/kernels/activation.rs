//! Element-wise activations: GELU (erf and tanh forms) and SiLU, forward and backward in one pass each.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

use super::math::{erf, exp, sigmoid, tanh};
use super::storage::{f32_data, multiversion, output, par_rows, prepare};

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi)
const INV_SQRT_2PI: f32 = 0.398_942_3;
const GELU_TANH_C: f32 = 0.044_715;

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    GeluErf,
    GeluTanh,
    Silu,
}

#[inline(always)]
pub(super) fn forward_one(kind: Kind, x: f32) -> f32 {
    match kind {
        Kind::GeluErf => 0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2)),
        Kind::GeluTanh => 0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + GELU_TANH_C * x * x * x))),
        Kind::Silu => x * sigmoid(x),
    }
}

/// d activation / dx.
#[inline(always)]
pub(super) fn derivative(kind: Kind, x: f32) -> f32 {
    match kind {
        Kind::GeluErf => {
            let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
            cdf + x * INV_SQRT_2PI * exp(-0.5 * x * x)
        }
        Kind::GeluTanh => {
            let t = tanh(SQRT_2_OVER_PI * (x + GELU_TANH_C * x * x * x));
            let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_C * x * x);
            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
        }
        Kind::Silu => {
            let s = sigmoid(x);
            s * (1.0 + x * (1.0 - s))
        }
    }
}

// One loop per kind, so that each vectorises without a per-element branch.
multiversion! {
    fn forward_loop(kind: Kind, x: &[f32], out: &mut [f32]) {
        match kind {
            Kind::GeluErf => out.iter_mut().zip(x).for_each(|(o, &v)| *o = forward_one(Kind::GeluErf, v)),
            Kind::GeluTanh => out.iter_mut().zip(x).for_each(|(o, &v)| *o = forward_one(Kind::GeluTanh, v)),
            Kind::Silu => out.iter_mut().zip(x).for_each(|(o, &v)| *o = forward_one(Kind::Silu, v)),
        }
    }
}

multiversion! {
    fn backward_loop(kind: Kind, x: &[f32], g: &[f32], out: &mut [f32]) {
        let it = out.iter_mut().zip(x.iter().zip(g));
        match kind {
            Kind::GeluErf => it.for_each(|(o, (&v, &d))| *o = d * derivative(Kind::GeluErf, v)),
            Kind::GeluTanh => it.for_each(|(o, (&v, &d))| *o = d * derivative(Kind::GeluTanh, v)),
            Kind::Silu => it.for_each(|(o, (&v, &d))| *o = d * derivative(Kind::Silu, v)),
        }
    }
}

struct Activation(Kind);
struct ActivationGrad(Kind);

impl CustomOp1 for Activation {
    fn name(&self) -> &'static str {
        "orrery-activation"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(storage, layout, self.name())?;
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, 1, |first, o| {
            forward_loop(self.0, &x[first..first + o.len()], o)
        });
        Ok(output(out, layout.shape()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = prepare(grad)?;
        Ok(Some(arg.apply_op2_no_bwd(&g, &ActivationGrad(self.0))?))
    }
}

impl CustomOp2 for ActivationGrad {
    fn name(&self) -> &'static str {
        "orrery-activation-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(xs, xl, self.name())?;
        let g = f32_data(gs, gl, self.name())?;
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, 1, |first, o| {
            let r = first..first + o.len();
            backward_loop(self.0, &x[r.clone()], &g[r], o)
        });
        Ok(output(out, xl.shape()))
    }
}

fn apply(x: &Tensor, kind: Kind) -> Result<Tensor> {
    prepare(x)?.apply_op1(Activation(kind))
}

/// Exact GELU, `x Phi(x)`, of a float32 CPU tensor.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    apply(x, Kind::GeluErf)
}

/// GELU's tanh approximation, `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    apply(x, Kind::GeluTanh)
}

/// SiLU, `x sigmoid(x)`.
pub fn silu(x: &Tensor) -> Result<Tensor> {
    apply(x, Kind::Silu)
}

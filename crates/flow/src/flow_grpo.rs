//! The Flow-GRPO SDE step (posttraining spec section 3.3; `sd3_sde_with_logprob`), an alternative RL rollout
//! sampler in rectified-flow time: from t to t' < t (dt = t' - t) with velocity v,
//! `mean = x + [v + sigma_t^2 / (2 t) (x + (1 - t) v)] dt`, `std = sigma_t sqrt(-dt)`,
//! `sigma_t = a sqrt(t / (1 - t))` (`noise_level` a, 0.7 released).

use crate::error::{FlowError, Result};

/// The released noise level a.
pub const NOISE_LEVEL: f64 = 0.7;

/// `mean = c_x x + c_v v` and the std of one SDE step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SdeStep {
    pub c_x: f64,
    pub c_v: f64,
    pub std: f64,
}

impl SdeStep {
    /// The step from RF time `t` to `t_next` (< t, > 0) at noise level `a`; at t = 1, where sigma_t is infinite,
    /// the reference takes sigma_t at `t_next` (its `sigmas[1]`).
    pub fn new(t: f64, t_next: f64, a: f64) -> Result<Self> {
        if !(0.0 < t_next && t_next < t && t <= 1.0 && a >= 0.0 && a.is_finite()) {
            return Err(FlowError::Sampler(format!(
                "SDE step from {t} to {t_next} at noise level {a}: expected 0 < t_next < t <= 1 and a >= 0"
            )));
        }
        let at = if t >= 1.0 { t_next } else { t };
        let sigma = a * (at / (1.0 - at)).sqrt();
        let dt = t_next - t;
        let k = sigma * sigma / (2.0 * t) * dt;
        Ok(Self {
            c_x: 1.0 + k,
            c_v: dt + k * (1.0 - t),
            std: sigma * (-dt).sqrt(),
        })
    }
}

/// `log N(x'; mean, std^2)` per element: `-(x' - mean)^2 / (2 std^2) - log std - log(2 pi) / 2`.
pub fn gaussian_log_density(residual: f64, std: f64) -> f64 {
    -residual * residual / (2.0 * std * std) - std.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_matches_the_formula() {
        let (t, tn, a) = (0.8, 0.6, 0.7);
        let s = SdeStep::new(t, tn, a).unwrap();
        let (x, v) = (0.3, -1.1);
        let sigma: f64 = a * (t / (1.0 - t)).sqrt();
        let dt = tn - t;
        let mean = x + (v + sigma * sigma / (2.0 * t) * (x + (1.0 - t) * v)) * dt;
        assert!((s.c_x * x + s.c_v * v - mean).abs() < 1e-14);
        assert!((s.std - sigma * (-dt).sqrt()).abs() < 1e-14);
        // No noise: the ODE's Euler step.
        let ode = SdeStep::new(t, tn, 0.0).unwrap();
        assert_eq!((ode.c_x, ode.c_v, ode.std), (1.0, dt, 0.0));
        assert!(SdeStep::new(0.5, 0.6, a).is_err());
        assert!(SdeStep::new(1.0, 0.9, a).unwrap().std.is_finite());
    }

    #[test]
    fn log_density_integrates_to_one() {
        let std = 0.37;
        let h = 1e-3;
        let total: f64 = (-5000..5000)
            .map(|i| gaussian_log_density(i as f64 * h, std).exp() * h)
            .sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
    }
}

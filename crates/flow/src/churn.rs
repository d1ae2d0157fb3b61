//! The rollout sampler of Cosmos RL post-training (posttraining spec section 3.2; cosmos-rl
//! `differential_equation_solver` with solver "2ab" and `s_churn` 1): EDM sigmas (`x = x0 + sigma e`), Karras
//! steps from `sigma_max` to `sigma_min`, and at each step the churn of Karras et al. Algorithm 2 before a
//! second-order multistep update in x0 (Adams-Bashforth in log sigma, `res_x0_rk2_step`), Euler on the first step.
//!
//! Step i from sigma_i to sigma_{i+1}:
//! - `sigma_hat = (1 + eta) sigma_i`, `x_hat = x + sqrt(sigma_hat^2 - sigma_i^2) s_noise xi`;
//! - `mu = a_x x_hat + a_x0 D(x_hat, sigma_hat) + a_prev x0_prev` ([`Multistep::coefficients`]);
//! - the next step's churned input is `mu + sqrt(sigma_hat_{i+1}^2 - sigma_{i+1}^2) s_noise xi'`, so the
//!   transition `x_hat_i -> x_hat_{i+1}` is Gaussian around `mu` with std [`transition_std`].
//!
//! Only the scalar coefficients live here; the tensors are combined by the caller.

use crate::error::{FlowError, Result};

/// The sampler's settings; defaults are the released RL run's (`s_churn` 1, `s_noise` 1, sigmas 200 to 0.01,
/// rho 7).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChurnSchedule {
    pub steps: usize,
    pub sigma_min: f64,
    pub sigma_max: f64,
    pub rho: f64,
    pub s_churn: f64,
    pub s_noise: f64,
}

impl ChurnSchedule {
    /// The released settings at `steps` steps.
    pub fn released(steps: usize) -> Self {
        Self {
            steps,
            sigma_min: 0.01,
            sigma_max: 200.0,
            rho: 7.0,
            s_churn: 1.0,
            s_noise: 1.0,
        }
    }

    pub fn check(&self) -> Result<()> {
        let ok = self.steps >= 1
            && self.sigma_min > 0.0
            && self.sigma_max > self.sigma_min
            && self.sigma_max.is_finite()
            && self.rho > 0.0
            && self.s_churn >= 0.0
            && self.s_noise >= 0.0
            && self.s_churn.is_finite()
            && self.s_noise.is_finite();
        if ok {
            Ok(())
        } else {
            Err(FlowError::Schedule(format!(
                "churn sampler: {self:?} (expected steps >= 1, 0 < sigma_min < sigma_max, rho > 0, s_churn and \
                 s_noise >= 0)"
            )))
        }
    }

    /// `steps + 1` sigmas from `sigma_max` down to `sigma_min` (`get_rev_ts`).
    pub fn sigmas(&self) -> Vec<f64> {
        let (lo, hi) = (
            self.sigma_min.powf(1.0 / self.rho),
            self.sigma_max.powf(1.0 / self.rho),
        );
        (0..=self.steps)
            .map(|i| (hi + i as f64 / self.steps as f64 * (lo - hi)).powf(self.rho))
            .collect()
    }

    /// The churn `eta = min(s_churn / (steps + 1), sqrt 1.2 - 1)`.
    pub fn eta(&self) -> f64 {
        (self.s_churn / (self.steps + 1) as f64).min(1.2f64.sqrt() - 1.0)
    }

    /// The churned sigma `(1 + eta) sigma`.
    pub fn churned(&self, sigma: f64) -> f64 {
        (1.0 + self.eta()) * sigma
    }

    /// Std of the noise the churn adds at `sigma`: `sqrt(sigma_hat^2 - sigma^2) s_noise`, which equals
    /// [`Self::transition_std`] at the same sigma.
    pub fn churn_std(&self, sigma: f64) -> f64 {
        let hat = self.churned(sigma);
        (hat * hat - sigma * sigma).max(0.0).sqrt() * self.s_noise
    }

    /// Std of the transition to the churned input at `sigma_next`: `sigma_next sqrt(eta^2 + 2 eta) s_noise`.
    pub fn transition_std(&self, sigma_next: f64) -> f64 {
        let eta = self.eta();
        sigma_next * (eta * eta + 2.0 * eta).sqrt() * self.s_noise
    }
}

/// `(exp(h) - 1) / h`, 1 at 0.
pub fn phi1(h: f64) -> f64 {
    if h == 0.0 {
        1.0
    } else {
        h.exp_m1() / h
    }
}

/// `(phi1(h) - 1) / h`, 1/2 at 0.
pub fn phi2(h: f64) -> f64 {
    if h == 0.0 {
        0.5
    } else {
        (phi1(h) - 1.0) / h
    }
}

/// The "2ab" update from sigma `s` to `t` as a combination of the input, its x0 prediction and the previous
/// step's x0 prediction (made at sigma `prev`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Multistep {
    pub a_x: f64,
    pub a_x0: f64,
    pub a_prev: f64,
}

impl Multistep {
    /// Euler in x0 on the first step (`reg_x0_euler_step`: `(s - t)/s x0 + t/s x`); later steps the exponential
    /// integrator with the previous prediction (`res_x0_rk2_step` in `lambda = -log sigma`).
    pub fn coefficients(s: f64, t: f64, prev: Option<f64>) -> Result<Self> {
        let Some(s1) = prev else {
            return Ok(Self {
                a_x: t / s,
                a_x0: (s - t) / s,
                a_prev: 0.0,
            });
        };
        let (ls, lt, lm) = (-s.ln(), -t.ln(), -s1.ln());
        let dt = lt - ls;
        if dt.abs() <= 1e-6 || (lm - ls).abs() <= 1e-6 {
            return Err(FlowError::Sampler(format!(
                "2ab step from sigma {s} to {t} (previous {s1}): step size is too small"
            )));
        }
        let c2 = (lm - ls) / dt;
        let (p1, p2) = (phi1(-dt), phi2(-dt));
        Ok(Self {
            a_x: (-dt).exp(),
            a_x0: dt * (p1 - p2 / c2),
            a_prev: dt * (p2 / c2),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmas_run_from_max_to_min() {
        let s = ChurnSchedule::released(20).sigmas();
        assert_eq!(s.len(), 21);
        assert!((s[0] - 200.0).abs() < 1e-9 && (s[20] - 0.01).abs() < 1e-12);
        assert!(s.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn eta_and_stds_as_released() {
        let c = ChurnSchedule::released(20);
        assert!((c.eta() - 1.0 / 21.0).abs() < 1e-15);
        // With few steps the cap sqrt(1.2) - 1 holds.
        assert!((ChurnSchedule::released(2).eta() - (1.2f64.sqrt() - 1.0)).abs() < 1e-15);
        for sigma in [0.01, 1.0, 37.0] {
            assert!((c.churn_std(sigma) - c.transition_std(sigma)).abs() < 1e-12 * sigma.max(1.0));
        }
    }

    #[test]
    fn multistep_is_exact_on_a_constant_prediction() {
        // x = x0 + sigma e with x0 fixed: every consistent update lands on x0 + t e.
        let (x0, e) = (0.7, -1.3);
        for (s, t, prev) in [
            (10.0, 4.0, None),
            (4.0, 1.5, Some(10.0)),
            (1.5, 0.01, Some(4.2)),
        ] {
            let m = Multistep::coefficients(s, t, prev).unwrap();
            let mu = m.a_x * (x0 + s * e) + m.a_x0 * x0 + m.a_prev * x0;
            assert!((mu - (x0 + t * e)).abs() < 1e-12, "{s} -> {t}: {mu}");
        }
    }

    #[test]
    fn multistep_matches_the_reference_formula() {
        // res_x0_rk2_step written out for s = 5, t = 2, s1 = 9.
        let (s, t, s1) = (5.0f64, 2.0f64, 9.0f64);
        let dt = -t.ln() + s.ln();
        let c2 = (-s1.ln() + s.ln()) / dt;
        let p1 = ((-dt).exp() - 1.0) / -dt;
        let p2 = (p1 - 1.0) / -dt;
        let m = Multistep::coefficients(s, t, Some(s1)).unwrap();
        assert!((m.a_x - (-dt).exp()).abs() < 1e-15);
        assert!((m.a_x0 - dt * (p1 - p2 / c2)).abs() < 1e-14);
        assert!((m.a_prev - dt * p2 / c2).abs() < 1e-14);
        assert!(Multistep::coefficients(s, s, Some(s1)).is_err());
    }
}

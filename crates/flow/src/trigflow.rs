//! TrigFlow time, as the released distilled Cosmos-Predict2.5 model and its DMD2 training use it (posttraining spec
//! section 2.1): `x_t = cos t x0 + sin t e` with t in [0, pi/2] and sigma_data 1. A rectified-flow network is
//! called at RF time `s = sin t / (cos t + sin t)` on the input `c_in x_t` (`RectifiedFlow_sCMWrapper`), and its
//! velocity v gives `x0 = c_skip x_t + c_out v`.

use std::f64::consts::FRAC_PI_2;

use crate::noise::FastRng;

/// The student's four sample times `[pi/2, atan 15, atan 5, atan 5/3]` (`selected_sampling_time`): RF sigmas
/// 1, 0.9375, 0.8333, 0.625, a uniform 4-step grid shifted by 5.
pub fn distilled_times() -> [f64; 4] {
    [FRAC_PI_2, 15f64.atan(), 5f64.atan(), (5.0f64 / 3.0).atan()]
}

/// The noise level of conditioning frames (`sigma_conditional`): they are clean, at time `atan(1e-4)`.
pub const SIGMA_CONDITIONAL: f64 = 1e-4;

/// The preconditioning of a rectified-flow network at TrigFlow time t (float64, as the reference computes it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrigScaling {
    pub c_skip: f64,
    pub c_out: f64,
    pub c_in: f64,
    /// The network's timestep: the RF time s in [0, 1].
    pub c_noise: f64,
}

impl TrigScaling {
    pub fn at(t: f64) -> Self {
        let (sin, cos) = t.sin_cos();
        let denom = cos + sin;
        Self {
            c_skip: 1.0 / denom,
            c_out: -sin / denom,
            c_in: 1.0 / denom,
            c_noise: sin / denom,
        }
    }
}

/// The network timestep of conditioning frames: `c_noise(atan(sigma_conditional))`.
pub fn conditioning_timestep() -> f64 {
    TrigScaling::at(SIGMA_CONDITIONAL.atan()).c_noise
}

/// The TrigFlow time of RF sigma s: `atan(s / (1 - s))` (pi/2 at s = 1).
pub fn time_of_rf_sigma(s: f64) -> f64 {
    if s >= 1.0 {
        FRAC_PI_2
    } else {
        (s / (1.0 - s)).atan()
    }
}

/// The critic's time (`draw_training_time_D` with `timestep_shift`): u ~ U(0, 1), RF sigma
/// `shift u / (1 + (shift - 1) u)`, TrigFlow time of that sigma.
pub fn draw_critic_time(rng: &mut FastRng, shift: f64) -> f64 {
    let u = rng.next_f64();
    time_of_rf_sigma(shift * u / (1.0 + (shift - 1.0) * u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_times_are_the_shifted_uniform_grid() {
        let rf: Vec<f64> = distilled_times()
            .iter()
            .map(|&t| TrigScaling::at(t).c_noise)
            .collect();
        // A uniform grid 1, 0.75, 0.5, 0.25 shifted by 5: 5u / (1 + 4u).
        for (s, u) in rf.iter().zip([1.0, 0.75, 0.5, 0.25]) {
            assert!((s - 5.0 * u / (1.0 + 4.0 * u)).abs() < 1e-12, "{s}");
        }
        for &t in &distilled_times() {
            assert!((time_of_rf_sigma(TrigScaling::at(t).c_noise) - t).abs() < 1e-12);
        }
    }

    #[test]
    fn the_scaling_recovers_data_from_the_true_velocity() {
        // x_t = cos t x0 + sin t e is the RF point (1 - s) x0 + s e scaled by 1 / c_in; v = e - x0.
        let (x0, e) = (0.7f64, -1.3f64);
        for t in [0.01, 0.4, 1.0, 1.5, FRAC_PI_2] {
            let c = TrigScaling::at(t);
            let xt = t.cos() * x0 + t.sin() * e;
            let s = c.c_noise;
            assert!((c.c_in * xt - ((1.0 - s) * x0 + s * e)).abs() < 1e-12);
            let x0_hat = c.c_skip * xt + c.c_out * (e - x0);
            assert!((x0_hat - x0).abs() < 1e-12, "t {t}: {x0_hat}");
        }
        assert!((conditioning_timestep() - 1e-4 / (1.0 + 1e-4)).abs() < 1e-15);
    }

    #[test]
    fn critic_times_lean_to_high_noise() {
        let mut rng = FastRng::new(3);
        let times: Vec<f64> = (0..20_000)
            .map(|_| draw_critic_time(&mut rng, 5.0))
            .collect();
        assert!(times.iter().all(|t| (0.0..=FRAC_PI_2).contains(t)));
        let mean_rf: f64 = times
            .iter()
            .map(|&t| TrigScaling::at(t).c_noise)
            .sum::<f64>()
            / times.len() as f64;
        // E[5u / (1 + 4u)] = 5/4 (1 - ln 5 / 4) = 0.747.
        assert!((mean_rf - 0.747).abs() < 0.01, "{mean_rf}");
    }
}

//! Inference schedules exactly as the official `FlowUniPCMultistepScheduler.set_timesteps` builds them
//! (`cosmos_predict2/_src/predict2/models/fm_solvers_unipc.py`, constructed with shift 1 and
//! `num_train_timesteps` 1000): float64 sigmas, network timesteps `int64(sigma * 1000)`, then the sigmas cast to
//! float32 with a final 0 appended.

use crate::error::{FlowError, Result};

/// The sigmas a sampler steps through and the timesteps the network is fed at each of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// N + 1 values, the last one 0 (float32 values, as the official scheduler stores them).
    pub sigmas: Vec<f32>,
    /// N network timesteps in scheduler units (0..1000); the network sees them x 0.001.
    pub timesteps: Vec<i64>,
}

/// The training table's largest sigma, `1 - linspace(1, 1/1000, 1000)[::-1]` in float32 (0.999).
fn sigma_max() -> f64 {
    (1.0f64 - 1.0 / 1000.0) as f32 as f64
}

impl Schedule {
    fn finish(sigmas: Vec<f64>) -> Self {
        let timesteps = sigmas.iter().map(|s| (s * 1000.0) as i64).collect();
        let mut out: Vec<f32> = sigmas.iter().map(|&s| s as f32).collect();
        out.push(0.0);
        Self {
            sigmas: out,
            timesteps,
        }
    }

    /// `linspace(sigma_max, 0, steps + 1)[:-1]` shifted by `shift * s / (1 + (shift - 1) s)`: `steps` model calls.
    pub fn shifted(steps: usize, shift: f64) -> Result<Self> {
        if steps == 0 || !(shift > 0.0 && shift.is_finite()) {
            return Err(FlowError::Schedule(format!(
                "steps {steps} and shift {shift} must be positive"
            )));
        }
        let max = sigma_max();
        let sigmas = (0..steps)
            .map(|i| max - (max - 0.0) * i as f64 / steps as f64)
            .map(|s| shift * s / (1.0 + (shift - 1.0) * s))
            .collect();
        Ok(Self::finish(sigmas))
    }

    /// EDM Karras sigmas from 200 to 0.01 with rho 7 over `steps + 1` points, mapped to flow sigmas s / (1 + s):
    /// `steps + 1` model calls (the official scheduler's "35 steps" are 36 calls).
    pub fn karras(steps: usize) -> Result<Self> {
        if steps == 0 {
            return Err(FlowError::Schedule("steps must be positive".into()));
        }
        let (sigma_min, sigma_max, rho) = (0.01f64, 200f64, 7f64);
        let (min_inv, max_inv) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
        let sigmas = (0..=steps)
            .map(|i| i as f64 / steps as f64)
            .map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho))
            .map(|s| s / (1.0 + s))
            .collect();
        Ok(Self::finish(sigmas))
    }

    /// Number of network evaluations per guidance branch.
    pub fn calls(&self) -> usize {
        self.timesteps.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_karras_endpoints() {
        // Oracle notes: 35-step Karras flow sigmas start 0.995025, 0.994207, 0.993232 and end 0.017841, 0.009901.
        let s = Schedule::karras(35).unwrap();
        assert_eq!(s.calls(), 36);
        assert_eq!(s.sigmas.len(), 37);
        for (got, want) in s.sigmas.iter().zip([0.995025, 0.994207, 0.993232]) {
            assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
        assert!((s.sigmas[34] as f64 - 0.017841).abs() < 1e-6);
        assert!((s.sigmas[35] as f64 - 0.009901).abs() < 1e-6);
        assert_eq!(s.sigmas[36], 0.0);
        assert_eq!(&s.timesteps[..3], &[995, 994, 993]);
    }

    #[test]
    fn shift_five_starts_near_one() {
        let s = Schedule::shifted(35, 5.0).unwrap();
        assert_eq!(s.calls(), 35);
        assert!((s.sigmas[0] - 0.9998).abs() < 1e-4);
        assert!(s.sigmas.windows(2).all(|w| w[0] > w[1]));
        assert!(Schedule::shifted(0, 5.0).is_err());
    }
}

//! Training-time sampling of sigmas (spec section 4): u = sigmoid(N(0, 1)); index = floor(1000 u) into the
//! 1000-entry shifted table `sigma_k = shift s / (1 + (shift - 1) s)`, s = (1000 - k) / 1000 (descending from 1);
//! with `high_sigma_prob`, a uniform pick among the table entries whose timestep is in [980, 1000] instead.

use crate::noise::FastRng;

/// The training table: 1000 sigmas, descending from 1.
pub fn training_table(shift: f64) -> Vec<f64> {
    (0..1000)
        .map(|k| (1000 - k) as f64 / 1000.0)
        .map(|s| shift * s / (1.0 + (shift - 1.0) * s))
        .collect()
}

/// Samples training sigmas for one batch.
#[derive(Debug, Clone)]
pub struct SigmaSampler {
    table: Vec<f64>,
    high_sigma_prob: f64,
}

impl SigmaSampler {
    /// `shift` 5 at 720p (1 at 256p in the reference's early stages); `high_sigma_prob` 0.05 for the
    /// "high sigma" runs, 0 otherwise.
    pub fn new(shift: f64, high_sigma_prob: f64) -> Self {
        Self {
            table: training_table(shift),
            high_sigma_prob,
        }
    }

    pub fn sample(&self, rng: &mut FastRng) -> f64 {
        if self.high_sigma_prob > 0.0 && rng.next_f64() < self.high_sigma_prob {
            let high: Vec<f64> = self
                .table
                .iter()
                .copied()
                .filter(|s| s * 1000.0 >= 980.0)
                .collect();
            let i = ((rng.next_f64() * high.len() as f64) as usize).min(high.len() - 1);
            return high[i];
        }
        let u = 1.0 / (1.0 + (-rng.standard_normal()).exp());
        let index = ((1000.0 * u) as usize).min(999);
        self.table[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_pushes_samples_to_high_noise() {
        let mut rng = FastRng::new(1);
        let plain = SigmaSampler::new(1.0, 0.0);
        let shifted = SigmaSampler::new(5.0, 0.0);
        let mean = |s: &SigmaSampler, rng: &mut FastRng| {
            (0..20_000).map(|_| s.sample(rng)).sum::<f64>() / 20_000.0
        };
        let (a, b) = (mean(&plain, &mut rng), mean(&shifted, &mut rng));
        assert!((a - 0.5).abs() < 0.02, "{a}");
        assert!(b > 0.75, "{b}");
        let high = SigmaSampler::new(5.0, 1.0);
        assert!((0..1000).all(|_| high.sample(&mut rng) >= 0.98));
        assert_eq!(training_table(5.0)[0], 1.0);
    }
}

//! Draws from a run's generator that every trainer makes: indices, Gaussian noise, conditioning frame counts.
//! All randomness of a run comes from its one checkpointed generator, so a resumed run draws the same values.

use candle_core::{Device, Tensor};
use orrery_flow::noise::FastRng;

/// Random index in [0, n).
pub fn index(rng: &mut FastRng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

/// Gaussian noise of `shape` from the run's generator.
pub fn normal(rng: &mut FastRng, shape: &[usize], device: &Device) -> orrery_flow::Result<Tensor> {
    orrery_flow::noise::normal_from(rng, shape, device)
}

/// The number of conditioning latent frames N (0, 1, ..., `probs.len() - 1`) drawn with probabilities `probs`
/// (`probs[n]`: N = n) for a uniform `u` in [0, 1).
pub fn conditioning_frames(probs: &[f64], u: f64) -> usize {
    let mut below = 0.0;
    for (n, p) in probs.iter().enumerate() {
        below += p;
        if u < below {
            return n;
        }
    }
    probs.len().saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::conditioning_frames;

    #[test]
    fn conditioning_frame_counts_follow_their_probabilities() {
        let reference = [0.5, 0.25, 0.25];
        let counts: Vec<usize> = [0.0, 0.49, 0.5, 0.74, 0.75, 0.999]
            .iter()
            .map(|&u| conditioning_frames(&reference, u))
            .collect();
        assert_eq!(counts, [0, 0, 1, 1, 2, 2]);
        let four = [0.1, 0.2, 0.3, 0.4];
        assert_eq!(conditioning_frames(&four, 0.65), 3);
        assert_eq!(conditioning_frames(&four, 0.55), 2);
        // Rounding that leaves the sum a hair under 1 still gives the last count.
        assert_eq!(conditioning_frames(&[0.3, 0.3, 0.3999999], 0.99999999), 2);
    }
}

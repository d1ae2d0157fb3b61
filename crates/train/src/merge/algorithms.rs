//! The merge methods' arithmetic, as their papers define it (`posttraining-spec.md` section 4), on float64 slices
//! of one tensor's elements. Nothing here reads files or knows about dtypes: the driver ([`super::stream`])
//! decodes a chunk of every input into float64, calls these, and encodes the result.
//!
//! Notation: θ_b the base, θ_i the models, τ_i = θ_i − θ_b their task vectors, w_i the weights, λ the scale.
//! Every sum over models runs in model order (i = 0, 1, ...) in float64, so the result does not depend on how the
//! tensor is split into chunks or threads, and a NumPy loop in the same order reproduces it
//! (`tools/oracles/merge.py`).

use orrery_flow::noise::FastRng;

/// Elements per chunk the driver works on (one rayon task each). DARE draws each chunk's mask from its own
/// generator ([`dare_rng`]), so this constant is part of what a seed means: changing it changes DARE outputs.
pub const CHUNK: usize = 1 << 16;

/// Model soup (mergekit `linear`, normalised): θ = Σ w_i·θ_i / Σ w_i, per element.
/// `models[i]`: the i-th model's elements (each of `out.len()`); `weights`: one per model, summing to non-zero.
pub fn soup(models: &[&[f64]], weights: &[f64], out: &mut [f64]) {
    let total: f64 = weights.iter().fold(0.0, |acc, w| acc + w);
    for (j, o) in out.iter_mut().enumerate() {
        let mut acc = 0.0;
        for (m, w) in models.iter().zip(weights) {
            acc += w * m[j];
        }
        *o = acc / total;
    }
}

/// τ = θ − θ_b, in place over `model` (a chunk of one model, then its task vector).
pub fn task_vector(model: &mut [f64], base: &[f64]) {
    for (m, b) in model.iter_mut().zip(base) {
        *m -= b;
    }
}

/// Task arithmetic and DARE-Linear's sum: θ = θ_b + λ·Σ w_i·δ_i, where δ_i is τ_i (task arithmetic) or DARE(τ_i).
pub fn linear(base: &[f64], deltas: &[&[f64]], weights: &[f64], lambda: f64, out: &mut [f64]) {
    for (j, o) in out.iter_mut().enumerate() {
        let mut acc = 0.0;
        for (d, w) in deltas.iter().zip(weights) {
            acc += w * d[j];
        }
        *o = base[j] + lambda * acc;
    }
}

/// TIES steps 2–5 on sparsified task vectors δ_i (trimmed for TIES, DARE'd for DARE-TIES):
/// weight τ'_i = w_i·δ_i; elect γ = sign(Σ_i τ'_i) with a zero sum electing +1 (mergekit's
/// `(sum >= 0) * 2 - 1`); keep the entries whose sign is γ (a zero entry has no sign and is never kept); then
/// τ_m = Σ kept τ'_i, divided by Σ kept w_i when `normalize` (a zero divisor counts as 1); θ = θ_b + λ·τ_m.
///
/// TIES normalises (the paper's disjoint mean); DARE-TIES does not (mergekit's default, spec section 4).
pub fn ties(
    base: &[f64],
    deltas: &[&[f64]],
    weights: &[f64],
    lambda: f64,
    normalize: bool,
    out: &mut [f64],
) {
    for (j, o) in out.iter_mut().enumerate() {
        let mut sum = 0.0;
        for (d, w) in deltas.iter().zip(weights) {
            sum += w * d[j];
        }
        let positive = sum >= 0.0;
        let (mut agreeing, mut divisor) = (0.0, 0.0);
        for (d, w) in deltas.iter().zip(weights) {
            let t = w * d[j];
            if t != 0.0 && (t > 0.0) == positive {
                agreeing += t;
                divisor += w;
            }
        }
        let merged = if normalize && divisor != 0.0 {
            agreeing / divisor
        } else {
            agreeing
        };
        *o = base[j] + lambda * merged;
    }
}

/// How many entries TIES keeps of a task vector of `numel` entries: k = ⌊density·numel⌋ (the spec's count; a
/// tensor too small for one entry at this density keeps none, so it stays the base).
pub fn keep_count(numel: usize, density: f64) -> usize {
    ((density * numel as f64).floor() as usize).min(numel)
}

/// The k-th largest of `values` (1 ≤ k ≤ len), in O(len); reorders `values`.
pub fn kth_largest(values: &mut [f64], k: usize) -> f64 {
    assert!(k >= 1 && k <= values.len(), "k = {k} of {}", values.len());
    *values
        .select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a))
        .1
}

/// The entries TIES's trim keeps of one task vector: the k largest by |τ|. Entries tied at the k-th magnitude are
/// kept in element order until k are kept, which is what a stable descending sort (`argsort(-|τ|, kind="stable")
/// [:k]`, the NumPy reference) keeps; mergekit's unstable `argsort` leaves that choice open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TopK {
    All,
    None,
    /// Keep |τ| > `threshold`, and |τ| = `threshold` at element index ≤ `last_tie`.
    Threshold {
        threshold: f64,
        last_tie: Option<usize>,
    },
}

impl TopK {
    /// The top `k` of `magnitudes` (|τ| of the whole tensor, in element order), given the k-th largest
    /// magnitude `threshold` (from [`kth_largest`] on a copy). Two passes over `magnitudes`, no allocation.
    pub fn locate(magnitudes: &[f64], threshold: f64, k: usize) -> Self {
        if k == 0 {
            return Self::None;
        }
        if k >= magnitudes.len() {
            return Self::All;
        }
        let greater = magnitudes.iter().filter(|&&m| m > threshold).count();
        // With finite magnitudes at least one entry equals the k-th largest and fewer than k exceed it, so the
        // quota is at least 1; a NaN threshold equals nothing and keeps no ties.
        let quota = k.saturating_sub(greater);
        let last_tie = quota.checked_sub(1).and_then(|nth| {
            magnitudes
                .iter()
                .enumerate()
                .filter(|(_, &m)| m == threshold)
                .nth(nth)
                .map(|(i, _)| i)
        });
        Self::Threshold {
            threshold,
            last_tie,
        }
    }

    /// The top ⌊density·len⌋ of `magnitudes` (for tests and small tensors: copies them once).
    pub fn of(magnitudes: &[f64], density: f64) -> Self {
        let k = keep_count(magnitudes.len(), density);
        if k == 0 || k >= magnitudes.len() {
            return Self::locate(magnitudes, 0.0, k);
        }
        let threshold = kth_largest(&mut magnitudes.to_vec(), k);
        Self::locate(magnitudes, threshold, k)
    }

    /// Whether the entry at element `index` with magnitude `magnitude` is kept.
    pub fn keeps(&self, index: usize, magnitude: f64) -> bool {
        match *self {
            Self::All => true,
            Self::None => false,
            Self::Threshold {
                threshold,
                last_tie,
            } => {
                magnitude > threshold
                    || (magnitude == threshold && last_tie.is_some_and(|last| index <= last))
            }
        }
    }

    /// Zeroes the entries of `tau` (elements `start..start + tau.len()` of the tensor) that are not kept.
    pub fn trim(&self, start: usize, tau: &mut [f64]) {
        for (j, t) in tau.iter_mut().enumerate() {
            if !self.keeps(start + j, t.abs()) {
                *t = 0.0;
            }
        }
    }
}

/// The generator of one chunk's DARE mask: seeded from the user's seed, the model's position among the inputs,
/// the tensor's name and the chunk's index, so that a seed gives the same masks whatever order the tensors are
/// written in and however many threads run, and no two (model, tensor, chunk) share a mask.
pub fn dare_rng(seed: u64, model: usize, tensor: &str, chunk: usize) -> FastRng {
    // FNV-1a over the fields: a fixed, portable hash (std's hasher is allowed to change between releases).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = seed
        .to_le_bytes()
        .into_iter()
        .chain((model as u64).to_le_bytes())
        .chain((chunk as u64).to_le_bytes())
        .chain(tensor.bytes());
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    FastRng::new(h) // FastRng runs the hash through SplitMix64
}

/// DARE's drop: each entry survives with probability `density` (a uniform draw in [0, 1) below it) and is set
/// to 0 otherwise. Returns (‖τ‖₁, ‖survivors‖₁) of this chunk for mergekit's L1 rescale.
pub fn dare_drop(tau: &mut [f64], density: f64, rng: &mut FastRng) -> (f64, f64) {
    let (mut before, mut after) = (0.0, 0.0);
    for t in tau.iter_mut() {
        before += t.abs();
        if rng.next_f64() < density {
            after += t.abs();
        } else {
            *t = 0.0;
        }
    }
    (before, after)
}

/// DARE as the paper defines it: drop with probability 1 − density, divide the survivors by density (so every
/// kept entry is exactly τ/density and the expectation is τ).
pub fn dare(tau: &mut [f64], density: f64, rng: &mut FastRng) {
    dare_drop(tau, density, rng);
    for t in tau.iter_mut() {
        *t /= density;
    }
}

/// mergekit's L1 rescale factor (`rescaled_masked_tensor`, `RescaleNorm.l1`): ‖τ‖₁ / ‖masked τ‖₁ over the whole
/// tensor, or 1 when either norm is below mergekit's eps (1e-7), where it leaves the masked tensor unscaled.
pub fn l1_rescale(before: f64, after: f64) -> f64 {
    const EPS: f64 = 1e-7;
    if before < EPS || after < EPS {
        1.0
    } else {
        before / after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soup_is_the_normalised_weighted_mean() {
        let (a, b) = ([1.0, 2.0, -4.0], [3.0, 6.0, 0.0]);
        let mut out = [0.0; 3];
        soup(&[&a, &b], &[1.0, 3.0], &mut out);
        // (1·1 + 3·3)/4 = 2.5, (2 + 18)/4 = 5, (−4 + 0)/4 = −1
        assert_eq!(out, [2.5, 5.0, -1.0]);
        soup(&[&a, &b], &[0.5, 0.5], &mut out);
        assert_eq!(out, [2.0, 4.0, -2.0]);
    }

    #[test]
    fn task_arithmetic_adds_the_scaled_weighted_task_vectors() {
        let base = [1.0, 1.0];
        let (mut a, mut b) = ([2.0, 0.0], [1.5, 3.0]);
        task_vector(&mut a, &base);
        task_vector(&mut b, &base);
        assert_eq!((a, b), ([1.0, -1.0], [0.5, 2.0]));
        let mut out = [0.0; 2];
        linear(&base, &[&a, &b], &[1.0, 2.0], 0.5, &mut out);
        // 1 + 0.5·(1 + 2·0.5) = 2, 1 + 0.5·(−1 + 2·2) = 2.5
        assert_eq!(out, [2.0, 2.5]);
    }

    #[test]
    fn ties_elects_signs_and_averages_the_agreeing_entries() {
        let base = [0.0; 5];
        let a = [1.0, -2.0, 1.0, 0.0, 3.0];
        let b = [3.0, 1.0, -1.0, 0.0, -1.0];
        let c = [-1.0, 0.5, 0.0, 0.0, -1.0];
        let mut out = [0.0; 5];
        ties(&base, &[&a, &b, &c], &[1.0; 3], 1.0, true, &mut out);
        // 0: sum 3 > 0 → +; agreeing 1, 3 → mean 2.
        // 1: sum −0.5 → −; only −2 agrees → −2.
        // 2: sum 0 → + (ties elect +1); only 1 agrees (0 has no sign) → 1.
        // 3: nothing agrees → 0 (the divisor 0 counts as 1).
        // 4: sum 1 → +; only 3 agrees → 3.
        assert_eq!(out, [2.0, -2.0, 1.0, 0.0, 3.0]);
        // DARE-TIES's sum without normalisation, λ = 0.5 and a base.
        ties(&[1.0; 5], &[&a, &b, &c], &[1.0; 3], 0.5, false, &mut out);
        assert_eq!(out, [3.0, 0.0, 1.5, 1.0, 2.5]);
    }

    #[test]
    fn ties_weights_enter_the_vote_and_the_divisor() {
        let base = [10.0];
        let (a, b) = ([1.0], [-1.0]);
        let mut out = [0.0];
        // τ' = (2, −1): sum 1 → +; τ_m = 2 / 2 = 1.
        ties(&base, &[&a, &b], &[2.0, 1.0], 1.0, true, &mut out);
        assert_eq!(out, [11.0]);
        // τ' = (1, −3): sum −2 → −; τ_m = −3 / 3 = −1, λ = 2 → 10 − 2.
        ties(&base, &[&a, &b], &[1.0, 3.0], 2.0, true, &mut out);
        assert_eq!(out, [8.0]);
    }

    #[test]
    fn trim_keeps_the_top_fraction_with_ties_in_element_order() {
        let mags = [0.5, 3.0, 1.0, 3.0, 2.0, 1.0, 1.0, 0.0, 1.0, 2.0];
        // k = ⌊0.5·10⌋ = 5: 3, 3, 2, 2 and the first 1 (index 2).
        let top = TopK::of(&mags, 0.5);
        let kept: Vec<usize> = (0..10).filter(|&i| top.keeps(i, mags[i])).collect();
        assert_eq!(kept, [1, 2, 3, 4, 9]);
        // k = ⌊0.7·10⌋ = 7: the first three 1s.
        let top = TopK::of(&mags, 0.7);
        let kept: Vec<usize> = (0..10).filter(|&i| top.keeps(i, mags[i])).collect();
        assert_eq!(kept, [1, 2, 3, 4, 5, 6, 9]);
        assert_eq!(TopK::of(&mags, 1.0), TopK::All);
        assert_eq!(TopK::of(&mags, 0.05), TopK::None); // ⌊0.5⌋ = 0
        let mut tau = [-0.5, 3.0, -1.0, -3.0, 2.0, 1.0, 1.0, 0.0, 1.0, -2.0];
        TopK::of(&mags, 0.5).trim(0, &mut tau);
        assert_eq!(tau, [0.0, 3.0, -1.0, -3.0, 2.0, 0.0, 0.0, 0.0, 0.0, -2.0]);
    }

    #[test]
    fn trim_of_chunks_equals_trim_of_the_whole() {
        let mut rng = FastRng::new(7);
        // Magnitudes from a small set: many ties at the threshold.
        let tau: Vec<f64> = (0..1000)
            .map(|_| (rng.next_u64() % 9) as f64 - 4.0)
            .collect();
        let mags: Vec<f64> = tau.iter().map(|t| t.abs()).collect();
        let top = TopK::of(&mags, 0.3);
        let mut whole = tau.clone();
        top.trim(0, &mut whole);
        assert_eq!(whole.iter().filter(|t| **t != 0.0).count(), 300);
        let mut chunked = tau.clone();
        for (c, chunk) in chunked.chunks_mut(64).enumerate() {
            top.trim(c * 64, chunk);
        }
        assert_eq!(whole, chunked);
    }

    #[test]
    fn dare_keeps_about_density_and_rescales_exactly() {
        let n = 200_000;
        let tau: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() + 0.01).collect();
        let density = 0.3;
        let mut kept = tau.clone();
        dare(&mut kept, density, &mut dare_rng(5, 0, "w", 0));
        let mut count = 0;
        for (k, t) in kept.iter().zip(&tau) {
            if *k != 0.0 {
                assert_eq!(*k, t / density);
                count += 1;
            }
        }
        // Binomial(n, 0.3): standard deviation √(n·0.3·0.7) ≈ 205, so 5σ ≈ 0.5 % of n.
        let fraction = count as f64 / n as f64;
        assert!((fraction - density).abs() < 0.005, "{fraction}");
        let mut again = tau.clone();
        dare(&mut again, density, &mut dare_rng(5, 0, "w", 0));
        assert_eq!(kept, again);
        for rng in [
            dare_rng(6, 0, "w", 0),
            dare_rng(5, 1, "w", 0),
            dare_rng(5, 0, "v", 0),
            dare_rng(5, 0, "w", 1),
        ] {
            let mut other = tau.clone();
            dare(&mut other, density, &mut rng.clone());
            assert_ne!(kept, other);
        }
    }

    #[test]
    fn dare_at_density_one_keeps_everything_unchanged() {
        let tau = [1.0, -2.0, 0.25];
        let mut kept = tau;
        dare(&mut kept, 1.0, &mut dare_rng(0, 0, "w", 0));
        assert_eq!(kept, tau);
    }

    #[test]
    fn l1_rescale_restores_the_norm() {
        let mut tau = [1.0, -2.0, 3.0, -4.0, 5.0, 6.0, -7.0, 8.0];
        let (before, after) = dare_drop(&mut tau, 0.5, &mut dare_rng(1, 0, "w", 0));
        assert_eq!(before, 36.0);
        let scale = l1_rescale(before, after);
        let norm: f64 = tau.iter().map(|t| (t * scale).abs()).sum();
        assert!((norm - 36.0).abs() < 1e-12, "{norm}");
        assert_eq!(l1_rescale(1.0, 0.0), 1.0);
        assert_eq!(l1_rescale(0.0, 0.0), 1.0);
    }
}

//! The GRPO objective of Cosmos RL post-training (posttraining spec section 3.2, cosmos-rl `rl_training_step`):
//! group-normalised advantages over the rollouts of one condition, the per-step policy ratio, and the clipped
//! surrogate.

use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// How the per-step log-ratio is formed from `mean_new`, `mean_old` and the `sample` drawn around `mean_old`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogRatio {
    /// As the released code computes it: `-[(x' - mu_new)^2 - (x' - mu_old)^2]`, without the Gaussian's
    /// `1 / (2 std^2)` (which the reference leaves commented out).
    #[default]
    AsReleased,
    /// The Gaussian transition's log-ratio: the same divided by `2 std^2` (Flow-GRPO's).
    Gaussian,
}

/// Per-sample log-ratio (B): the mean over every other dimension of the per-element log-ratio.
pub fn log_ratio(
    sample: &Tensor,
    mean_new: &Tensor,
    mean_old: &Tensor,
    std: f64,
    kind: LogRatio,
) -> Result<Tensor> {
    let new = (sample - mean_new)?.sqr()?;
    let old = (sample - mean_old)?.sqr()?.detach();
    let mut delta = (old - new)?;
    if kind == LogRatio::Gaussian {
        delta = (delta / (2.0 * std * std))?;
    }
    Ok(delta.flatten_from(1)?.mean(D::Minus1)?)
}

/// The clipped surrogate `mean(max(-A r, -A clip(r, 1 - eps, 1 + eps)))` with `r = exp(log_ratio)`.
pub fn clipped_policy_loss(log_ratio: &Tensor, advantages: &[f64], clip: f64) -> Result<Tensor> {
    let r = log_ratio.exp()?;
    let a = Tensor::from_vec(
        advantages.iter().map(|&a| a as f32).collect::<Vec<_>>(),
        advantages.len(),
        r.device(),
    )?
    .to_dtype(r.dtype())?;
    let unclipped = (r.neg()? * &a)?;
    let clipped = (r.clamp(1.0 - clip, 1.0 + clip)?.neg()? * &a)?;
    Ok(unclipped.maximum(&clipped)?.mean_all()?)
}

/// Group-normalised advantages of one reward over the rollouts of one condition (`_sync_rewards_across_rollouts`):
/// `(R - mean) / (std + 1e-4)` with the unbiased std; a rollout without a value takes the group's mean (advantage
/// 0). Rewards are clipped to +-`reward_clip` first.
pub fn group_advantages(rewards: &[Option<f64>], reward_clip: f64) -> Vec<f64> {
    let valid: Vec<f64> = rewards
        .iter()
        .flatten()
        .map(|r| r.clamp(-reward_clip, reward_clip))
        .collect();
    if valid.is_empty() {
        return vec![0.0; rewards.len()];
    }
    let mean = valid.iter().sum::<f64>() / valid.len() as f64;
    let filled: Vec<f64> = rewards
        .iter()
        .map(|r| r.map_or(mean, |r| r.clamp(-reward_clip, reward_clip)))
        .collect();
    let n = filled.len();
    let std = if n > 1 {
        (filled.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    filled.iter().map(|r| (r - mean) / (std + 1e-4)).collect()
}

/// The advantages of composed rewards: each term's group advantages weighted by its weight over the sum of the
/// weights (the reference averages its reward models' advantages), then `-exp(-A)` when `exp_reward`, then
/// clipped to +-`advantage_clip`.
pub fn composed_advantages(
    terms: &[(f64, Vec<Option<f64>>)],
    reward_clip: f64,
    advantage_clip: f64,
    exp_reward: bool,
) -> Vec<f64> {
    let n = terms.first().map_or(0, |t| t.1.len());
    let total: f64 = terms.iter().map(|t| t.0).sum();
    let mut a = vec![0.0; n];
    for (weight, rewards) in terms {
        for (a, g) in a.iter_mut().zip(group_advantages(rewards, reward_clip)) {
            *a += weight / total * g;
        }
    }
    a.into_iter()
        .map(|a| if exp_reward { -(-a).exp() } else { a })
        .map(|a| a.clamp(-advantage_clip, advantage_clip))
        .collect()
}

/// The composed reward of each rollout for reporting: the weighted mean of its terms' values (a missing value
/// counts as its group's mean, as in the advantages).
pub fn composed_reward(terms: &[(f64, Vec<Option<f64>>)]) -> Vec<f64> {
    let n = terms.first().map_or(0, |t| t.1.len());
    let total: f64 = terms.iter().map(|t| t.0).sum();
    let mut out = vec![0.0; n];
    for (weight, rewards) in terms {
        let valid: Vec<f64> = rewards.iter().flatten().copied().collect();
        let mean = valid.iter().sum::<f64>() / valid.len().max(1) as f64;
        for (o, r) in out.iter_mut().zip(rewards) {
            *o += weight / total * r.unwrap_or(mean);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn advantages_are_group_normalised_with_the_unbiased_std() {
        let a = group_advantages(&[Some(1.0), Some(2.0), Some(3.0), Some(6.0)], 10.0);
        // mean 3, unbiased std sqrt(14/3).
        let std = (14.0f64 / 3.0).sqrt() + 1e-4;
        for (a, r) in a.iter().zip([1.0, 2.0, 3.0, 6.0]) {
            assert!((a - (r - 3.0) / std).abs() < 1e-12);
        }
        // A missing value is the mean; a clipped reward is clipped first.
        let b = group_advantages(&[Some(0.0), None, Some(10.0)], 5.0);
        assert_eq!(b[1], 0.0);
        assert!((b[2] + b[0]).abs() < 1e-12 && b[2] > 0.0);
        let same = group_advantages(&[Some(0.5); 8], 5.0);
        assert!(same.iter().all(|a| *a == 0.0));
        assert_eq!(group_advantages(&[None, None], 5.0), vec![0.0, 0.0]);
    }

    #[test]
    fn composed_advantages_weight_and_clip() {
        let terms = vec![
            (3.0, vec![Some(0.0), Some(1.0)]),
            (1.0, vec![Some(1.0), Some(0.0)]),
        ];
        let a = composed_advantages(&terms, 5.0, 5.0, false);
        // Each term: +-0.5 / (std 0.7071 + 1e-4); weighted 3/4 and 1/4 in opposite directions.
        let g = 0.5 / (0.5f64.sqrt() + 1e-4);
        assert!((a[1] - (0.75 * g - 0.25 * g)).abs() < 1e-12, "{a:?}");
        assert!((a[0] + a[1]).abs() < 1e-12);
        let clipped = composed_advantages(&[(1.0, vec![Some(0.0), Some(1e-3)])], 5.0, 0.3, false);
        assert_eq!(clipped, vec![-0.3, 0.3]);
        let exp = composed_advantages(&terms, 5.0, 5.0, true);
        assert!((exp[1] + (-a[1]).exp()).abs() < 1e-12);
    }

    #[test]
    fn log_ratio_matches_the_formula_and_is_zero_on_policy() {
        let dev = Device::Cpu;
        let sample = Tensor::new(&[[1.0f32, 2.0], [0.0, -1.0]], &dev).unwrap();
        let old = Tensor::new(&[[0.5f32, 2.5], [0.0, 0.0]], &dev).unwrap();
        let new = Tensor::new(&[[0.0f32, 2.0], [1.0, -1.0]], &dev).unwrap();
        let r = log_ratio(&sample, &new, &old, 0.5, LogRatio::AsReleased).unwrap();
        let r: Vec<f32> = r.to_vec1().unwrap();
        // Row 0: -[(1 + 0) - (0.25 + 0.25)] / 2 = -0.25; row 1: -[(1 + 0) - (0 + 1)] / 2 = 0.
        assert!((r[0] + 0.25).abs() < 1e-6 && r[1].abs() < 1e-6, "{r:?}");
        let g = log_ratio(&sample, &new, &old, 0.5, LogRatio::Gaussian).unwrap();
        let g: Vec<f32> = g.to_vec1().unwrap();
        assert!((g[0] - r[0] / 0.5).abs() < 1e-6);
        let same = log_ratio(&sample, &old, &old, 0.5, LogRatio::AsReleased).unwrap();
        assert_eq!(same.to_vec1::<f32>().unwrap(), vec![0.0, 0.0]);
        // Finite where the Gaussian form overflows: a tiny std.
        let tiny = log_ratio(&sample, &new, &old, 1e-30, LogRatio::AsReleased).unwrap();
        assert!(tiny.to_vec1::<f32>().unwrap().iter().all(|v| v.is_finite()));
    }

    #[test]
    fn clipped_loss_and_its_gradient() {
        let dev = Device::Cpu;
        let lr = Var::new(&[0.0f32, 0.0, 0.5, -0.5], &dev).unwrap();
        let adv = [1.0, -2.0, 1.0, -1.0];
        let loss = clipped_policy_loss(lr.as_tensor(), &adv, 0.2).unwrap();
        // r = 1, 1, e^0.5, e^-0.5: max(-A r, -A clip(r)) per sample.
        let e = 0.5f64.exp();
        let want = [-1.0, 2.0, (-e).max(-1.2), (1.0 / e).max(0.8)];
        let want = want.iter().sum::<f64>() / 4.0;
        let got = loss.to_scalar::<f32>().unwrap() as f64;
        assert!((got - want).abs() < 1e-6, "{got} {want}");
        // On policy (r = 1) the gradient is -A r / n; samples whose clipped branch wins get none.
        let grads = loss.backward().unwrap();
        let g: Vec<f32> = grads.get(lr.as_tensor()).unwrap().to_vec1().unwrap();
        assert!(
            (g[0] + 0.25).abs() < 1e-6 && (g[1] - 0.5).abs() < 1e-6,
            "{g:?}"
        );
        assert_eq!((g[2], g[3]), (0.0, 0.0));
    }
}

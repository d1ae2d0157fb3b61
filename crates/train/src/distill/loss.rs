//! The two losses of DMD2 as the released run computes them (`training_step_generator`, `training_step_critic`),
//! on (B, C, T, h, w) tensors.

use candle_core::{Result, Tensor, D};

/// Per-sample mean over (C, T, h, w): (B,).
fn per_sample_mean(x: &Tensor) -> Result<Tensor> {
    x.flatten_from(1)?.mean(D::Minus1)
}

/// The student's distribution-matching loss. `student` is the student's sample G (carrying gradients), `fake` the
/// critic's and `teacher` the guided teacher's x0 predictions at the re-noised G (no gradients):
/// `w = mean |G - teacher|` per sample (at least 1e-5), `grad = (fake - teacher) / w`,
/// `L = mean (G - sg(G - grad))^2`, so that dL/dG = 2 grad / N: the student moves from where the critic says its
/// samples are toward where the teacher says data is.
pub fn dmd_loss(student: &Tensor, fake: &Tensor, teacher: &Tensor) -> Result<Tensor> {
    let g = student.detach();
    let weight = per_sample_mean(&(&g - teacher)?.abs()?)?
        .clamp(1e-5, f64::MAX)?
        .reshape(((), 1, 1, 1, 1))?;
    let grad = (fake - teacher)?.broadcast_div(&weight)?;
    let target = (g - grad)?.detach();
    per_sample_mean(&(student - target)?.sqr()?)?.mean_all()
}

/// The critic's denoising loss on the student's samples: `mean (G - fake)^2 / sin^2 t_D`, with G fixed and
/// `sin_t` the (B,) sines of the critic times.
pub fn critic_loss(student: &Tensor, fake: &Tensor, sin_t: &[f64]) -> Result<Tensor> {
    let weights: Vec<f32> = sin_t.iter().map(|s| (1.0 / (s * s)) as f32).collect();
    let weights = Tensor::from_vec(weights, sin_t.len(), fake.device())?;
    let per_sample = per_sample_mean(&(student.detach() - fake)?.sqr()?)?;
    (per_sample * weights)?.mean_all()
}

/// The regression of the student's one-step estimate onto the teacher's: `mean_b weight_b mean (student -
/// teacher)^2`, with `weights` (B,) zero for the samples it leaves to the DMD loss alone.
pub fn regression_loss(student: &Tensor, teacher: &Tensor, weights: &[f64]) -> Result<Tensor> {
    let weights: Vec<f32> = weights.iter().map(|&w| w as f32).collect();
    let weights = Tensor::from_vec(weights, student.dim(0)?, student.device())?;
    let per_sample = per_sample_mean(&(student - teacher.detach())?.sqr()?)?;
    (per_sample * weights)?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn tensor(values: &[f32]) -> Tensor {
        Tensor::from_slice(values, (2, 1, 1, 1, 2), &Device::Cpu).unwrap()
    }

    #[test]
    fn the_dmd_gradient_is_the_score_difference_over_the_weight() {
        let g = Var::from_tensor(&tensor(&[0.5, -1.0, 2.0, 0.0])).unwrap();
        let fake = tensor(&[0.4, -0.7, 1.0, 0.5]);
        let teacher = tensor(&[0.6, -1.2, 2.5, -0.5]);
        let loss = dmd_loss(g.as_tensor(), &fake, &teacher).unwrap();
        let grad = loss.backward().unwrap();
        let dg = grad.get(g.as_tensor()).unwrap().flatten_all().unwrap();
        let dg = dg.to_vec1::<f32>().unwrap();
        // w = mean |G - teacher| per sample: (0.1 + 0.2) / 2, (0.5 + 0.5) / 2; N = 2 elements per sample and the
        // batch mean halves again.
        let w = [0.15f32, 0.15, 0.5, 0.5];
        let (f, t) = ([0.4f32, -0.7, 1.0, 0.5], [0.6f32, -1.2, 2.5, -0.5]);
        for i in 0..4 {
            let expected = 2.0 * (f[i] - t[i]) / w[i] / 2.0 / 2.0;
            assert!(
                (dg[i] - expected).abs() < 1e-5,
                "{i}: {} vs {expected}",
                dg[i]
            );
        }
        // The loss value is the squared gradient step: mean grad^2.
        let value = loss.to_scalar::<f32>().unwrap();
        let expected: f32 = (0..4).map(|i| ((f[i] - t[i]) / w[i]).powi(2)).sum::<f32>() / 4.0;
        assert!((value - expected).abs() < 1e-4, "{value} vs {expected}");
    }

    #[test]
    fn a_student_where_the_critic_agrees_with_the_teacher_gets_no_push() {
        let g = Var::from_tensor(&tensor(&[0.5, -1.0, 2.0, 0.0])).unwrap();
        let same = tensor(&[0.1, 0.2, 0.3, 0.4]);
        let loss = dmd_loss(g.as_tensor(), &same, &same).unwrap();
        let dg = loss.backward().unwrap();
        let dg = dg
            .get(g.as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap();
        assert_eq!(dg.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn the_regression_pulls_weighted_samples_to_the_teacher_and_leaves_the_others() {
        let g = Var::from_tensor(&tensor(&[0.5, -1.0, 2.0, 0.0])).unwrap();
        let teacher = tensor(&[0.0, 0.0, 1.0, 1.0]);
        let loss = regression_loss(g.as_tensor(), &teacher, &[4.0, 0.0]).unwrap();
        // Sample 0: 4 (0.25 + 1) / 2, sample 1 weighted 0; the batch mean halves.
        assert!((loss.to_scalar::<f32>().unwrap() - 1.25).abs() < 1e-6);
        let grads = loss.backward().unwrap();
        let dg = grads.get(g.as_tensor()).unwrap().flatten_all().unwrap();
        let dg = dg.to_vec1::<f32>().unwrap();
        // d/dG = weight 2 (G - teacher) / N / B = 4 (G - teacher) / 2 for sample 0, 0 for sample 1.
        let expected = [1.0f32, -2.0, 0.0, 0.0];
        for (i, (&d, e)) in dg.iter().zip(expected).enumerate() {
            assert!((d - e).abs() < 1e-6, "{i}: {d} vs {e}");
        }
    }

    #[test]
    fn the_critic_loss_weights_each_sample_by_its_time() {
        let g = tensor(&[1.0, 1.0, 1.0, 1.0]);
        let fake = Var::from_tensor(&tensor(&[0.0, 0.0, 0.5, 0.5])).unwrap();
        let sin_t = [0.5, 1.0];
        let loss = critic_loss(&g, fake.as_tensor(), &sin_t).unwrap();
        // (1 / 0.25 + 0.25 / 1) / 2.
        assert!((loss.to_scalar::<f32>().unwrap() - 2.125).abs() < 1e-6);
        let grads = loss.backward().unwrap();
        assert!(grads.get(fake.as_tensor()).is_some());
    }
}

//! Finite-difference checks of autograd gradients, for the gradient tests of every trainable network.

use candle_core::{Result, Tensor, Var};

/// What a check found.
#[derive(Debug, Clone)]
pub struct GradReport {
    /// Parameters whose gradient was missing or all zero.
    pub without_gradient: Vec<String>,
    /// (parameter, flat index, autograd, finite difference) of every entry outside the tolerance.
    pub mismatches: Vec<(String, usize, f64, f64)>,
    /// Entries compared.
    pub checked: usize,
}

impl GradReport {
    pub fn assert_ok(&self) {
        assert!(
            self.without_gradient.is_empty(),
            "parameters without gradient: {:?}",
            self.without_gradient
        );
        assert!(
            self.mismatches.is_empty(),
            "{} of {} entries differ from finite differences: {:?}",
            self.mismatches.len(),
            self.checked,
            &self.mismatches[..self.mismatches.len().min(8)]
        );
    }
}

/// Compares the autograd gradient of the scalar `loss()` with central differences (step `eps`) on `per_var`
/// entries of every variable (spread over the tensor), and lists variables the loss does not reach. An entry
/// passes when |analytic - numeric| <= `rtol` max(|analytic|, |numeric|) + `atol`.
pub fn check_gradients(
    vars: &[(String, Var)],
    loss: impl Fn() -> Result<Tensor>,
    per_var: usize,
    eps: f64,
    rtol: f64,
    atol: f64,
) -> Result<GradReport> {
    let grads = loss()?.backward()?;
    let mut report = GradReport {
        without_gradient: Vec::new(),
        mismatches: Vec::new(),
        checked: 0,
    };
    for (name, var) in vars {
        let Some(g) = grads.get(var.as_tensor()) else {
            report.without_gradient.push(name.clone());
            continue;
        };
        let g = g.flatten_all()?.to_vec1::<f32>()?;
        if g.iter().all(|x| *x == 0.0) {
            report.without_gradient.push(name.clone());
            continue;
        }
        let original = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let n = original.len();
        let picks: Vec<usize> = (0..per_var.min(n))
            .map(|i| i * n / per_var.min(n))
            .collect();
        for i in picks {
            let eval = |delta: f64| -> Result<f64> {
                let mut v = original.clone();
                v[i] += delta as f32;
                var.set(&Tensor::from_vec(v, var.shape(), var.device())?)?;
                loss()?
                    .to_dtype(candle_core::DType::F64)?
                    .to_scalar::<f64>()
            };
            let numeric = (eval(eps)? - eval(-eps)?) / (2.0 * eps);
            let analytic = g[i] as f64;
            report.checked += 1;
            if (analytic - numeric).abs() > rtol * analytic.abs().max(numeric.abs()) + atol {
                report.mismatches.push((name.clone(), i, analytic, numeric));
            }
        }
        var.set(&Tensor::from_vec(original, var.shape(), var.device())?)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn catches_a_wrong_gradient_and_an_unused_parameter() {
        let dev = Device::Cpu;
        let a = Var::from_tensor(&Tensor::new(&[0.5f32, -1.0, 2.0], &dev).unwrap()).unwrap();
        let unused = Var::from_tensor(&Tensor::new(&[1f32], &dev).unwrap()).unwrap();
        let vars = vec![("a".to_owned(), a.clone()), ("unused".to_owned(), unused)];
        let good = check_gradients(
            &vars,
            || a.as_tensor().powf(3.0)?.sum_all(),
            3,
            1e-3,
            1e-2,
            1e-4,
        )
        .unwrap();
        assert_eq!(good.without_gradient, ["unused"]);
        assert!(good.mismatches.is_empty() && good.checked == 3);
        // detach() hides the cube from autograd: the analytic gradient becomes that of x alone.
        let wrong = check_gradients(
            &vars[..1],
            || (a.as_tensor().powf(3.0)?.detach() + a.as_tensor())?.sum_all(),
            3,
            1e-3,
            1e-2,
            1e-4,
        )
        .unwrap();
        assert_eq!(wrong.mismatches.len(), 3);
    }
}

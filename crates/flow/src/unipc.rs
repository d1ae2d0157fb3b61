//! The official `FlowUniPCMultistepScheduler` (UniPC, bh2, predict-x0, corrector on, lower order at the start and
//! the end, final sigma 0), as a small state machine: feed it the velocity at each of the schedule's timesteps.

use candle_core::Tensor;

use crate::error::{FlowError, Result};
use crate::schedule::Schedule;

struct Interval {
    h: f64,
    rks: Vec<f64>,
    d1s: Vec<Tensor>,
}

/// Sampler state between model calls.
#[derive(Debug, Clone)]
pub struct UniPc {
    sigmas: Vec<f64>,
    calls: usize,
    order: usize,
    /// Converted model outputs (x0 predictions), oldest first, `order` of them.
    outputs: Vec<Option<Tensor>>,
    lower_order_nums: usize,
    last_sample: Option<Tensor>,
    this_order: usize,
    step_index: usize,
}

/// `lambda = log(alpha) - log(sigma)` with alpha = 1 - sigma.
fn lambda(sigma: f64) -> f64 {
    (1.0 - sigma).ln() - sigma.ln()
}

/// Solves the small dense system `a x = b` (Gaussian elimination with partial pivoting).
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col].clone();
        for row in col + 1..n {
            let f = a[row][col] / pivot_row[col];
            for (x, p) in a[row][col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x
}

/// The UniPC coefficients shared by predictor and corrector: (h_phi_1, B(h), R, b) for `order`.
fn coefficients(h: f64, rks: &[f64], order: usize) -> (f64, f64, Vec<Vec<f64>>, Vec<f64>) {
    let hh = -h; // predict_x0
    let h_phi_1 = hh.exp_m1();
    let mut h_phi_k = h_phi_1 / hh - 1.0;
    let mut factorial = 1.0;
    let b_h = hh.exp_m1(); // bh2
    let mut r = Vec::new();
    let mut b = Vec::new();
    for i in 1..=order {
        r.push(rks.iter().map(|rk| rk.powi(i as i32 - 1)).collect());
        b.push(h_phi_k * factorial / b_h);
        factorial *= (i + 1) as f64;
        h_phi_k = h_phi_k / hh - 1.0 / factorial;
    }
    (h_phi_1, b_h, r, b)
}

impl UniPc {
    /// Order 2, as the official sampler runs.
    pub fn new(schedule: &Schedule) -> Self {
        Self::with_order(schedule, 2)
    }

    pub fn with_order(schedule: &Schedule, order: usize) -> Self {
        Self {
            sigmas: schedule.sigmas.iter().map(|&s| s as f64).collect(),
            calls: schedule.calls(),
            order: order.max(1),
            outputs: vec![None; order.max(1)],
            lower_order_nums: 0,
            last_sample: None,
            this_order: 1,
            step_index: 0,
        }
    }

    /// The sigma of the next model call.
    pub fn sigma(&self) -> f64 {
        self.sigmas[self.step_index.min(self.calls)]
    }

    fn output(&self, back: usize) -> Result<&Tensor> {
        self.outputs[self.order - 1 - back]
            .as_ref()
            .ok_or_else(|| FlowError::Sampler("missing model output history".into()))
    }

    /// One step: `velocity` is the network's output at the current sigma for `sample`; returns the next sample.
    pub fn step(&mut self, velocity: &Tensor, sample: &Tensor) -> Result<Tensor> {
        if self.step_index >= self.calls {
            return Err(FlowError::Sampler(format!(
                "all {} steps already taken",
                self.calls
            )));
        }
        let i = self.step_index;
        let x0 = (sample - (velocity * self.sigmas[i])?)?;
        let mut sample = sample.clone();
        if i > 0 {
            if let Some(last) = self.last_sample.clone() {
                sample = self.corrector(&x0, &last)?;
            }
        }
        self.outputs.rotate_left(1);
        self.outputs[self.order - 1] = Some(x0);
        let this_order = self.order.min(self.calls - i); // lower_order_final
        self.this_order = this_order.min(self.lower_order_nums + 1);
        self.last_sample = Some(sample.clone());
        let next = self.predictor(&sample)?;
        if self.lower_order_nums < self.order {
            self.lower_order_nums += 1;
        }
        self.step_index += 1;
        Ok(next)
    }

    /// The step from sigma `s0` (at schedule index `i0`) to `t`: its log-SNR width and, for each earlier model
    /// output k (1 .. order), the ratio r_k of its log-SNR offset and the scaled difference D_k (the last r is 1).
    fn interval(&self, s0: f64, t: f64, i0: usize, order: usize) -> Result<Interval> {
        let l0 = lambda(s0);
        let h = lambda(t) - l0;
        let m0 = self.output(0)?;
        let mut rks = Vec::new();
        let mut d1s = Vec::new();
        for k in 1..order {
            let rk = (lambda(self.sigmas[i0 - k]) - l0) / h;
            rks.push(rk);
            d1s.push(((self.output(k)? - m0)? / rk)?);
        }
        rks.push(1.0);
        Ok(Interval { h, rks, d1s })
    }

    /// UniP: from sigma_s0 = sigmas[i] to sigma_t = sigmas[i + 1].
    fn predictor(&self, x: &Tensor) -> Result<Tensor> {
        let i = self.step_index;
        let order = self.this_order;
        let (s0, t) = (self.sigmas[i], self.sigmas[i + 1]);
        let Interval { h, rks, d1s } = self.interval(s0, t, i, order)?;
        let m0 = self.output(0)?;
        let (h_phi_1, b_h, r, b) = coefficients(h, &rks, order);
        let alpha_t = 1.0 - t;
        let mut x_t = ((x * (t / s0))? - (m0 * (alpha_t * h_phi_1))?)?;
        if !d1s.is_empty() {
            let rhos = if order == 2 {
                vec![0.5]
            } else {
                let n = order - 1;
                solve(
                    r[..n].iter().map(|row| row[..n].to_vec()).collect(),
                    b[..n].to_vec(),
                )
            };
            for (rho, d) in rhos.iter().zip(&d1s) {
                x_t = (x_t - (d * (alpha_t * b_h * rho))?)?;
            }
        }
        Ok(x_t)
    }

    /// UniC: corrects the sample at sigmas[i] with the new model output, from sigmas[i - 1].
    fn corrector(&self, model_t: &Tensor, last: &Tensor) -> Result<Tensor> {
        let i = self.step_index;
        let order = self.this_order;
        let (s0, t) = (self.sigmas[i - 1], self.sigmas[i]);
        let Interval { h, rks, d1s } = self.interval(s0, t, i - 1, order)?;
        let m0 = self.output(0)?;
        let (h_phi_1, b_h, r, b) = coefficients(h, &rks, order);
        let rhos = if order == 1 { vec![0.5] } else { solve(r, b) };
        let alpha_t = 1.0 - t;
        let mut x_t = ((last * (t / s0))? - (m0 * (alpha_t * h_phi_1))?)?;
        for (rho, d) in rhos.iter().zip(&d1s) {
            x_t = (x_t - (d * (alpha_t * b_h * rho))?)?;
        }
        let d1_t = (model_t - m0)?;
        let last_rho = *rhos.last().expect("at least one coefficient");
        Ok((x_t - (d1_t * (alpha_t * b_h * last_rho))?)?)
    }
}

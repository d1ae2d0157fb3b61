//! AdamW (decoupled weight decay, PyTorch's update), learning-rate warm-up and decay, gradient clipping by global
//! norm, and EMA weights. State is plain float32 vectors so that checkpoints hold it exactly.

use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor, Var};
use orrery_nn::kernels::with_f32;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Linear warm-up from 0 over this many steps ("lambda-linear": from `lambda_linear.f_start`).
    pub warmup_steps: usize,
    /// After warm-up: "cosine" to `min_lr_ratio * lr` at the last step, "constant", or "lambda-linear" (the
    /// official `LambdaLinearScheduler`, warm-up included; its factors are `lambda_linear`).
    pub decay: String,
    pub min_lr_ratio: f64,
    /// Clip the global gradient norm to this (0: no clipping).
    pub grad_clip: f64,
    /// EMA decay per step (0: no EMA).
    pub ema_decay: f64,
    /// The factors of the "lambda-linear" schedule; left out: the official post-training ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_linear: Option<LambdaLinear>,
}

/// The official `LambdaLinearScheduler` (`cosmos_predict2/_src/common/functional/lr_scheduler.py`, one cycle):
/// the learning rate of step n (0-based) is `lr * f(n)` with, W = `warmup_steps` and L = `cycle_steps`,
/// `f(n) = f_start + (f_max - f_start) n / W` for n < W, else `f_min + (f_max - f_min) (L - n) / (L - W)`.
/// The reference stops at the end of its cycle (a step past L finds no cycle); here f stays at `f_min` there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaLinear {
    pub f_start: f64,
    pub f_max: f64,
    pub f_min: f64,
    /// L: the cycle's length in steps, warm-up included.
    pub cycle_steps: usize,
}

impl Default for LambdaLinear {
    /// The official post-training factors (`cosmos_predict2/experiments/base/cosmos_nemo_assets.py`:
    /// `f_max=[0.5]`, `f_min=[0.2]`, `cycle_lengths=[100000]`; `f_start=[1e-6]` from
    /// `_src/common/configs/lr_scheduler.py`).
    fn default() -> Self {
        Self {
            f_start: 1e-6,
            f_max: 0.5,
            f_min: 0.2,
            cycle_steps: 100_000,
        }
    }
}

impl LambdaLinear {
    /// f(n) for `warmup` steps of warm-up.
    pub fn factor(&self, n: usize, warmup: usize) -> f64 {
        if n < warmup {
            return self.f_start + (self.f_max - self.f_start) * n as f64 / warmup as f64;
        }
        let (l, n) = (self.cycle_steps as f64, n.min(self.cycle_steps) as f64);
        self.f_min + (self.f_max - self.f_min) * (l - n) / (l - warmup as f64)
    }
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 3e-4,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.01,
            warmup_steps: 100,
            decay: "cosine".into(),
            min_lr_ratio: 0.1,
            grad_clip: 1.0,
            ema_decay: 0.999,
            lambda_linear: None,
        }
    }
}

impl OptimConfig {
    /// The official fine-tuning recipe, the default of a DiT config without `optim`: AdamW with lr 2^-14.5 and
    /// weight decay 1e-3 (`cosmos_predict2/experiments/base/cosmos_nemo_assets.py`, posttraining-spec §1.1),
    /// betas (0.9, 0.999) (the 2B pre-training experiment it starts from, `..._rectified_flow_only` in
    /// `_src/predict2/configs/video2world/experiment/reason_embeddings/model_2B_reason_1p1_rectified_flow.py`),
    /// eps 1e-8 (`_src/predict2/configs/common/defaults/optimizer.py`), gradient norm clipped to 0.1 (that
    /// experiment's `grad_clip.clip_norm`), and the lambda-linear schedule with 2000 warm-up steps
    /// ([`LambdaLinear::default`]). The reference's power EMA (`rate=0.10`, `configs/common/defaults/ema.py`)
    /// is approximated by a constant decay of 0.99 (its per-step decay 1 - 7.9/t is 0.992 at t = 1000, the
    /// official run's length).
    pub fn official() -> Self {
        Self {
            lr: 2f64.powf(-14.5),
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-3,
            warmup_steps: 2000,
            decay: "lambda-linear".into(),
            min_lr_ratio: 1.0,
            grad_clip: 0.1,
            ema_decay: 0.99,
            lambda_linear: Some(LambdaLinear::default()),
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(format!("lr {} must be positive", self.lr));
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return Err("beta1 and beta2 must be in [0, 1)".into());
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return Err(format!("ema_decay {} must be in [0, 1)", self.ema_decay));
        }
        if !matches!(self.decay.as_str(), "cosine" | "constant" | "lambda-linear") {
            return Err(format!(
                "decay {:?}: expected \"cosine\", \"constant\" or \"lambda-linear\"",
                self.decay
            ));
        }
        if self.lambda_linear.is_some() && self.decay != "lambda-linear" {
            return Err(format!(
                "lambda_linear sets the factors of decay \"lambda-linear\", not of {:?}",
                self.decay
            ));
        }
        if self.decay == "lambda-linear" {
            let f = self.lambda_linear.clone().unwrap_or_default();
            let factors = [f.f_start, f.f_max, f.f_min];
            if factors.iter().any(|x| !(x.is_finite() && *x >= 0.0)) {
                return Err(format!("lambda_linear factors {factors:?} must be >= 0"));
            }
            if f.cycle_steps <= self.warmup_steps {
                return Err(format!(
                    "lambda_linear.cycle_steps {} must exceed warmup_steps {}",
                    f.cycle_steps, self.warmup_steps
                ));
            }
        }
        if self.grad_clip < 0.0 || self.weight_decay < 0.0 || self.eps <= 0.0 {
            return Err("grad_clip and weight_decay must be >= 0, eps > 0".into());
        }
        Ok(())
    }

    /// Learning rate of step `step` (0-based) of `total`.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        if self.decay == "lambda-linear" {
            let f = self.lambda_linear.clone().unwrap_or_default();
            return self.lr * f.factor(step, self.warmup_steps);
        }
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.decay.as_str() {
            "cosine" => {
                let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
                let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
                let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                self.lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cos)
            }
            _ => self.lr,
        }
    }
}

/// One parameter's optimiser state.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub ema: Vec<f32>,
}

/// Elements per parallel work item of the update.
const CHUNK: usize = 1 << 14;

/// The constants of one AdamW update.
#[derive(Clone, Copy)]
struct Update {
    b1: f32,
    b2: f32,
    step_size: f32,
    bias2_sqrt: f32,
    decay: f32,
    eps: f32,
    ema_decay: f32,
    clip: f32,
}

impl Update {
    /// Updates parameters `p` in place with their gradients `g`, moments `m`/`v` and EMA `ema` (PyTorch's AdamW).
    fn apply(&self, p: &mut [f32], m: &mut [f32], v: &mut [f32], ema: &mut [f32], g: &[f32]) {
        for i in 0..p.len() {
            let gi = g[i] * self.clip;
            m[i] = self.b1 * m[i] + (1.0 - self.b1) * gi;
            v[i] = self.b2 * v[i] + (1.0 - self.b2) * gi * gi;
            let denom = v[i].sqrt() / self.bias2_sqrt + self.eps;
            p[i] = p[i] * self.decay - self.step_size * m[i] / denom;
            ema[i] = if self.ema_decay > 0.0 {
                self.ema_decay * ema[i] + (1.0 - self.ema_decay) * p[i]
            } else {
                p[i]
            };
        }
    }
}

/// AdamW over a fixed, ordered list of variables.
pub struct AdamW {
    pub config: OptimConfig,
    pub vars: Vec<(String, Var)>,
    pub state: Vec<Moments>,
    /// Updates applied so far.
    pub step: usize,
}

/// What one update did.
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

impl AdamW {
    pub fn new(config: OptimConfig, vars: Vec<(String, Var)>) -> Result<Self> {
        let state = vars
            .iter()
            .map(|(_, v)| {
                let n = v.elem_count();
                Ok(Moments {
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                    ema: v.as_tensor().flatten_all()?.to_vec1::<f32>()?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            config,
            vars,
            state,
            step: 0,
        })
    }

    /// Applies one update from `grads`; every variable must have a gradient (a parameter the loss does not
    /// reach is a bug in the model or the trainer, not something to skip silently).
    pub fn step(&mut self, grads: &GradStore, total_steps: usize) -> Result<StepReport> {
        let mut grad_tensors = Vec::with_capacity(self.vars.len());
        for (name, var) in &self.vars {
            let g = grads.get(var.as_tensor()).ok_or_else(|| {
                candle_core::Error::Msg(format!("parameter {name} got no gradient"))
            })?;
            grad_tensors.push(g);
        }
        // Sums of squares per fixed-size chunk, added in order: parallel and still deterministic.
        let mut sum_sq = 0f64;
        for g in &grad_tensors {
            let parts: Vec<f64> = with_f32(g, |g| {
                g.par_chunks(CHUNK)
                    .map(|c| c.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>())
                    .collect()
            })?;
            sum_sq += parts.iter().sum::<f64>();
        }
        let grad_norm = sum_sq.sqrt();
        if !grad_norm.is_finite() {
            candle_core::bail!("gradient norm is {grad_norm}: the loss diverged");
        }
        let c = &self.config;
        let clip = if c.grad_clip > 0.0 && grad_norm > c.grad_clip {
            (c.grad_clip / grad_norm) as f32
        } else {
            1.0
        };
        let lr = c.lr_at(self.step, total_steps);
        self.step += 1;
        let t = self.step as i32;
        let update = Update {
            b1: c.beta1 as f32,
            b2: c.beta2 as f32,
            step_size: (lr / (1.0 - c.beta1.powi(t))) as f32,
            bias2_sqrt: (1.0 - c.beta2.powi(t)).sqrt() as f32,
            decay: (1.0 - lr * c.weight_decay) as f32,
            eps: c.eps as f32,
            ema_decay: c.ema_decay as f32,
            clip,
        };
        for (((_, var), st), g) in self.vars.iter().zip(&mut self.state).zip(&grad_tensors) {
            let p = with_f32(g, |g| {
                with_f32(var.as_tensor(), |p| {
                    let mut out = p.to_vec();
                    out.par_chunks_mut(CHUNK)
                        .zip(st.m.par_chunks_mut(CHUNK))
                        .zip(st.v.par_chunks_mut(CHUNK).zip(st.ema.par_chunks_mut(CHUNK)))
                        .zip(g.par_chunks(CHUNK))
                        .for_each(|(((p, m), (v, ema)), g)| update.apply(p, m, v, ema, g));
                    out
                })
            })??;
            var.set(&Tensor::from_vec(p, var.shape(), var.device())?)?;
        }
        Ok(StepReport { lr, grad_norm })
    }

    /// The EMA weights as (name, tensor) pairs, in host memory like the rest of the optimiser's state.
    pub fn ema_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        self.vars
            .iter()
            .zip(&self.state)
            .map(|((name, var), st)| {
                Ok((
                    name.clone(),
                    Tensor::from_vec(st.ema.clone(), var.shape(), &Device::Cpu)?,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_the_floor() {
        let c = OptimConfig {
            warmup_steps: 10,
            ..OptimConfig::default()
        };
        assert!((c.lr_at(0, 100) - c.lr / 10.0).abs() < 1e-12);
        assert!((c.lr_at(9, 100) - c.lr).abs() < 1e-12);
        assert!((c.lr_at(10, 100) - c.lr).abs() < 1e-12);
        assert!((c.lr_at(100, 100) - c.lr * c.min_lr_ratio).abs() < 1e-12);
    }

    /// The official schedule's factors at a few steps, from the formula of `LambdaLinearScheduler`
    /// (W = 2000, L = 100000, f_start 1e-6, f_max 0.5, f_min 0.2).
    #[test]
    fn lambda_linear_follows_the_official_formula() {
        let c = OptimConfig::official();
        c.validate().unwrap();
        let base = 2f64.powf(-14.5);
        assert!((c.lr - base).abs() < 1e-18);
        let f = |n: usize| c.lr_at(n, 1000) / base;
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        close(f(0), 1e-6);
        close(f(1), 1e-6 + (0.5 - 1e-6) / 2000.0);
        close(f(1000), 1e-6 + (0.5 - 1e-6) * 0.5);
        close(f(1999), 1e-6 + (0.5 - 1e-6) * 1999.0 / 2000.0);
        close(f(2000), 0.5);
        close(f(51_000), 0.2 + 0.3 * 49_000.0 / 98_000.0);
        close(f(100_000), 0.2);
        close(f(150_000), 0.2);
        // Factors of its own, and the run's total does not matter.
        let own = OptimConfig {
            warmup_steps: 4,
            lambda_linear: Some(LambdaLinear {
                f_start: 0.0,
                f_max: 1.0,
                f_min: 0.5,
                cycle_steps: 10,
            }),
            ..OptimConfig::official()
        };
        close(own.lr_at(2, 5) / base, 0.5);
        close(own.lr_at(7, 50) / base, 0.5 + 0.5 * 3.0 / 6.0);
        let bad = OptimConfig {
            warmup_steps: 10,
            ..own.clone()
        };
        assert!(bad.validate().unwrap_err().contains("cycle_steps"));
        let stray = OptimConfig {
            decay: "cosine".into(),
            ..own
        };
        assert!(stray.validate().unwrap_err().contains("lambda_linear"));
    }

    /// Two AdamW steps on f(p) = sum(p^2) against PyTorch's `torch.optim.AdamW(lr=0.1, betas=(0.9, 0.999),
    /// eps=1e-8, weight_decay=0.1)` from p = [1, -2]: [0.89, -1.88], then [0.781572, -1.761409].
    #[test]
    fn matches_pytorch_adamw() {
        let dev = Device::Cpu;
        let var = Var::from_tensor(&Tensor::new(&[1f32, -2.0], &dev).unwrap()).unwrap();
        let config = OptimConfig {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
            warmup_steps: 0,
            decay: "constant".into(),
            min_lr_ratio: 1.0,
            grad_clip: 0.0,
            ema_decay: 0.5,
            lambda_linear: None,
        };
        let mut opt = AdamW::new(config, vec![("p".into(), var.clone())]).unwrap();
        let mut seen = Vec::new();
        for _ in 0..2 {
            let grads = var
                .as_tensor()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            opt.step(&grads, 2).unwrap();
            seen.push(var.as_tensor().to_vec1::<f32>().unwrap());
        }
        let expect = [[0.89f32, -1.88], [0.781_572, -1.761_409]];
        for (s, e) in seen.iter().zip(expect) {
            for (a, b) in s.iter().zip(e) {
                assert!((a - b).abs() < 2e-5, "{s:?} vs {e:?}");
            }
        }
        // EMA with decay 0.5 from the initial weights: 0.5 (0.5 (1 + 0.89) ... ).
        let ema0 = 0.5 * (0.5 * 1.0 + 0.5 * 0.89) + 0.5 * 0.781_572;
        assert!((opt.state[0].ema[0] - ema0).abs() < 2e-5);
    }

    #[test]
    fn clips_and_refuses_missing_gradients() {
        let dev = Device::Cpu;
        let a = Var::from_tensor(&Tensor::new(&[3f32, 4.0], &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::new(&[1f32], &dev).unwrap()).unwrap();
        let config = OptimConfig {
            grad_clip: 1.0,
            ..OptimConfig::default()
        };
        let mut opt = AdamW::new(config, vec![("a".into(), a.clone())]).unwrap();
        let grads = a
            .as_tensor()
            .sum_all()
            .unwrap()
            .affine(5.0, 0.0)
            .unwrap()
            .backward()
            .unwrap();
        let r = opt.step(&grads, 10).unwrap();
        assert!((r.grad_norm - 50f64.sqrt()).abs() < 1e-5);
        let mut opt = AdamW::new(OptimConfig::default(), vec![("b".into(), b)]).unwrap();
        let err = opt.step(&grads, 10).unwrap_err().to_string();
        assert!(err.contains("parameter b got no gradient"), "{err}");
    }
}

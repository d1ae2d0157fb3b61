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
    /// Linear warm-up from 0 over this many steps.
    pub warmup_steps: usize,
    /// After warm-up: "cosine" to `min_lr_ratio * lr` at the last step, or "constant".
    pub decay: String,
    pub min_lr_ratio: f64,
    /// Clip the global gradient norm to this (0: no clipping).
    pub grad_clip: f64,
    /// EMA decay per step (0: no EMA).
    pub ema_decay: f64,
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
        }
    }
}

impl OptimConfig {
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
        if !matches!(self.decay.as_str(), "cosine" | "constant") {
            return Err(format!(
                "decay {:?}: expected \"cosine\" or \"constant\"",
                self.decay
            ));
        }
        if self.grad_clip < 0.0 || self.weight_decay < 0.0 || self.eps <= 0.0 {
            return Err("grad_clip and weight_decay must be >= 0, eps > 0".into());
        }
        Ok(())
    }

    /// Learning rate of step `step` (0-based) of `total`.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
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

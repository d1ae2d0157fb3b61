//! Stochastic samplers of RL post-training (posttraining spec section 3): the released Cosmos RL rollout sampler
//! ([`RolloutSampler::Churn`], EDM sigmas with churn and the "2ab" update), the Flow-GRPO SDE
//! ([`RolloutSampler::FlowGrpo`], rectified-flow time) and the distilled sampler with fresh noise
//! ([`RolloutSampler::Distilled`], for post-training a distilled student). A rollout keeps the transitions a trainer asks for
//! (input, time, mean, the sample that followed), from which [`transition_mean`] recomputes the mean with the
//! current network for the policy ratio.
//!
//! Everything is written against one primitive, the x0 prediction at an EDM sigma ([`edm_x0`], the network through
//! `RectifiedFlowScaling`: at RF time `s = sigma / (1 + sigma)` on `x / (1 + sigma)`), which is how the reference
//! wraps a rectified-flow network for this sampler.

use candle_core::{DType, Tensor};
use orrery_dit::CosmosDit;
use orrery_flow::churn::{ChurnSchedule, Multistep};
use orrery_flow::flow_grpo::SdeStep;
use orrery_flow::trigflow::distilled_times;
use orrery_flow::Schedule;

use crate::distilled::{per_sample, trigflow_x0, TrigCondition, DISTILLED_STEPS};
use crate::error::{PipelineError, Result};

/// The network's x0 from `x` = x0 + sigma e (B, C, T, h, w) at one EDM sigma per sample, conditioning frames
/// pinned as [`trigflow_x0`] pins them. The arithmetic runs in `x`'s type.
pub fn edm_x0(
    dit: &CosmosDit,
    x: &Tensor,
    sigmas: &[f64],
    condition: &TrigCondition,
) -> Result<Tensor> {
    // TrigFlow time atan(sigma): x_trig = cos(t) x_edm, and the same preconditioning.
    let times: Vec<f64> = sigmas.iter().map(|s| s.atan()).collect();
    let cos: Vec<f64> = times.iter().map(|t| t.cos()).collect();
    let scale = per_sample(&cos, x)?;
    trigflow_x0(dit, &x.broadcast_mul(&scale)?, &times, condition)
}

/// Which stochastic sampler rolls out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RolloutSampler {
    /// The released RL sampler: Karras sigmas, churn, "2ab"; a last clean prediction at `sigma_min`.
    Churn(ChurnSchedule),
    /// Flow-GRPO's SDE over the shifted RF schedule at `noise_level`; the last step (to 0) is the ODE's.
    FlowGrpo {
        steps: usize,
        shift: f64,
        noise_level: f64,
    },
    /// The first `steps` of the distilled sampler's four times, each x0 prediction re-noised to the next time with
    /// fresh noise (the released loop re-uses the initial noise), so that every transition is Gaussian: in EDM
    /// form its mean is the x0 prediction and its std the next sigma. The first transition's mean is the one-step
    /// estimate a distilled model samples its one-step modes with.
    Distilled { steps: usize },
}

/// EDM sigmas `tan t` of the distilled sampler's times; the first (pi/2) is 1.6e16 in float64, at which
/// [`edm_x0`] hands the network the unit noise exactly as the distilled sampler does.
pub fn distilled_sigmas() -> [f64; DISTILLED_STEPS] {
    distilled_times().map(f64::tan)
}

impl RolloutSampler {
    /// Model calls of one rollout.
    pub fn calls(&self) -> usize {
        match self {
            RolloutSampler::Churn(c) => c.steps + 1,
            RolloutSampler::FlowGrpo { steps, .. } | RolloutSampler::Distilled { steps } => *steps,
        }
    }

    /// Steps whose transition is Gaussian (and can be trained on): all but the last, which ends deterministically
    /// (the reference never trains on it either: `train_on` 0, 2, ..., 18 of 20).
    pub fn stochastic_steps(&self) -> usize {
        match self {
            RolloutSampler::Churn(c) => c.steps - 1,
            RolloutSampler::FlowGrpo { steps, .. } | RolloutSampler::Distilled { steps } => {
                steps - 1
            }
        }
    }

    pub fn check(&self) -> Result<()> {
        match self {
            RolloutSampler::Churn(c) => Ok(c.check()?),
            RolloutSampler::FlowGrpo {
                steps,
                shift,
                noise_level,
            } => {
                Schedule::shifted(*steps, *shift)?;
                if *steps < 2 || !(*noise_level >= 0.0 && noise_level.is_finite()) {
                    return Err(PipelineError::Settings(format!(
                        "Flow-GRPO sampler: {steps} steps at noise level {noise_level} (expected at least 2 steps \
                         and a level >= 0)"
                    )));
                }
                Ok(())
            }
            RolloutSampler::Distilled { steps } => {
                if !(2..=DISTILLED_STEPS).contains(steps) {
                    return Err(PipelineError::Settings(format!(
                        "distilled rollout sampler: {steps} steps (expected 2 to {DISTILLED_STEPS}: the last step \
                         is deterministic)"
                    )));
                }
                Ok(())
            }
        }
    }

    /// The starting state from unit noise `e`: `sigma_max e` (EDM) or `e` (RF time 1).
    fn start(&self, e: &Tensor) -> Result<Tensor> {
        Ok(match self {
            RolloutSampler::Churn(c) => (e * c.sigma_max)?,
            RolloutSampler::Distilled { .. } => (e * distilled_sigmas()[0])?,
            RolloutSampler::FlowGrpo { .. } => e.clone(),
        })
    }
}

/// One Gaussian transition of a rollout: from `input` at time `time` the sampler moved to `sample`, drawn around
/// `mean` with std `std`. Times are EDM sigmas (churn: the churned sigma) or RF times (Flow-GRPO).
#[derive(Debug, Clone)]
pub struct Transition {
    pub step: usize,
    pub input: Tensor,
    pub time: f64,
    pub time_next: f64,
    pub mean: Tensor,
    pub sample: Tensor,
    pub std: f64,
    /// The previous step's x0 prediction and its (churned) sigma, which the "2ab" mean uses.
    pub previous: Option<(Tensor, f64)>,
}

/// A finished rollout: the kept transitions and the sample (float32, B, C, T, h, w).
pub struct Rollout {
    pub transitions: Vec<Transition>,
    pub latents: Tensor,
}

/// The x0 prediction of the network being sampled at an EDM sigma (one per sample).
pub trait Denoiser {
    fn x0(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor>;
}

impl<F: FnMut(&Tensor, f64) -> Result<Tensor>> Denoiser for F {
    fn x0(&mut self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        self(x, sigma)
    }
}

/// Rolls out from unit noise `e`; `normal(shape)` draws the sampler's fresh unit noise, `keep(i)` says which
/// transitions to return, `on_step(i, calls)` reports progress. The state is float64 and the network sees it
/// in float32, as the reference's sampler runs.
pub fn rollout(
    sampler: &RolloutSampler,
    denoiser: &mut impl Denoiser,
    e: &Tensor,
    mut normal: impl FnMut(&[usize]) -> Result<Tensor>,
    keep: impl Fn(usize) -> bool,
    mut on_step: impl FnMut(usize, usize),
) -> Result<Rollout> {
    sampler.check()?;
    let calls = sampler.calls();
    let mut x = sampler.start(&e.to_dtype(DType::F64)?)?;
    let mut kept = Vec::new();
    let mut predict = |x: &Tensor, sigma: f64| -> Result<Tensor> {
        let x_in = x.to_dtype(DType::F32)?.to_dtype(DType::F64)?;
        Ok(denoiser.x0(&x_in, sigma)?.to_dtype(DType::F64)?)
    };
    let latents = match sampler {
        RolloutSampler::Churn(c) => {
            let sigmas = c.sigmas();
            let mut previous: Option<(Tensor, f64)> = None;
            // The churn of step 0; later ones are drawn as the transition noise of the step before.
            x = (&x + (normal(x.dims())?.to_dtype(DType::F64)? * c.churn_std(sigmas[0]))?)?;
            for i in 0..c.steps {
                let (hat, next) = (c.churned(sigmas[i]), sigmas[i + 1]);
                let x0 = predict(&x, hat)?;
                let prev = previous.as_ref().map(|(p, s)| (p, *s));
                let mean = multistep_mean(&x, &x0, (hat, next), prev)?;
                // The next step churns its input: that noise makes this transition Gaussian. After the last
                // step nothing churns, so its output is the mean.
                if i + 1 == c.steps {
                    x = mean;
                    on_step(i + 1, calls);
                    break;
                }
                let std = c.churn_std(next);
                let sample = (&mean + (normal(x.dims())?.to_dtype(DType::F64)? * std)?)?;
                if keep(i) {
                    kept.push(Transition {
                        step: i,
                        input: x.to_dtype(DType::F32)?,
                        time: hat,
                        time_next: next,
                        mean: mean.to_dtype(DType::F32)?,
                        sample: sample.to_dtype(DType::F32)?,
                        std,
                        previous: previous
                            .as_ref()
                            .map(|(p, s)| p.to_dtype(DType::F32).map(|p| (p, *s)))
                            .transpose()?,
                    });
                }
                previous = Some((x0, hat));
                x = sample;
                on_step(i + 1, calls);
            }
            // The clean prediction at sigma_min (`sample_clean`) of the last step's output.
            let last = predict(&x, sigmas[c.steps])?;
            on_step(calls, calls);
            last
        }
        RolloutSampler::FlowGrpo {
            steps,
            shift,
            noise_level,
        } => {
            let schedule = Schedule::shifted(*steps, *shift)?;
            let ts: Vec<f64> = schedule.sigmas.iter().map(|&s| s as f64).collect();
            for i in 0..*steps {
                let (t, t_next) = (ts[i], ts[i + 1]);
                let (x0, v) = rf_prediction(&mut predict, &x, t)?;
                if t_next <= 0.0 {
                    x = x0;
                    on_step(i + 1, calls);
                    break;
                }
                let s = SdeStep::new(t, t_next, *noise_level)?;
                let mean = sde_mean(&x, &v, &s)?;
                let sample = (&mean + (normal(x.dims())?.to_dtype(DType::F64)? * s.std)?)?;
                if keep(i) {
                    kept.push(Transition {
                        step: i,
                        input: x.to_dtype(DType::F32)?,
                        time: t,
                        time_next: t_next,
                        mean: mean.to_dtype(DType::F32)?,
                        sample: sample.to_dtype(DType::F32)?,
                        std: s.std,
                        previous: None,
                    });
                }
                x = sample;
                on_step(i + 1, calls);
            }
            x
        }
        RolloutSampler::Distilled { steps } => {
            let sigmas = distilled_sigmas();
            for i in 0..*steps {
                let x0 = predict(&x, sigmas[i])?;
                if i + 1 == *steps {
                    x = x0;
                    on_step(i + 1, calls);
                    break;
                }
                let std = sigmas[i + 1];
                let sample = (&x0 + (normal(x.dims())?.to_dtype(DType::F64)? * std)?)?;
                if keep(i) {
                    kept.push(Transition {
                        step: i,
                        input: x.to_dtype(DType::F32)?,
                        time: sigmas[i],
                        time_next: std,
                        mean: x0.to_dtype(DType::F32)?,
                        sample: sample.to_dtype(DType::F32)?,
                        std,
                        previous: None,
                    });
                }
                x = sample;
                on_step(i + 1, calls);
            }
            x
        }
    };
    Ok(Rollout {
        transitions: kept,
        latents: latents.to_dtype(DType::F32)?,
    })
}

/// The mean of `transition` under the current network (`get_mu_from_model`): the same update from the same
/// input, with the new x0 prediction (and the rollout's previous prediction for "2ab"). Runs in the input's type,
/// so gradients reach the network.
pub fn transition_mean(
    sampler: &RolloutSampler,
    denoiser: &mut impl Denoiser,
    transition: &Transition,
) -> Result<Tensor> {
    let (x, t, t_next) = (&transition.input, transition.time, transition.time_next);
    match sampler {
        RolloutSampler::Churn(_) => {
            let x0 = denoiser.x0(x, t)?;
            let prev = transition.previous.as_ref().map(|(p, s)| (p, *s));
            multistep_mean(x, &x0, (t, t_next), prev)
        }
        RolloutSampler::FlowGrpo { noise_level, .. } => {
            let (_, v) = rf_prediction(&mut |x: &Tensor, s| denoiser.x0(x, s), x, t)?;
            sde_mean(x, &v, &SdeStep::new(t, t_next, *noise_level)?)
        }
        RolloutSampler::Distilled { .. } => denoiser.x0(x, t),
    }
}

/// The "2ab" mean from `x` at sigma `s` to sigma `t` with its x0 prediction and the previous step's prediction
/// and sigma.
fn multistep_mean(
    x: &Tensor,
    x0: &Tensor,
    (s, t): (f64, f64),
    previous: Option<(&Tensor, f64)>,
) -> Result<Tensor> {
    let m = Multistep::coefficients(s, t, previous.map(|p| p.1))?;
    let mean = ((x * m.a_x)? + (x0 * m.a_x0)?)?;
    Ok(match previous {
        Some((p, _)) => (mean + (p * m.a_prev)?)?,
        None => mean,
    })
}

/// The x0 prediction and velocity `(x - x0) / t` at RF state `x` and time `t`, through the EDM predictor
/// (`x / (1 - t)` at sigma `t / (1 - t)`).
fn rf_prediction(
    predict: &mut impl FnMut(&Tensor, f64) -> Result<Tensor>,
    x: &Tensor,
    t: f64,
) -> Result<(Tensor, Tensor)> {
    let x0 = predict(&(x / (1.0 - t))?, t / (1.0 - t))?;
    let v = ((x - &x0)? / t)?;
    Ok((x0, v))
}

/// The mean `c_x x + c_v v` of a Flow-GRPO SDE step.
fn sde_mean(x: &Tensor, v: &Tensor, step: &SdeStep) -> Result<Tensor> {
    Ok(((x * step.c_x)? + (v * step.c_v)?)?)
}

/// The EDM sigma of a transition's time (Flow-GRPO's RF time t is sigma t / (1 - t)).
pub fn edm_sigma(sampler: &RolloutSampler, time: f64) -> f64 {
    match sampler {
        RolloutSampler::Churn(_) | RolloutSampler::Distilled { .. } => time,
        RolloutSampler::FlowGrpo { .. } => time / (1.0 - time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn unit_noise(shape: &[usize], seed: u64) -> Tensor {
        orrery_flow::noise::gaussian(
            orrery_flow::noise::NoiseKind::Fast,
            seed,
            shape,
            &Device::Cpu,
        )
        .unwrap()
    }

    fn max_abs(t: &Tensor) -> f64 {
        t.abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    /// A denoiser that knows the data exactly: every sampler must land on it.
    #[test]
    fn an_exact_denoiser_lands_on_the_data() {
        let shape = [2, 3, 2, 2, 2];
        let data = unit_noise(&shape, 7).to_dtype(DType::F64).unwrap();
        let e = unit_noise(&shape, 8);
        for sampler in [
            RolloutSampler::Churn(ChurnSchedule::released(10)),
            RolloutSampler::FlowGrpo {
                steps: 10,
                shift: 3.0,
                noise_level: 0.7,
            },
            RolloutSampler::Distilled { steps: 4 },
        ] {
            let mut exact =
                |x: &Tensor, _: f64| -> Result<Tensor> { Ok(data.to_dtype(x.dtype())?) };
            let mut seed = 100;
            let normal = |s: &[usize]| {
                seed += 1;
                Ok(unit_noise(s, seed))
            };
            let r = rollout(&sampler, &mut exact, &e, normal, |i| i % 2 == 0, |_, _| {}).unwrap();
            let err = max_abs(&(r.latents.to_dtype(DType::F64).unwrap() - &data).unwrap());
            assert!(err < 1e-5, "{sampler:?}: {err}");
            let stochastic = sampler.stochastic_steps();
            assert_eq!(r.transitions.len(), stochastic.div_ceil(2));
            let steps = match sampler {
                RolloutSampler::Distilled { steps } => steps,
                _ => 10,
            };
            assert_eq!(stochastic, steps - 1);
            // Every kept transition's mean, recomputed, is the rollout's; its sample lies near it.
            for tr in &r.transitions {
                let mean = transition_mean(&sampler, &mut exact, tr).unwrap();
                let d = max_abs(&(mean.to_dtype(DType::F32).unwrap() - &tr.mean).unwrap());
                assert!(
                    d < 1e-4 * (1.0 + tr.time),
                    "{sampler:?} step {}: {d}",
                    tr.step
                );
                assert!(tr.std > 0.0 && tr.std.is_finite());
            }
        }
    }

    #[test]
    fn the_distilled_rollout_re_noises_each_prediction_to_the_next_time() {
        let shape = [1, 2, 2, 4, 4];
        let sampler = RolloutSampler::Distilled { steps: 3 };
        // A denoiser that returns a fixed x0 and records the sigmas and inputs it was called at.
        let x0 = unit_noise(&shape, 5).to_dtype(DType::F64).unwrap();
        let mut calls: Vec<(f64, Tensor)> = Vec::new();
        let mut fixed = |x: &Tensor, sigma: f64| -> Result<Tensor> {
            calls.push((sigma, x.clone()));
            Ok(x0.clone())
        };
        let mut seed = 40;
        let normal = |s: &[usize]| {
            seed += 1;
            Ok(unit_noise(s, seed))
        };
        let e = unit_noise(&shape, 9);
        let r = rollout(&sampler, &mut fixed, &e, normal, |_| true, |_, _| {}).unwrap();
        let sigmas: Vec<f64> = calls.iter().map(|(s, _)| *s).collect();
        assert_eq!(sigmas, distilled_sigmas()[..3]);
        // The first input is the unit noise at the pure-noise time: the network sees `e` itself.
        let (first_sigma, first) = &calls[0];
        let cos = first_sigma.atan().cos();
        let seen = (first.to_dtype(DType::F64).unwrap() * cos).unwrap();
        let e64 = e.to_dtype(DType::F64).unwrap();
        assert!(max_abs(&(seen - &e64).unwrap()) < 1e-6);
        // Two Gaussian transitions around the prediction with the next sigma as std; the last step is the mean.
        assert_eq!(r.transitions.len(), 2);
        for (k, tr) in r.transitions.iter().enumerate() {
            assert_eq!((tr.time, tr.std), (sigmas[k], sigmas[k + 1]));
            let d = max_abs(&(tr.mean.to_dtype(DType::F64).unwrap() - &x0).unwrap());
            assert!(d < 1e-6, "{d}");
        }
        let last = max_abs(&(r.latents.to_dtype(DType::F64).unwrap() - &x0).unwrap());
        assert!(last < 1e-6);
        assert!(RolloutSampler::Distilled { steps: 1 }.check().is_err());
        assert!(RolloutSampler::Distilled { steps: 5 }.check().is_err());
    }

    #[test]
    fn transition_noise_has_the_stated_std() {
        // With x0 = 0 the churn sample minus the mean is pure transition noise.
        let shape = [1, 4, 8, 16, 16];
        let sampler = RolloutSampler::Churn(ChurnSchedule::released(20));
        let mut zero = |x: &Tensor, _: f64| -> Result<Tensor> { Ok(x.zeros_like()?) };
        let mut seed = 0;
        let normal = |s: &[usize]| {
            seed += 1;
            Ok(unit_noise(s, seed))
        };
        let e = unit_noise(&shape, 99);
        let r = rollout(&sampler, &mut zero, &e, normal, |i| i == 3, |_, _| {}).unwrap();
        let tr = &r.transitions[0];
        let d = (&tr.sample - &tr.mean).unwrap().flatten_all().unwrap();
        let n = d.dim(0).unwrap() as f64;
        let var = d
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
            / n;
        let ratio = var.sqrt() / tr.std;
        assert!((ratio - 1.0).abs() < 0.03, "{ratio}");
    }
}

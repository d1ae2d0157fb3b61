//! `Encoder3d`, `Decoder3d` and the VAE around them (`WanVAE_`), with official module names.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::config::VaeConfig;
use crate::layers::{
    frames, unframes, AttentionBlock, CausalConv3d, Resample, ResampleMode, ResidualBlock, RmsNorm,
    SlotCounter, StreamCache,
};

/// A stage of `downsamples` / `upsamples`: the official code keeps them in one flat list.
#[derive(Debug, Clone)]
enum Layer {
    Residual(ResidualBlock),
    Resample(Resample),
}

impl Layer {
    fn forward(&self, x: &Tensor, cache: &mut StreamCache) -> Result<Tensor> {
        match self {
            Layer::Residual(r) => r.forward(x, cache),
            Layer::Resample(r) => r.forward(x, cache),
        }
    }
}

/// `middle`: residual, attention, residual.
#[derive(Debug, Clone)]
struct Middle {
    res0: ResidualBlock,
    attn: AttentionBlock,
    res1: ResidualBlock,
}

impl Middle {
    fn new(vb: VarBuilder, dim: usize, slots: &mut SlotCounter) -> Result<Self> {
        Ok(Self {
            res0: ResidualBlock::new(vb.pp("0"), dim, dim, slots)?,
            attn: AttentionBlock::new(vb.pp("1"), dim)?,
            res1: ResidualBlock::new(vb.pp("2"), dim, dim, slots)?,
        })
    }

    fn forward(&self, x: &Tensor, cache: &mut StreamCache) -> Result<Tensor> {
        let x = self.res0.forward(x, cache)?;
        let x = self.attn.forward(&x)?;
        self.res1.forward(&x, cache)
    }
}

/// `head`: RMSNorm, SiLU, CausalConv3d 3.
#[derive(Debug, Clone)]
struct Head {
    norm: RmsNorm,
    conv: CausalConv3d,
}

impl Head {
    fn new(vb: VarBuilder, cin: usize, cout: usize, slots: &mut SlotCounter) -> Result<Self> {
        Ok(Self {
            norm: RmsNorm::new(vb.pp("0"), &[cin, 1, 1, 1])?,
            conv: CausalConv3d::new(vb.pp("2"), cin, cout, 3, 3, slots)?,
        })
    }

    fn forward(&self, x: &Tensor, cache: &mut StreamCache) -> Result<Tensor> {
        let (b, t, _, _, _) = x.dims5()?;
        let h = unframes(&self.norm.forward_silu(&frames(x)?)?, b, t)?;
        self.conv.forward(&h, cache)
    }
}

/// `encoder`: video (B, T, 3, H, W) in [-1, 1] -> (B, T', 2 z, H / 8, W / 8).
#[derive(Debug, Clone)]
pub struct Encoder {
    conv1: CausalConv3d,
    downsamples: Vec<Layer>,
    middle: Middle,
    head: Head,
    slots: usize,
}

impl Encoder {
    pub fn new(vb: VarBuilder, c: &VaeConfig) -> Result<Self> {
        let mut slots = SlotCounter::default();
        let dims: Vec<usize> = std::iter::once(1)
            .chain(c.dim_mult.iter().copied())
            .map(|m| m * c.base_dim)
            .collect();
        let conv1 = CausalConv3d::new(vb.pp("conv1"), 3, dims[0], 3, 3, &mut slots)?;
        let mut downsamples = Vec::new();
        let d = vb.pp("downsamples");
        for (i, pair) in dims.windows(2).enumerate() {
            let (mut cin, cout) = (pair[0], pair[1]);
            for _ in 0..c.num_res_blocks {
                downsamples.push(Layer::Residual(ResidualBlock::new(
                    d.pp(downsamples.len()),
                    cin,
                    cout,
                    &mut slots,
                )?));
                cin = cout;
            }
            if i != c.dim_mult.len() - 1 {
                let mode = if c.temporal_downsample[i] {
                    ResampleMode::Downsample3d
                } else {
                    ResampleMode::Downsample2d
                };
                downsamples.push(Layer::Resample(Resample::new(
                    d.pp(downsamples.len()),
                    cout,
                    mode,
                    &mut slots,
                )?));
            }
        }
        let top = *dims.last().expect("dims has entries");
        let middle = Middle::new(vb.pp("middle"), top, &mut slots)?;
        let head = Head::new(vb.pp("head"), top, 2 * c.z_dim, &mut slots)?;
        Ok(Self {
            conv1,
            downsamples,
            middle,
            head,
            slots: slots.0,
        })
    }

    pub fn new_cache(&self) -> StreamCache {
        StreamCache::new(self.slots)
    }

    pub fn forward(&self, x: &Tensor, cache: &mut StreamCache) -> Result<Tensor> {
        let mut x = self.conv1.forward(x, cache)?;
        for layer in &self.downsamples {
            x = layer.forward(&x, cache)?;
        }
        let x = self.middle.forward(&x, cache)?;
        self.head.forward(&x, cache)
    }
}

/// `decoder`: latent (B, T, z, h, w) -> video (B, 1 + 4 (T - 1), 3, 8 h, 8 w), unclamped.
#[derive(Debug, Clone)]
pub struct Decoder {
    conv1: CausalConv3d,
    middle: Middle,
    upsamples: Vec<Layer>,
    head: Head,
    slots: usize,
}

impl Decoder {
    pub fn new(vb: VarBuilder, c: &VaeConfig) -> Result<Self> {
        let mut slots = SlotCounter::default();
        let last = *c.dim_mult.last().expect("validated");
        let dims: Vec<usize> = std::iter::once(last)
            .chain(c.dim_mult.iter().rev().copied())
            .map(|m| m * c.decoder_base_dim)
            .collect();
        let temporal_upsample: Vec<bool> = c.temporal_downsample.iter().rev().copied().collect();
        let conv1 = CausalConv3d::new(vb.pp("conv1"), c.z_dim, dims[0], 3, 3, &mut slots)?;
        let middle = Middle::new(vb.pp("middle"), dims[0], &mut slots)?;
        let mut upsamples = Vec::new();
        let u = vb.pp("upsamples");
        for (i, pair) in dims.windows(2).enumerate() {
            let (mut cin, cout) = (pair[0], pair[1]);
            if i > 0 {
                cin /= 2; // the previous upsampling halved the channels
            }
            for _ in 0..=c.num_res_blocks {
                upsamples.push(Layer::Residual(ResidualBlock::new(
                    u.pp(upsamples.len()),
                    cin,
                    cout,
                    &mut slots,
                )?));
                cin = cout;
            }
            if i != c.dim_mult.len() - 1 {
                let mode = if temporal_upsample[i] {
                    ResampleMode::Upsample3d
                } else {
                    ResampleMode::Upsample2d
                };
                upsamples.push(Layer::Resample(Resample::new(
                    u.pp(upsamples.len()),
                    cout,
                    mode,
                    &mut slots,
                )?));
            }
        }
        let out = *dims.last().expect("dims has entries");
        let head = Head::new(vb.pp("head"), out, 3, &mut slots)?;
        Ok(Self {
            conv1,
            middle,
            upsamples,
            head,
            slots: slots.0,
        })
    }

    pub fn new_cache(&self) -> StreamCache {
        StreamCache::new(self.slots)
    }

    pub fn forward(&self, x: &Tensor, cache: &mut StreamCache) -> Result<Tensor> {
        let x = self.conv1.forward(x, cache)?;
        let mut x = self.middle.forward(&x, cache)?;
        for layer in &self.upsamples {
            x = layer.forward(&x, cache)?;
        }
        self.head.forward(&x, cache)
    }
}

//! The TF-FID InceptionV3 ("inception-2015-12-05", the network of every published FID) with the module names
//! of its TorchScript export (`net.layers.*`). Input: frames resized to 299x299 as NVIDIA's reference does, then
//! scaled to TF's [-1, 0.9921875] (x / 128 - 1); output: the 2048 pool features.

use std::path::Path;

use candle_core::{Device, Tensor};
use orrery_media::RgbImage;

use crate::error::Result;
use crate::ops::{self, avg_pool3x3_same_exclude_pad, conv2d, max_pool2d};
use crate::weights::NetWeights;

pub const INCEPTION_FILE: &str = "inception-fid.safetensors";
pub const INCEPTION_SIZE: usize = 299;
pub const INCEPTION_FEATURES: usize = 2048;
const BN_EPS: f64 = 1e-3;

/// Conv2d + inference batch norm (folded) + ReLU.
struct ConvBn {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    pads: [usize; 4],
}

impl ConvBn {
    /// `same`: pad by half the kernel (the layer's stored padding); else no padding.
    fn load(w: &mut NetWeights, prefix: &str, stride: usize, same: bool) -> Result<Self> {
        let weight = w.take(&format!("{prefix}.weight"), &[None, None, None, None])?;
        let (cout, _, kh, kw) = weight.dims4()?;
        let vector =
            |w: &mut NetWeights, name: &str| w.take(&format!("{prefix}.{name}"), &[Some(cout)]);
        let (mean, var, beta) = (vector(w, "mean")?, vector(w, "var")?, vector(w, "beta")?);
        let (weight, bias) = ops::fold_batch_norm(&weight, &mean, &var, &beta, BN_EPS)?;
        let pads = if same {
            [kh / 2, kh / 2, kw / 2, kw / 2]
        } else {
            [0; 4]
        };
        Ok(Self {
            weight,
            bias,
            stride,
            pads,
        })
    }

    fn same(w: &mut NetWeights, prefix: &str) -> Result<Self> {
        Self::load(w, prefix, 1, true)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(conv2d(x, &self.weight, &self.bias, self.stride, self.pads)?.relu()?)
    }
}

fn chain(convs: &[ConvBn], x: &Tensor) -> Result<Tensor> {
    convs.iter().try_fold(x.clone(), |x, c| c.forward(&x))
}

fn max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
    Ok(max_pool2d(x, 3, 2, [0; 4])?)
}

enum Mixed {
    /// 35x35 blocks: 1x1 | 1x1, 5x5 | 1x1, 3x3, 3x3 | avg pool, 1x1.
    A {
        conv: ConvBn,
        tower: Vec<ConvBn>,
        tower_1: Vec<ConvBn>,
        pool_conv: ConvBn,
    },
    /// Grid reduction 35 -> 17: 3x3/2 | 1x1, 3x3, 3x3/2 | max pool.
    B { conv: ConvBn, tower: Vec<ConvBn> },
    /// 17x17 blocks with factorised 7x7 convolutions.
    C {
        conv: ConvBn,
        tower: Vec<ConvBn>,
        tower_1: Vec<ConvBn>,
        pool_conv: ConvBn,
    },
    /// Grid reduction 17 -> 8.
    D {
        tower: Vec<ConvBn>,
        tower_1: Vec<ConvBn>,
    },
    /// 8x8 blocks with split 1x3 / 3x1 outputs.
    E(Box<MixedE>),
}

struct MixedE {
    conv: ConvBn,
    tower_conv: ConvBn,
    tower_mixed: [ConvBn; 2],
    tower_1: Vec<ConvBn>,
    tower_1_mixed: [ConvBn; 2],
    pool_conv: ConvBn,
    /// The last block pools by max, not average (the TF graph's quirk).
    max_pool: bool,
}

impl Mixed {
    fn load_a_or_c(w: &mut NetWeights, p: &str, c: bool) -> Result<Self> {
        let tower_len = if c { 3 } else { 2 };
        let tower_1_len = if c { 5 } else { 3 };
        let convs = |w: &mut NetWeights, tower: &str, n: usize| -> Result<Vec<ConvBn>> {
            (0..n)
                .map(|i| {
                    let name = if i == 0 {
                        "conv".to_owned()
                    } else {
                        format!("conv_{i}")
                    };
                    ConvBn::same(w, &format!("{p}.{tower}.{name}"))
                })
                .collect()
        };
        let conv = ConvBn::same(w, &format!("{p}.conv"))?;
        let tower = convs(w, "tower", tower_len)?;
        let tower_1 = convs(w, "tower_1", tower_1_len)?;
        let pool_conv = ConvBn::same(w, &format!("{p}.tower_2.conv"))?;
        Ok(if c {
            Self::C {
                conv,
                tower,
                tower_1,
                pool_conv,
            }
        } else {
            Self::A {
                conv,
                tower,
                tower_1,
                pool_conv,
            }
        })
    }

    fn load_b(w: &mut NetWeights, p: &str) -> Result<Self> {
        Ok(Self::B {
            conv: ConvBn::load(w, &format!("{p}.conv"), 2, false)?,
            tower: vec![
                ConvBn::same(w, &format!("{p}.tower.conv"))?,
                ConvBn::same(w, &format!("{p}.tower.conv_1"))?,
                ConvBn::load(w, &format!("{p}.tower.conv_2"), 2, false)?,
            ],
        })
    }

    fn load_d(w: &mut NetWeights, p: &str) -> Result<Self> {
        Ok(Self::D {
            tower: vec![
                ConvBn::same(w, &format!("{p}.tower.conv"))?,
                ConvBn::load(w, &format!("{p}.tower.conv_1"), 2, false)?,
            ],
            tower_1: vec![
                ConvBn::same(w, &format!("{p}.tower_1.conv"))?,
                ConvBn::same(w, &format!("{p}.tower_1.conv_1"))?,
                ConvBn::same(w, &format!("{p}.tower_1.conv_2"))?,
                ConvBn::load(w, &format!("{p}.tower_1.conv_3"), 2, false)?,
            ],
        })
    }

    fn load_e(w: &mut NetWeights, p: &str, max_pool: bool) -> Result<Self> {
        let mut c = |name: &str| ConvBn::same(w, &format!("{p}.{name}"));
        Ok(Self::E(Box::new(MixedE {
            conv: c("conv")?,
            tower_conv: c("tower_conv")?,
            tower_mixed: [c("tower_mixed_conv")?, c("tower_mixed_conv_1")?],
            tower_1: vec![c("tower_1_conv")?, c("tower_1_conv_1")?],
            tower_1_mixed: [c("tower_1_mixed_conv")?, c("tower_1_mixed_conv_1")?],
            pool_conv: c("tower_2_conv")?,
            max_pool,
        })))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let branches = match self {
            Self::A {
                conv,
                tower,
                tower_1,
                pool_conv,
            }
            | Self::C {
                conv,
                tower,
                tower_1,
                pool_conv,
            } => vec![
                conv.forward(x)?,
                chain(tower, x)?,
                chain(tower_1, x)?,
                pool_conv.forward(&avg_pool3x3_same_exclude_pad(x)?)?,
            ],
            Self::B { conv, tower } => {
                vec![conv.forward(x)?, chain(tower, x)?, max_pool_3x3_s2(x)?]
            }
            Self::D { tower, tower_1 } => {
                vec![chain(tower, x)?, chain(tower_1, x)?, max_pool_3x3_s2(x)?]
            }
            Self::E(e) => {
                let MixedE {
                    conv,
                    tower_conv,
                    tower_mixed,
                    tower_1,
                    tower_1_mixed,
                    pool_conv,
                    max_pool,
                } = e.as_ref();
                let a = tower_conv.forward(x)?;
                let b = chain(tower_1, x)?;
                let pooled = if *max_pool {
                    max_pool2d(x, 3, 1, [1; 4])?
                } else {
                    avg_pool3x3_same_exclude_pad(x)?
                };
                vec![
                    conv.forward(x)?,
                    tower_mixed[0].forward(&a)?,
                    tower_mixed[1].forward(&a)?,
                    tower_1_mixed[0].forward(&b)?,
                    tower_1_mixed[1].forward(&b)?,
                    pool_conv.forward(&pooled)?,
                ]
            }
        };
        Ok(Tensor::cat(&branches, 1)?)
    }
}

/// The FID feature network.
pub struct InceptionFid {
    stem: [ConvBn; 5],
    mixed: Vec<Mixed>,
    device: Device,
}

impl InceptionFid {
    /// Loads `inception-fid.safetensors` (written by `tools/eval_weights/fetch.py`).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let mut w = NetWeights::open(path, device)?;
        let l = "net.layers";
        let stem = [
            ConvBn::load(&mut w, &format!("{l}.conv"), 2, false)?,
            ConvBn::load(&mut w, &format!("{l}.conv_1"), 1, false)?,
            ConvBn::same(&mut w, &format!("{l}.conv_2"))?,
            ConvBn::same(&mut w, &format!("{l}.conv_3"))?,
            ConvBn::load(&mut w, &format!("{l}.conv_4"), 1, false)?,
        ];
        let name = |i: usize| {
            if i == 0 {
                format!("{l}.mixed")
            } else {
                format!("{l}.mixed_{i}")
            }
        };
        let mut mixed = Vec::with_capacity(11);
        for i in 0..3 {
            mixed.push(Mixed::load_a_or_c(&mut w, &name(i), false)?);
        }
        mixed.push(Mixed::load_b(&mut w, &name(3))?);
        for i in 4..8 {
            mixed.push(Mixed::load_a_or_c(&mut w, &name(i), true)?);
        }
        mixed.push(Mixed::load_d(&mut w, &name(8))?);
        mixed.push(Mixed::load_e(&mut w, &name(9), false)?);
        mixed.push(Mixed::load_e(&mut w, &name(10), true)?);
        w.finish()?;
        Ok(Self {
            stem,
            mixed,
            device: device.clone(),
        })
    }

    /// (N, 3, 299, 299) in [-1, 0.9921875] -> (N, 2048).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.stem[0].forward(x)?;
        let x = self.stem[1].forward(&x)?;
        let x = max_pool_3x3_s2(&self.stem[2].forward(&x)?)?;
        let x = self.stem[3].forward(&x)?;
        let mut x = max_pool_3x3_s2(&self.stem[4].forward(&x)?)?;
        for block in &self.mixed {
            x = block.forward(&x)?;
        }
        Ok(ops::spatial_mean(&x)?)
    }

    /// Features of RGB frames of any size: (N, 2048) as f32 rows, `batch` frames at a time.
    pub fn features(&self, frames: &[&RgbImage], batch: usize) -> Result<Vec<Vec<f32>>> {
        let mut rows = Vec::with_capacity(frames.len());
        for chunk in frames.chunks(batch.max(1)) {
            let x = ops::resize_frames(chunk, INCEPTION_SIZE, INCEPTION_SIZE, &self.device)?;
            // [0, 255] -> TF's [-1, 1 - 1/128].
            let x = ((x / 128.0)? - 1.0)?;
            rows.extend(self.forward(&x)?.to_vec2::<f32>()?);
        }
        Ok(rows)
    }
}

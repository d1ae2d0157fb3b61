//! Parameterised layers whose struct and field names mirror checkpoint modules.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::frozen_matmul::matmul_frozen;

/// `y = x W^T (+ b)` over the last dimension of an input of any rank: the leading dimensions are flattened into
/// one GEMM. Weight (out, in) as PyTorch stores it. With an [`Adapter`] (LoRA training), `+ s (x A^T) B^T`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    /// A trainable low-rank adapter beside the (frozen) weight; `None` leaves the layer exactly `x W^T + b`.
    pub adapter: Option<Adapter>,
}

/// A LoRA pair kept apart from the weight, so that only it trains: A `down` (r, in), B `up` (out, r) and the
/// factor `scaling` (alpha / r). The product is never formed: two thin GEMMs cost r (in + out) per row.
#[derive(Debug, Clone)]
pub struct Adapter {
    pub down: Tensor,
    pub up: Tensor,
    pub scaling: f64,
}

impl Linear {
    /// Loads `{vb}.weight` (out, in) and, when `bias`, `{vb}.bias` (out). New variables (training from scratch)
    /// start as PyTorch's `nn.Linear` does: uniform in +-1/sqrt(in).
    pub fn new(vb: VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
        let bias = if bias {
            Some(vb.get_with_hints(out_dim, "bias", init)?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            adapter: None,
        })
    }

    pub fn in_dim(&self) -> usize {
        self.weight.dims()[1]
    }

    /// A copy on `device` (weight, bias and adapter); the same tensors where they already are there.
    pub fn to_device(&self, device: &candle_core::Device) -> Result<Self> {
        Ok(Self {
            weight: self.weight.to_device(device)?,
            bias: self
                .bias
                .as_ref()
                .map(|b| b.to_device(device))
                .transpose()?,
            adapter: match &self.adapter {
                Some(a) => Some(Adapter {
                    down: a.down.to_device(device)?,
                    up: a.up.to_device(device)?,
                    scaling: a.scaling,
                }),
                None => None,
            },
        })
    }

    pub fn out_dim(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let Some((&last, lead)) = dims.split_last() else {
            candle_core::bail!("linear: scalar input")
        };
        if last != self.in_dim() {
            candle_core::bail!(
                "linear: input has {last} features, weight expects {}",
                self.in_dim()
            );
        }
        let rows: usize = lead.iter().product();
        // A frozen weight (LoRA's base) gets no gradient: candle would compute and keep one anyway.
        let y = matmul_frozen(&x.reshape((rows, last))?, &self.weight.t()?)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let y = match &self.adapter {
            // The adapter runs in the input's type (its float32 variables cast for a bfloat16 network).
            Some(a) => {
                let x = x.reshape((rows, last))?;
                let down = a.down.to_dtype(x.dtype())?;
                let up = a.up.to_dtype(x.dtype())?;
                (y + (x.matmul(&down.t()?)?.matmul(&up.t()?)? * a.scaling)?)?
            }
            None => y,
        };
        let mut out_dims = lead.to_vec();
        out_dims.push(self.out_dim());
        y.reshape(out_dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn flattens_leading_dimensions() {
        let dev = Device::Cpu;
        let lin = Linear {
            weight: Tensor::new(&[[1f32, 2.], [0., -1.], [3., 0.5]], &dev).unwrap(),
            bias: Some(Tensor::new(&[0.5f32, 0., -1.], &dev).unwrap()),
            adapter: None,
        };
        let x = Tensor::arange(0f32, 8., &dev)
            .unwrap()
            .reshape((2, 2, 2))
            .unwrap();
        let y = lin.forward(&x).unwrap();
        assert_eq!(y.dims(), &[2, 2, 3]);
        let row = y.get(1).unwrap().get(1).unwrap().to_vec1::<f32>().unwrap();
        // x = [6, 7]
        assert_eq!(row, vec![6. + 14. + 0.5, -7., 18. + 3.5 - 1.]);
        let wrong = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
        assert!(lin.forward(&wrong).is_err());
    }

    #[test]
    fn an_adapter_adds_its_scaled_low_rank_product() {
        let dev = Device::Cpu;
        let mut lin = Linear {
            weight: Tensor::new(&[[1f32, 2.], [0., -1.]], &dev).unwrap(),
            bias: None,
            adapter: None,
        };
        let x = Tensor::new(&[[[3f32, 4.]]], &dev).unwrap();
        assert_eq!(
            lin.forward(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            [11., -4.]
        );
        lin.adapter = Some(Adapter {
            down: Tensor::new(&[[1f32, 1.]], &dev).unwrap(),
            up: Tensor::new(&[[1f32], [-2.]], &dev).unwrap(),
            scaling: 0.5,
        });
        // A x = 7; + 0.5 * (7, -14)
        let y = lin.forward(&x).unwrap().flatten_all().unwrap();
        assert_eq!(y.to_vec1::<f32>().unwrap(), [14.5, -11.]);
    }
}

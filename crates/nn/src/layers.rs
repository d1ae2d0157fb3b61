//! Parameterised layers whose struct and field names mirror checkpoint modules.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// `y = x W^T (+ b)` over the last dimension of an input of any rank: the leading dimensions are flattened into
/// one GEMM. Weight (out, in) as PyTorch stores it.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
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
        Ok(Self { weight, bias })
    }

    pub fn in_dim(&self) -> usize {
        self.weight.dims()[1]
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
        let y = x.reshape((rows, last))?.matmul(&self.weight.t()?)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
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
}

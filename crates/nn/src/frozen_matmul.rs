//! `x @ w` for a frozen `w` (LoRA's base weights) whose backward pass computes only the input's gradient.
//!
//! candle's matmul backward always computes both operands' gradients and keeps them in the gradient store until
//! it is dropped, so a frozen weight costs a GEMM and a gradient of its size per use: with LoRA on a frozen base,
//! a second copy of every base weight and half the backward pass, thrown away. This op runs the same candle GEMM
//! forward (same bits) and only `grad @ w^T` backward.

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Result, Shape, Storage, Tensor};

/// `x @ w` with `w` outside the graph: `x` (M, K), `w` (K, N) -> (M, N). Only on the CPU; elsewhere, and when `x`
/// needs no gradient either, it is the plain matmul.
pub fn matmul_frozen(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || !x.track_op() || w.track_op() {
        return x.matmul(w);
    }
    x.contiguous()?.apply_op1(FrozenMatmul { w: w.clone() })
}

struct FrozenMatmul {
    /// (K, N), frozen.
    w: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "matmul-frozen-rhs"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = tensor_of(storage, layout)?.matmul(&self.w)?;
        Ok((storage_of(&y)?, y.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.w.t()?)?))
    }
}

/// A tensor of the contiguous data a custom op was given (a copy).
fn tensor_of(storage: &CpuStorage, layout: &Layout) -> Result<Tensor> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("matmul-frozen-rhs: contiguous input expected")
    };
    let (shape, cpu) = (layout.shape(), &Device::Cpu);
    match storage {
        CpuStorage::F32(v) => Tensor::from_slice(&v[start..end], shape, cpu),
        CpuStorage::BF16(v) => Tensor::from_slice(&v[start..end], shape, cpu),
        CpuStorage::F16(v) => Tensor::from_slice(&v[start..end], shape, cpu),
        CpuStorage::F64(v) => Tensor::from_slice(&v[start..end], shape, cpu),
        other => candle_core::bail!(
            "matmul-frozen-rhs: float input expected, got {:?}",
            candle_core::backend::BackendStorage::dtype(other)
        ),
    }
}

/// A copy of a CPU tensor's data as the storage a custom op returns.
fn storage_of(t: &Tensor) -> Result<CpuStorage> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let (Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) else {
        candle_core::bail!("matmul-frozen-rhs: contiguous CPU result expected")
    };
    Ok(match cpu {
        CpuStorage::F32(v) => CpuStorage::F32(v[start..end].to_vec()),
        CpuStorage::BF16(v) => CpuStorage::BF16(v[start..end].to_vec()),
        CpuStorage::F16(v) => CpuStorage::F16(v[start..end].to_vec()),
        CpuStorage::F64(v) => CpuStorage::F64(v[start..end].to_vec()),
        other => candle_core::bail!(
            "matmul-frozen-rhs: float result expected, got {:?}",
            candle_core::backend::BackendStorage::dtype(other)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Var};

    fn values(seed: u32, shape: (usize, usize)) -> Tensor {
        let n = shape.0 * shape.1;
        let v: Vec<f32> = (0..n)
            .map(|i| ((i as f32 + 1.0) * (seed as f32 + 0.37)).sin())
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn forward_and_input_gradient_are_the_plain_matmuls_and_the_weight_gets_none() {
        for dtype in [DType::F32, DType::BF16] {
            let x = Var::from_tensor(&values(1, (5, 7)).to_dtype(dtype).unwrap()).unwrap();
            let w = values(2, (3, 7)).to_dtype(dtype).unwrap(); // (N, K) as a Linear stores it
            let w_t = w.t().unwrap();
            let probe = values(3, (5, 3)).to_dtype(dtype).unwrap();

            let plain = x.as_tensor().matmul(&w_t).unwrap();
            let plain_grads = (&plain * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let frozen = matmul_frozen(x.as_tensor(), &w_t).unwrap();
            let grads = (&frozen * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();

            let same = |a: &Tensor, b: &Tensor| {
                let d = (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap();
                assert_eq!(d, 0.0, "{dtype:?}");
            };
            same(&frozen, &plain);
            same(
                grads.get(x.as_tensor()).unwrap(),
                plain_grads.get(x.as_tensor()).unwrap(),
            );
            // candle's matmul leaves a gradient for the weight's view; this op leaves none.
            assert!(plain_grads.get(&w_t).is_some());
            assert!(grads.get(&w_t).is_none());
        }
    }
}

//! Comparing an output with a reference, the way every golden test and reference check states its tolerance.

use candle_core::{DType, Result, Tensor};

/// `max |a - reference| / max |reference|`, in float64. Shapes must match.
pub fn max_rel_err(a: &Tensor, reference: &Tensor) -> Result<f64> {
    if a.dims() != reference.dims() {
        candle_core::bail!(
            "shape {:?} differs from the reference's {:?}",
            a.dims(),
            reference.dims()
        );
    }
    let a = a.to_dtype(DType::F64)?;
    let r = reference.to_dtype(DType::F64)?;
    let diff = (a - &r)?.abs()?.max_all()?.to_scalar::<f64>()?;
    let scale = r.abs()?.max_all()?.to_scalar::<f64>()?;
    Ok(if scale == 0.0 { diff } else { diff / scale })
}

/// `max |a - b|`, in float64 (0 for identical tensors). Shapes must match.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    if a.dims() != b.dims() {
        candle_core::bail!("shapes {:?} and {:?} differ", a.dims(), b.dims());
    }
    (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?
        .abs()?
        .max_all()?
        .to_scalar::<f64>()
}

/// Uniform values in [-scale, scale) of `shape` from a linear congruential generator seeded by `seed`: inputs
/// and weights for tests that must not depend on a random crate's stream.
pub fn seeded_uniform(seed: u64, shape: &[usize], scale: f64) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let mut s = seed;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (((s >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 2.0 * scale) as f32
        })
        .collect();
    Tensor::from_vec(v, shape, &candle_core::Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn relative_to_the_reference_scale() {
        let r = Tensor::new(&[2f32, -4.], &Device::Cpu).unwrap();
        let a = Tensor::new(&[2.5f32, -4.], &Device::Cpu).unwrap();
        assert_eq!(max_rel_err(&a, &r).unwrap(), 0.125);
        assert_eq!(max_abs_diff(&a, &r).unwrap(), 0.5);
        assert!(max_abs_diff(&a, &r.reshape((2, 1)).unwrap()).is_err());
        assert!(max_rel_err(&a, &Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap()).is_err());
    }
}

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

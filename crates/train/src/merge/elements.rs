//! Float tensors' little-endian bytes to float64 and back. Merging computes in float64 whatever the stored type
//! (bf16 and f16 widen exactly) and stores the result in the inputs' type, rounding through float32 for the
//! half types (round to nearest even at each step, as `torch.Tensor.to` does).

use half::{bf16, f16};
use orrery_nn::DType;

/// Decodes `out.len()` elements of `dtype` from `bytes` (`bytes.len() == out.len() * dtype.size_in_bytes()`).
/// `dtype` must be a float type (the driver checks the inputs before).
pub fn decode(dtype: DType, bytes: &[u8], out: &mut [f64]) {
    debug_assert_eq!(bytes.len(), out.len() * dtype.size_in_bytes());
    match dtype {
        DType::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64;
            }
        }
        DType::F64 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                *o = f64::from_le_bytes(b.try_into().expect("8 bytes"));
            }
        }
        DType::BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_le_bytes([b[0], b[1]]).to_f64();
            }
        }
        DType::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f64();
            }
        }
        other => unreachable!("merge inputs are checked to be float tensors, found {other}"),
    }
}

/// Encodes `values` as `dtype` into `out` (`out.len() == values.len() * dtype.size_in_bytes()`).
pub fn encode(dtype: DType, values: &[f64], out: &mut [u8]) {
    debug_assert_eq!(out.len(), values.len() * dtype.size_in_bytes());
    match dtype {
        DType::F32 => {
            for (v, o) in values.iter().zip(out.chunks_exact_mut(4)) {
                o.copy_from_slice(&(*v as f32).to_le_bytes());
            }
        }
        DType::F64 => {
            for (v, o) in values.iter().zip(out.chunks_exact_mut(8)) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        DType::BF16 => {
            for (v, o) in values.iter().zip(out.chunks_exact_mut(2)) {
                o.copy_from_slice(&bf16::from_f32(*v as f32).to_le_bytes());
            }
        }
        DType::F16 => {
            for (v, o) in values.iter().zip(out.chunks_exact_mut(2)) {
                o.copy_from_slice(&f16::from_f32(*v as f32).to_le_bytes());
            }
        }
        other => unreachable!("merge inputs are checked to be float tensors, found {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_float_type_round_trips() {
        let values = [0.0, -1.5, 3.25, 1024.0, -0.0078125];
        for dtype in [DType::F32, DType::F64, DType::BF16, DType::F16] {
            let mut bytes = vec![0u8; values.len() * dtype.size_in_bytes()];
            encode(dtype, &values, &mut bytes);
            let mut back = [0.0; 5];
            decode(dtype, &bytes, &mut back);
            assert_eq!(back, values, "{dtype}");
        }
    }

    #[test]
    fn half_types_round_to_nearest_even() {
        // 1 + 2^-8 lies halfway between bf16's 1 and 1 + 2^-7: ties go to the even mantissa (1).
        let mut bytes = [0u8; 2];
        encode(DType::BF16, &[1.0 + 1.0 / 256.0], &mut bytes);
        assert_eq!(u16::from_le_bytes(bytes), 0x3f80);
        encode(DType::BF16, &[1.0 + 3.0 / 256.0], &mut bytes);
        assert_eq!(u16::from_le_bytes(bytes), 0x3f82);
    }
}

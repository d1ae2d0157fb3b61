//! The Cosmos multi-layer prompt embedding ("full_concat", `TextEncoder.compute_text_embeddings_online`):
//! every decoder layer's hidden state, normalised per token, concatenated along the features.

use candle_core::{DType, Result, Tensor, D};

/// Per-token `(h - mean(h)) / (std(h) + 1e-8)` over the last dimension, with the unbiased (N - 1) std, computed
/// in float32 and returned in the input's type.
pub fn mean_normalize(h: &Tensor) -> Result<Tensor> {
    let dtype = h.dtype();
    let x = h.to_dtype(DType::F32)?;
    let n = x.dim(D::Minus1)?;
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let std = (centred.sqr()?.sum_keepdim(D::Minus1)? / (n.max(2) - 1) as f64)?.sqrt()?;
    centred.broadcast_div(&(std + 1e-8)?)?.to_dtype(dtype)
}

/// `hidden_states[1..]` (the token embeddings at index 0 are skipped), each mean-normalised, concatenated:
/// N tensors (B, L, H) -> (B, L, N H).
pub fn cosmos_embedding(hidden_states: &[Tensor]) -> Result<Tensor> {
    let layers = hidden_states
        .iter()
        .skip(1)
        .map(mean_normalize)
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&layers, D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn unbiased_std() {
        let h = Tensor::new(&[[1f32, 2., 3., 4.]], &Device::Cpu).unwrap();
        // mean 2.5, unbiased variance 5/3
        let s = (5f32 / 3.).sqrt() + 1e-8;
        let got = mean_normalize(&h)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (g, e) in got.iter().zip([-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s]) {
            assert!((g - e).abs() < 1e-6);
        }
    }
}

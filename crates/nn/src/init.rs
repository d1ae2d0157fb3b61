//! Seeded random weights for any model that loads through a `VarBuilder`: benchmarks and memory measurements of
//! full-size networks without their checkpoints, and tests that need weights with no path at zero.

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

/// A `VarBuilder` backend that invents every tensor it is asked for: 1-D tensors whose name contains `norm` or
/// `gamma` are `1 + U(-0.1, 0.1)` (norm weights), everything else uniform with standard deviation `std`. The
/// values depend only on the seed and the tensor's name, never on the order of requests.
pub struct RandomWeights {
    seed: u64,
    std: f64,
}

impl RandomWeights {
    pub fn new(seed: u64, std: f64) -> Self {
        Self { seed, std }
    }

    /// A `VarBuilder` over random weights of type `dtype`.
    pub fn var_builder(self, dtype: DType, device: &Device) -> candle_nn::VarBuilder<'static> {
        candle_nn::VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }

    /// The `n` values of tensor `name` of rank `rank` (what [`Self::var_builder`] gives it, before the cast to its
    /// type): for writing random weights straight to a file.
    pub fn values(&self, name: &str, n: usize, rank: usize) -> Vec<f32> {
        let mut state = self.seed ^ fnv1a(name);
        let is_norm = rank == 1 && (name.contains("norm") || name.contains("gamma"));
        let (offset, half_width) = if is_norm {
            (1.0, 0.1)
        } else {
            (0.0, self.std * 3f64.sqrt())
        };
        (0..n)
            .map(|_| (offset + half_width * (2.0 * unit(&mut state) - 1.0)) as f32)
            .collect()
    }

    fn tensor(&self, shape: &Shape, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        let values = self.values(name, shape.elem_count(), shape.rank());
        Tensor::from_vec(values, shape, dev)?.to_dtype(dtype)
    }
}

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        self.tensor(&s, name, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("random weights need a shape for `{name}`")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64 step mapped to [0, 1).
pub(crate) fn unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_by_name_with_requested_statistics() {
        let vb = RandomWeights::new(7, 0.02).var_builder(DType::F32, &Device::Cpu);
        let a = vb.get((100, 100), "a.weight").unwrap();
        let a2 = vb.get((100, 100), "a.weight").unwrap();
        let b = vb.get((100, 100), "b.weight").unwrap();
        assert_eq!(
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            a2.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        let diff = (&a - &b).unwrap().abs().unwrap().sum_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() > 0.0);
        let var = a
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((var.sqrt() - 0.02).abs() < 0.001, "std {}", var.sqrt());
        let norm = vb
            .get(64, "q_norm.weight")
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(norm.iter().all(|v| (0.9..=1.1).contains(v)));
    }
}

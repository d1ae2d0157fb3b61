//! Trainable parameters with reproducible initialisation: a `VarMap` whose new variables are drawn from a seeded
//! generator keyed by name, so the same configuration and seed start every run from the same weights.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};

use crate::init::{fnv1a, unit};

/// A `VarMap` whose missing variables are created from `seed` and the requested [`Init`].
#[derive(Clone)]
pub struct SeededVarMap {
    pub map: VarMap,
    seed: u64,
}

impl SeededVarMap {
    pub fn new(seed: u64) -> Self {
        Self {
            map: VarMap::new(),
            seed,
        }
    }

    /// A float32 builder that adds its variables to this map.
    pub fn var_builder(&self, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), DType::F32, device.clone())
    }

    /// (name, variable) pairs sorted by name: a stable order for optimiser state and checkpoints.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let data = self.map.data().lock().expect("var map lock");
        let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Number of scalar parameters.
    pub fn parameter_count(&self) -> usize {
        self.named_vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    fn init_values(&self, shape: &Shape, name: &str, init: Init) -> Vec<f32> {
        let n = shape.elem_count();
        let mut state = self.seed ^ fnv1a(name);
        let mut uniform = |lo: f64, hi: f64| lo + (hi - lo) * unit(&mut state);
        let fan_in = || shape.dims().iter().skip(1).product::<usize>().max(1) as f64;
        match init {
            Init::Const(c) => vec![c as f32; n],
            Init::Uniform { lo, up } => (0..n).map(|_| uniform(lo, up) as f32).collect(),
            Init::Randn { mean, stdev } => (0..n)
                .map(|_| {
                    // Box-Muller: one normal from two uniforms.
                    let u1 = 1.0 - uniform(0.0, 1.0);
                    let u2 = uniform(0.0, 1.0);
                    let g = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                    (mean + stdev * g) as f32
                })
                .collect(),
            Init::Kaiming { .. } => {
                // Uniform with the Kaiming (ReLU gain) standard deviation over the fan-in.
                let bound = 3f64.sqrt() * 2f64.sqrt() / fan_in().sqrt();
                (0..n).map(|_| uniform(-bound, bound) as f32).collect()
            }
        }
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, s: Shape, name: &str, init: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self.map.data().lock().expect("var map lock");
        if let Some(var) = data.get(name) {
            if var.shape() != &s {
                candle_core::bail!(
                    "parameter {name}: shape {:?} requested, {:?} exists",
                    s,
                    var.shape()
                );
            }
            return var.as_tensor().to_dtype(dtype);
        }
        let values = self.init_values(&s, name, init);
        let var = Var::from_tensor(&Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?)?;
        let t = var.as_tensor().clone();
        data.insert(name.to_owned(), var);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, _: &Device) -> Result<Tensor> {
        let data = self.map.data().lock().expect("var map lock");
        match data.get(name) {
            Some(v) => v.as_tensor().to_dtype(dtype),
            None => candle_core::bail!("no parameter {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map
            .data()
            .lock()
            .expect("var map lock")
            .contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_weights_and_vars_are_shared() {
        let dev = Device::Cpu;
        let a = SeededVarMap::new(3);
        let b = SeededVarMap::new(3);
        let init = Init::Uniform { lo: -1.0, up: 1.0 };
        let ta = a
            .var_builder(&dev)
            .get_with_hints((4, 5), "w", init)
            .unwrap();
        let tb = b
            .var_builder(&dev)
            .get_with_hints((4, 5), "w", init)
            .unwrap();
        let again = a
            .var_builder(&dev)
            .get_with_hints((4, 5), "w", init)
            .unwrap();
        let diff = (&ta - &tb).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        assert_eq!(a.named_vars().len(), 1);
        assert_eq!(a.parameter_count(), 20);
        // The builder hands out the variable itself: gradients reach it.
        let loss = again.sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        assert!(grads.get(a.named_vars()[0].1.as_tensor()).is_some());
        let ones = a
            .var_builder(&dev)
            .get_with_hints(3, "g", Init::Const(1.0))
            .unwrap();
        assert_eq!(ones.to_vec1::<f32>().unwrap(), vec![1.0; 3]);
        assert!(a
            .var_builder(&dev)
            .get_with_hints((2, 2), "w", init)
            .is_err());
    }
}

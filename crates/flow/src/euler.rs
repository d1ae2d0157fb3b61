//! The Euler sampler of the flow ODE: `x <- x + (sigma_next - sigma) velocity`.

use candle_core::Tensor;

use crate::error::{FlowError, Result};
use crate::schedule::Schedule;

#[derive(Debug, Clone)]
pub struct Euler {
    sigmas: Vec<f64>,
    step_index: usize,
}

impl Euler {
    pub fn new(schedule: &Schedule) -> Self {
        Self {
            sigmas: schedule.sigmas.iter().map(|&s| s as f64).collect(),
            step_index: 0,
        }
    }

    pub fn sigma(&self) -> f64 {
        self.sigmas[self.step_index.min(self.sigmas.len() - 1)]
    }

    pub fn step(&mut self, velocity: &Tensor, sample: &Tensor) -> Result<Tensor> {
        let i = self.step_index;
        if i + 1 >= self.sigmas.len() {
            return Err(FlowError::Sampler("all steps already taken".into()));
        }
        self.step_index += 1;
        Ok((sample + (velocity * (self.sigmas[i + 1] - self.sigmas[i]))?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn exact_velocity_lands_on_the_data() {
        // With the true straight-line velocity, Euler is exact on the rectified-flow path.
        let dev = Device::Cpu;
        let data = Tensor::new(&[0.5f32, -1.0], &dev).unwrap();
        let noise = Tensor::new(&[1.5f32, 0.25], &dev).unwrap();
        let v = crate::path::velocity_target(&data, &noise).unwrap();
        let schedule = Schedule::shifted(7, 3.0).unwrap();
        let mut euler = Euler::new(&schedule);
        let mut x = crate::path::noisy(&data, &noise, euler.sigma()).unwrap();
        for _ in 0..schedule.calls() {
            x = euler.step(&v, &x).unwrap();
        }
        let err = (x - &data)
            .unwrap()
            .abs()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(err < 1e-5, "{err}");
    }
}

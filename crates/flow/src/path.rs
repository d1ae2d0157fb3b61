//! The rectified-flow path between data (sigma = 0) and noise (sigma = 1).

use candle_core::{Result, Tensor};

/// `x_sigma = (1 - sigma) data + sigma noise`.
pub fn noisy(data: &Tensor, noise: &Tensor, sigma: f64) -> Result<Tensor> {
    (data * (1.0 - sigma))? + (noise * sigma)?
}

/// The velocity the network learns: `noise - data`.
pub fn velocity_target(data: &Tensor, noise: &Tensor) -> Result<Tensor> {
    noise - data
}

/// The data estimate from a velocity: `x_sigma - sigma velocity`.
pub fn denoised(x_sigma: &Tensor, sigma: f64, velocity: &Tensor) -> Result<Tensor> {
    x_sigma - (velocity * sigma)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_true_velocity_recovers_data_and_noise() {
        let dev = Device::Cpu;
        let data = Tensor::new(&[1f32, -2., 0.5], &dev).unwrap();
        let noise = Tensor::new(&[0.3f32, 0.7, -1.1], &dev).unwrap();
        let v = velocity_target(&data, &noise).unwrap();
        for sigma in [0.0, 0.25, 0.9, 1.0] {
            let x = noisy(&data, &noise, sigma).unwrap();
            let d = denoised(&x, sigma, &v).unwrap();
            let err = (d - &data)
                .unwrap()
                .abs()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(err < 1e-6, "sigma {sigma}: {err}");
        }
        assert_eq!(
            noisy(&data, &noise, 1.0).unwrap().to_vec1::<f32>().unwrap(),
            noise.to_vec1::<f32>().unwrap()
        );
    }
}

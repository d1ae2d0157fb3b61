//! The rectified-flow path between data (sigma = 0) and noise (sigma = 1).

use candle_core::{Result, Tensor};

/// `x_sigma = (1 - sigma) data + sigma noise`.
pub fn noisy(data: &Tensor, noise: &Tensor, sigma: f64) -> Result<Tensor> {
    (data * (1.0 - sigma))? + (noise * sigma)?
}

/// [`noisy`] with one sigma per sample: `sigma` holds float32 sigmas in a shape that broadcasts against `data`
/// ((B, 1, 1, 1, 1) for a batch of clips), as training draws a time for each sample of a batch. `1 - sigma` is
/// taken in the tensor's type, so training's noisy inputs (and its resumed runs) stay bit-identical.
pub fn noisy_per_sample(data: &Tensor, noise: &Tensor, sigma: &Tensor) -> Result<Tensor> {
    data.broadcast_mul(&sigma.affine(-1.0, 1.0)?)? + noise.broadcast_mul(sigma)?
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

    #[test]
    fn per_sample_sigmas_give_each_sample_its_own_point_on_the_path() {
        let dev = Device::Cpu;
        // Three samples of (1, 1, 2, 2), sigmas exact in float32 so they match the scalar path bit for bit.
        let data = Tensor::arange(0f32, 12., &dev)
            .unwrap()
            .affine(0.5, -2.0)
            .unwrap()
            .reshape((3, 1, 1, 2, 2))
            .unwrap();
        let noise = Tensor::arange(0f32, 12., &dev)
            .unwrap()
            .affine(-0.25, 1.0)
            .unwrap()
            .reshape((3, 1, 1, 2, 2))
            .unwrap();
        let sigmas = [0.0, 0.25, 1.0];
        let sigma = Tensor::new(&[0f32, 0.25, 1.0], &dev)
            .unwrap()
            .reshape((3, 1, 1, 1, 1))
            .unwrap();
        let x = noisy_per_sample(&data, &noise, &sigma).unwrap();
        assert_eq!(x.dims(), data.dims());
        for (i, s) in sigmas.into_iter().enumerate() {
            let one = |t: &Tensor| t.get(i).unwrap();
            let expected = noisy(&one(&data), &one(&noise), s).unwrap();
            assert_eq!(
                one(&x).flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                expected.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                "sample {i}, sigma {s}"
            );
        }
    }
}

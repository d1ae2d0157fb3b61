//! Every VAE parameter gets a gradient through encode and decode, and the gradients equal finite differences.

use candle_core::{Device, Tensor};
use orrery_nn::gradcheck::check_gradients;
use orrery_nn::SeededVarMap;
use orrery_vae::{Chunking, VaeConfig, WanVae};

#[test]
fn vae_gradients_match_finite_differences() {
    let config = VaeConfig {
        base_dim: 4,
        decoder_base_dim: 6,
        z_dim: 4,
        dim_mult: vec![1, 2, 2],
        num_res_blocks: 1,
        temporal_downsample: vec![true, false],
        latents_mean: vec![0.0; 4],
        latents_std: vec![1.0; 4],
    };
    let vars = SeededVarMap::new(5);
    let vae = WanVae::new(vars.var_builder(&Device::Cpu), &config).unwrap();
    let n = 3 * 5 * 8 * 8;
    let video: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let video = Tensor::from_vec(video, (1, 3, 5, 8, 8), &Device::Cpu).unwrap();
    let eps: Vec<f32> = (0..4 * 3 * 2 * 2)
        .map(|i| ((i * 13 % 7) as f32 - 3.0) / 3.0)
        .collect();
    let eps = Tensor::from_vec(eps, (1, 4, 3, 2, 2), &Device::Cpu).unwrap();
    // Reconstruction error of a sampled latent plus the KL term: the VAE trainer's loss.
    let loss = || {
        let err = |e: orrery_vae::VaeError| candle_core::Error::Msg(e.to_string());
        let (mu, logvar) = vae.encode_moments(&video, Chunking::Whole).map_err(err)?;
        let z = (&mu + (&logvar * 0.5)?.exp()?.mul(&eps)?)?;
        let recon = vae.decode(&z, Chunking::Whole).map_err(err)?;
        let kl = ((mu.sqr()? + logvar.exp()?)? - &logvar)?.mean_all()?;
        (recon - &video)?.sqr()?.mean_all()? + (kl * 0.1)?
    };
    let report = check_gradients(&vars.named_vars(), loss, 2, 3e-3, 3e-2, 1e-4).unwrap();
    report.assert_ok();
    assert!(report.checked > 50);
}

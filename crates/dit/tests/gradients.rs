//! Every DiT parameter gets a gradient, and the gradients equal finite differences.

use candle_core::{DType, Device, Tensor};
use orrery_dit::{CosmosDit, DitInput};
use orrery_nn::gradcheck::check_gradients;
use orrery_nn::SeededVarMap;

mod common;
use common::{seeded, tiny};

#[test]
fn dit_gradients_match_finite_differences() {
    let config = tiny();
    let vars = SeededVarMap::new(4);
    let dit = CosmosDit::new(vars.var_builder(&Device::Cpu), &config).unwrap();
    let x = seeded(1, &[2, 4, 3, 4, 4], 1.0);
    let text = seeded(2, &[2, 5, 12], 1.0);
    let timesteps = Tensor::new(&[[0.3f32, 0.3, 0.7], [0.9, 0.1, 0.1]], &Device::Cpu).unwrap();
    let mut mask = vec![0f32; 2 * 3 * 16];
    mask[..16].iter_mut().for_each(|m| *m = 1.0);
    let mask = Tensor::from_vec(mask, (2, 1, 3, 4, 4), &Device::Cpu).unwrap();
    let probe = seeded(3, &[2, 4, 3, 4, 4], 1.0);
    let loss = || {
        let v = dit
            .forward(&DitInput {
                x: &x,
                timesteps: &timesteps,
                crossattn_emb: &text,
                condition_mask: &mask,
                padding_mask: None,
                action: None,
            })
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        (v.to_dtype(DType::F32)? * &probe)?.sum_all()
    };
    let report = check_gradients(&vars.named_vars(), loss, 3, 1e-2, 3e-2, 2e-3).unwrap();
    assert_eq!(vars.named_vars().len(), config.parameter_shapes().len());
    report.assert_ok();
}

//! Activation checkpointing per block gives every trainable variable the gradient plain backpropagation gives:
//! a full fine-tune (with a trained input before the DiT, as the text encoder is), LoRA adapters on a frozen
//! float32 base and on a frozen bfloat16 base.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use orrery_dit::{CosmosDit, DitInput, LoraShape};
use orrery_nn::compare::max_rel_err;
use orrery_nn::SeededVarMap;

mod common;
use common::{seeded, tiny};

/// A batch of two clips of 3 latent frames, the first frame of the first clip conditioning.
struct Inputs {
    x: Tensor,
    timesteps: Tensor,
    mask: Tensor,
    probe: Tensor,
}

fn inputs() -> Inputs {
    let mut mask = vec![0f32; 2 * 3 * 16];
    mask[..16].iter_mut().for_each(|m| *m = 1.0);
    Inputs {
        x: seeded(1, &[2, 4, 3, 4, 4], 1.0),
        timesteps: Tensor::new(&[[0.3f32, 0.3, 0.7], [0.9, 0.1, 0.1]], &Device::Cpu).unwrap(),
        mask: Tensor::from_vec(mask, (2, 1, 3, 4, 4), &Device::Cpu).unwrap(),
        probe: seeded(3, &[2, 4, 3, 4, 4], 1.0),
    }
}

/// A loss that weighs every output element differently: mean of (velocity - probe)^2.
fn loss_of(velocity: &Tensor, probe: &Tensor) -> candle_core::Result<Tensor> {
    (velocity.to_dtype(DType::F32)? - probe)?.sqr()?.mean_all()
}

/// Gradients of `vars` with and without checkpointing; `text` (B, N, C_in) may itself depend on `vars`.
fn both_gradients(
    dit: &CosmosDit,
    text: &Tensor,
    vars: &[(String, Var)],
) -> (HashMap<String, Tensor>, HashMap<String, Tensor>, f32, f32) {
    let i = inputs();
    let input = DitInput {
        x: &i.x,
        timesteps: &i.timesteps,
        crossattn_emb: text,
        condition_mask: &i.mask,
        padding_mask: None,
        action: None,
    };
    let plain_loss = loss_of(&dit.forward(&input).unwrap(), &i.probe).unwrap();
    let plain = plain_loss.backward().unwrap();
    let trainable: Vec<Var> = vars.iter().map(|(_, v)| v.clone()).collect();
    let (loss, checkpointed) = dit
        .loss_and_gradients_checkpointed(&input, &trainable, |v| {
            loss_of(v, &i.probe).map_err(orrery_dit::DitError::from)
        })
        .unwrap();
    let by_name = |grads: &candle_core::backprop::GradStore| {
        vars.iter()
            .map(|(name, var)| {
                let g = grads.get(var.as_tensor());
                let g = g.unwrap_or_else(|| panic!("{name} has no gradient"));
                (name.clone(), g.clone())
            })
            .collect()
    };
    (
        by_name(&plain),
        by_name(&checkpointed),
        plain_loss.to_scalar().unwrap(),
        loss.to_scalar().unwrap(),
    )
}

/// Asserts that every gradient matches within `tolerance` of its largest element, and that none is zero.
fn assert_same(
    plain: &HashMap<String, Tensor>,
    checkpointed: &HashMap<String, Tensor>,
    tolerance: f64,
) {
    assert_eq!(plain.len(), checkpointed.len());
    for (name, want) in plain {
        let scale = want.abs().unwrap().max_all().unwrap();
        assert!(
            scale.to_scalar::<f32>().unwrap() > 0.0,
            "{name}: zero gradient"
        );
        let err = max_rel_err(&checkpointed[name], want).unwrap();
        assert!(err <= tolerance, "{name}: differs by {err} of its scale");
    }
}

#[test]
fn a_full_fine_tune_gets_the_gradients_of_plain_backpropagation() {
    let vars = SeededVarMap::new(4);
    let vb = vars.var_builder(&Device::Cpu);
    let dit = CosmosDit::new(vb.pp("dit"), &tiny()).unwrap();
    // A trained input before the DiT (as the word encoder's embedding is): its gradient passes through the
    // shared cross-attention context of every block.
    let text_scale = vb
        .get_with_hints(12, "text_scale", candle_nn::Init::Const(1.5))
        .unwrap();
    let text = seeded(2, &[2, 5, 12], 1.0)
        .broadcast_mul(&text_scale)
        .unwrap();
    let named = vars.named_vars();
    assert!(named.iter().any(|(n, _)| n == "text_scale"));
    let (plain, checkpointed, plain_loss, loss) = both_gradients(&dit, &text, &named);
    assert_eq!(plain_loss.to_bits(), loss.to_bits());
    assert_same(&plain, &checkpointed, 1e-5);
}

/// A frozen base of type `dtype` (no variables) with adapters whose B is small and random, so that every A and
/// B has a gradient.
fn adapted(dtype: DType) -> (CosmosDit, Vec<(String, Var)>) {
    let base = SeededVarMap::new(4);
    CosmosDit::new(base.var_builder(&Device::Cpu), &tiny()).unwrap();
    let frozen: HashMap<String, Tensor> = base
        .named_vars()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().detach()))
        .collect();
    let mut dit = CosmosDit::new(
        VarBuilder::from_tensors(frozen, dtype, &Device::Cpu),
        &tiny(),
    )
    .unwrap();
    let lora = SeededVarMap::new(9);
    let shape = LoraShape {
        rank: 3,
        alpha: 6.0,
        ..LoraShape::default()
    };
    dit.attach_adapters(lora.var_builder(&Device::Cpu), &shape)
        .unwrap();
    for (i, (name, var)) in lora.named_vars().into_iter().enumerate() {
        if name.ends_with("lora_B.weight") {
            var.set(&seeded(100 + i as u64, var.dims(), 0.2)).unwrap();
        }
    }
    (dit, lora.named_vars())
}

#[test]
fn lora_adapters_on_a_frozen_base_get_the_gradients_of_plain_backpropagation() {
    let (dit, vars) = adapted(DType::F32);
    // two blocks x (4 + 4 attention projections + 2 MLP layers) x (A, B)
    assert_eq!(vars.len(), 2 * 10 * 2);
    let text = seeded(2, &[2, 5, 12], 1.0);
    let (plain, checkpointed, plain_loss, loss) = both_gradients(&dit, &text, &vars);
    assert_eq!(plain_loss.to_bits(), loss.to_bits());
    assert_same(&plain, &checkpointed, 1e-5);
}

#[test]
fn lora_adapters_on_a_bfloat16_base_get_the_gradients_of_plain_backpropagation() {
    let (dit, vars) = adapted(DType::BF16);
    let text = seeded(2, &[2, 5, 12], 1.0);
    let (plain, checkpointed, plain_loss, loss) = both_gradients(&dit, &text, &vars);
    assert_eq!(plain_loss.to_bits(), loss.to_bits());
    assert_same(&plain, &checkpointed, 1e-5);
}

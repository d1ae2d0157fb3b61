//! The memory-saving settings of the DiT trainer: activation checkpointing trains as plain backpropagation does
//! and resumes exactly; a LoRA run on a bfloat16 base holds one (bfloat16) copy of the DiT and exports what it
//! trained.

mod common;

use common::{dit_config, losses, trained_dit, trained_vae, velocity_of};

use candle_core::{DType, Device};
use orrery_dit::{LoraAdapter, LORA_WEIGHTS_FILE};
use orrery_nn::compare::{max_abs_diff, max_rel_err};
use orrery_train::dit::LoraTraining;
use orrery_train::{DitTrainConfig, DitTrainer, LossPoint, Run};

/// Asserts that two runs' first losses are identical (the same forward pass) and the later ones equal up to the
/// rounding of gradients summed in another order.
fn assert_same_training(plain: &[LossPoint], checkpointed: &[LossPoint]) {
    assert_eq!(plain.len(), checkpointed.len());
    assert_eq!(plain[0].loss.to_bits(), checkpointed[0].loss.to_bits());
    for (a, b) in plain.iter().zip(checkpointed) {
        assert!(
            (a.loss - b.loss).abs() <= 1e-4 * a.loss.abs(),
            "{a:?} {b:?}"
        );
        assert!(
            (a.grad_norm - b.grad_norm).abs() <= 1e-4 * a.grad_norm,
            "{a:?} {b:?}"
        );
    }
}

/// A run of `config` straight through, and one stopped after 2 steps and resumed: their loss histories.
fn straight_and_resumed(config: impl Fn(&str) -> DitTrainConfig) -> (DitTrainer, Vec<LossPoint>) {
    let mut straight = DitTrainer::new(config("straight")).unwrap();
    straight.train(None, |_| {}).unwrap();
    let mut first = DitTrainer::new(config("resumed")).unwrap();
    first.train(Some(2), |_| {}).unwrap();
    drop(first);
    let mut resumed = DitTrainer::new(config("resumed")).unwrap();
    assert_eq!(resumed.session.resume_latest().unwrap(), Some(2));
    resumed.train(None, |_| {}).unwrap();
    let history = resumed.session.history.clone();
    (straight, history)
}

#[test]
fn activation_checkpointing_trains_as_plain_backpropagation_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let vae_dir = trained_vae(&root.join("vae"));
    let config = |out: &str, checkpointing: bool| {
        let mut c = dit_config(&root.join(out), &vae_dir);
        c.activation_checkpointing = checkpointing;
        c
    };
    let json = serde_json::to_value(config("x", true)).unwrap();
    assert_eq!(json["activation_checkpointing"], true);

    let (checkpointed, resumed) = straight_and_resumed(|out| config(out, true));
    assert_eq!(losses(&checkpointed.session.history), losses(&resumed));
    let mut plain = DitTrainer::new(config("plain", false)).unwrap();
    plain.train(None, |_| {}).unwrap();
    assert_eq!(plain.session.history.len(), 4);
    assert_same_training(&plain.session.history, &checkpointed.session.history);
}

#[test]
fn a_lora_run_on_a_bfloat16_base_holds_one_base_and_exports_what_it_trained() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (vae_dir, _, bundle) = trained_dit(root);
    let config = |out: &str, checkpointing: bool| {
        let mut c = dit_config(&root.join(out), &vae_dir);
        c.init_from = Some(bundle.clone());
        c.activation_checkpointing = checkpointing;
        c.lora = Some(LoraTraining {
            rank: 4,
            alpha: 8.0,
            bf16_base: true,
            ..LoraTraining::default()
        });
        c
    };
    let (half, resumed) = straight_and_resumed(|out| config(out, true));
    assert_eq!(losses(&half.session.history), losses(&resumed));
    let mut plain = DitTrainer::new(config("plain", false)).unwrap();
    plain.train(None, |_| {}).unwrap();
    assert_same_training(&plain.session.history, &half.session.history);

    // One copy of the base: the network's, in bfloat16, the bundle's weights rounded; no DiT variables.
    let base_weights = bundle.join("transformer/diffusion_pytorch_model.safetensors");
    let stored = orrery_nn::Checkpoint::open(&base_weights).unwrap();
    let names = half.session.vars.named_vars();
    assert!(names.iter().all(|(n, _)| !n.starts_with("dit.")));
    let q = &half.dit.blocks[0].self_attn.q_proj.weight;
    assert_eq!(q.dtype(), DType::BF16);
    let want = stored
        .load_as(
            "blocks.0.self_attn.q_proj.weight",
            DType::BF16,
            &Device::Cpu,
        )
        .unwrap();
    assert_eq!(max_abs_diff(q, &want).unwrap(), 0.0);

    // The exported adapter is the run's EMA adapters, and the fused bundle is the float32 base with it fused.
    let out = half.export().unwrap();
    let adapter = LoraAdapter::open(&out.join(LORA_WEIGHTS_FILE), None).unwrap();
    let ema = half.ema_adapters().unwrap();
    assert_eq!(adapter.layers().len(), ema.len());
    for (module, down, up) in &ema {
        let layer = &adapter.layers()[&format!("{module}.weight")];
        assert_eq!(max_abs_diff(&layer.down, down).unwrap(), 0.0, "{module}");
        assert_eq!(max_abs_diff(&layer.up, up).unwrap(), 0.0, "{module}");
    }
    let (on_base, fused) = common::exported_lora_networks(&out, &base_weights, half.model());
    let err = max_rel_err(&velocity_of(&fused), &velocity_of(&on_base)).unwrap();
    assert!(err <= 1e-5, "the fused bundle differs by {err}");
    // The samples run on the bfloat16 base with the EMA adapters beside it.
    let (sampled, _) = half.ema_models().unwrap();
    let layer2 = &sampled.blocks[0].mlp.layer2;
    assert_eq!(layer2.weight.dtype(), DType::BF16);
    let (_, _, ema_up) = ema
        .iter()
        .find(|(m, ..)| m == "blocks.0.mlp.layer2")
        .unwrap();
    let sampled_up = &layer2.adapter.as_ref().unwrap().up;
    assert_eq!(max_abs_diff(sampled_up, ema_up).unwrap(), 0.0);
    let err = max_rel_err(&velocity_of(&sampled), &velocity_of(&on_base)).unwrap();
    assert!(err <= 2e-2, "the bfloat16 sample network differs by {err}");
    assert!(half.write_samples().unwrap().unwrap().is_file());
}

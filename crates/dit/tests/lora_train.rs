//! Trainable LoRA adapters: A and B get the gradients finite differences give, a zero B leaves the network as
//! it was, and the exported diffusers file fused at load gives the velocity of the adapted network in memory.

use candle_core::{DType, Device, Tensor};
use orrery_dit::{
    load_dit_with_loras, save_lora_weights, CosmosDit, DitInput, LoraAdapter, LoraShape,
    LORA_WEIGHTS_FILE,
};
use orrery_nn::checkpoint::save_tensors;
use orrery_nn::compare::max_rel_err;
use orrery_nn::gradcheck::check_gradients;
use orrery_nn::SeededVarMap;

mod common;
use common::{seeded, tiny};

struct Inputs {
    x: Tensor,
    text: Tensor,
    timesteps: Tensor,
    mask: Tensor,
}

fn inputs() -> Inputs {
    let mut mask = vec![0f32; 2 * 3 * 16];
    mask[..16].iter_mut().for_each(|m| *m = 1.0);
    Inputs {
        x: seeded(1, &[2, 4, 3, 4, 4], 1.0),
        text: seeded(2, &[2, 5, 12], 1.0),
        timesteps: Tensor::new(&[[0.3f32, 0.3, 0.7], [0.9, 0.1, 0.1]], &Device::Cpu).unwrap(),
        mask: Tensor::from_vec(mask, (2, 1, 3, 4, 4), &Device::Cpu).unwrap(),
    }
}

fn velocity(dit: &CosmosDit, i: &Inputs) -> candle_core::Result<Tensor> {
    dit.forward(&DitInput {
        x: &i.x,
        timesteps: &i.timesteps,
        crossattn_emb: &i.text,
        condition_mask: &i.mask,
        padding_mask: None,
        action: None,
    })
    .map_err(|e| candle_core::Error::Msg(e.to_string()))
}

/// A base DiT (`base`) and adapters on it (`lora`), B set to small random values so that A's gradient is not
/// zero and the adapters change the output.
fn adapted(shape: &LoraShape) -> (SeededVarMap, SeededVarMap, CosmosDit, Vec<String>) {
    let base = SeededVarMap::new(4);
    let lora = SeededVarMap::new(9);
    let mut dit = CosmosDit::new(base.var_builder(&Device::Cpu), &tiny()).unwrap();
    let modules = dit
        .attach_adapters(lora.var_builder(&Device::Cpu), shape)
        .unwrap();
    for (i, (name, var)) in lora.named_vars().into_iter().enumerate() {
        if name.ends_with("lora_B.weight") {
            var.set(&seeded(100 + i as u64, var.dims(), 0.2)).unwrap();
        }
    }
    (base, lora, dit, modules)
}

#[test]
fn adapters_cover_the_official_targets_and_start_as_the_base_network() {
    let shape = LoraShape {
        rank: 4,
        alpha: 8.0,
        ..LoraShape::default()
    };
    let base = SeededVarMap::new(4);
    let lora = SeededVarMap::new(9);
    let plain = CosmosDit::new(base.var_builder(&Device::Cpu), &tiny()).unwrap();
    let mut dit = plain.clone();
    let modules = dit
        .attach_adapters(lora.var_builder(&Device::Cpu), &shape)
        .unwrap();
    // 2 blocks x (4 self + 4 cross + 2 MLP)
    assert_eq!(modules.len(), 20);
    assert_eq!(lora.named_vars().len(), 40);
    let a = lora
        .named_vars()
        .into_iter()
        .find(|(n, _)| n == "blocks.0.mlp.layer2.lora_A.weight")
        .unwrap()
        .1;
    // A (r, in = 48) uniform in +-1/sqrt(48), not zero; B zero: the network is unchanged.
    assert_eq!(a.dims(), &[4, 48]);
    let max = a.as_tensor().abs().unwrap().max_all().unwrap();
    let max = max.to_scalar::<f32>().unwrap();
    assert!(max > 0.0 && max <= 1.0 / 48f32.sqrt());
    let i = inputs();
    let diff = (velocity(&dit, &i).unwrap() - velocity(&plain, &i).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    let bad = LoraShape {
        targets: vec!["to_q".into()],
        ..shape
    };
    let err = plain
        .clone()
        .attach_adapters(SeededVarMap::new(1).var_builder(&Device::Cpu), &bad)
        .unwrap_err();
    assert!(err.to_string().contains("to_q"), "{err}");
}

#[test]
fn adapter_gradients_match_finite_differences() {
    let shape = LoraShape {
        rank: 3,
        alpha: 6.0,
        targets: vec![
            "self_attn.q_proj".into(),
            "output_proj".into(),
            "mlp.layer1".into(),
        ],
    };
    let (_, lora, dit, modules) = adapted(&shape);
    // per block: self-attention q, both output projections, the first MLP layer
    assert_eq!(modules.len(), 2 * 4);
    let i = inputs();
    let probe = seeded(3, &[2, 4, 3, 4, 4], 1.0);
    let loss = || (velocity(&dit, &i)?.to_dtype(DType::F32)? * &probe)?.sum_all();
    let report = check_gradients(&lora.named_vars(), loss, 3, 1e-2, 3e-2, 2e-3).unwrap();
    report.assert_ok();
    assert_eq!(report.checked, 3 * 16);
}

#[test]
fn exported_adapter_fused_at_load_gives_the_trained_velocity() {
    let shape = LoraShape {
        rank: 4,
        alpha: 8.0,
        ..LoraShape::default()
    };
    let (base, lora, dit, modules) = adapted(&shape);
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("diffusion_pytorch_model.safetensors");
    let tensors = base
        .named_vars()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    save_tensors(&weights, tensors).unwrap();
    let vars: std::collections::HashMap<String, Tensor> = lora
        .named_vars()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    let layers: Vec<(String, Tensor, Tensor)> = modules
        .iter()
        .map(|m| {
            (
                m.clone(),
                vars[&format!("{m}.lora_A.weight")].clone(),
                vars[&format!("{m}.lora_B.weight")].clone(),
            )
        })
        .collect();
    let file = dir.path().join(LORA_WEIGHTS_FILE);
    save_lora_weights(&file, &layers, &shape).unwrap();

    let adapter = LoraAdapter::open(&file, None).unwrap();
    assert_eq!(adapter.layers().len(), modules.len());
    let layer = &adapter.layers()["blocks.1.cross_attn.output_proj.weight"];
    assert_eq!((layer.rank(), layer.alpha), (4, 8.0));
    assert!(layer
        .module
        .starts_with("transformer.transformer_blocks.1.attn2.to_out.0"));

    let fused = load_dit_with_loras(
        &weights,
        &tiny(),
        &[(adapter, 1.0)],
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let i = inputs();
    let want = velocity(&dit, &i).unwrap();
    let got = velocity(&fused, &i).unwrap();
    let plain = CosmosDit::new(base.var_builder(&Device::Cpu), &tiny()).unwrap();
    let err = |a: &Tensor| max_rel_err(a, &want).unwrap();
    assert!(err(&got) <= 1e-5, "fused differs by {}", err(&got));
    // The adapters matter: without them the velocity is far off.
    assert!(err(&velocity(&plain, &i).unwrap()) > 1e-3);
}

#[test]
fn float32_adapters_train_on_a_bfloat16_base() {
    let shape = LoraShape {
        rank: 4,
        alpha: 8.0,
        ..LoraShape::default()
    };
    let (base, lora, f32_dit, _) = adapted(&shape);
    let tensors = base
        .named_vars()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().detach()))
        .collect();
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::BF16, &Device::Cpu);
    let mut dit = CosmosDit::new(vb, &tiny()).unwrap();
    dit.attach_adapters(lora.var_builder(&Device::Cpu), &shape)
        .unwrap();
    let i = inputs();
    let v = velocity(&dit, &i).unwrap().to_dtype(DType::F32).unwrap();
    let want = velocity(&f32_dit, &i).unwrap();
    assert!(max_rel_err(&v, &want).unwrap() < 0.05);
    let grads = v.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    for (name, var) in lora.named_vars() {
        let g = grads.get(var.as_tensor()).unwrap();
        assert_eq!((var.dtype(), g.dtype()), (DType::F32, DType::F32), "{name}");
    }
}

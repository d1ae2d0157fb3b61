//! The DiT against the reference: tiny random `CosmosTransformer3DModel` fixtures from `tools/oracles/dit.py`
//! (diffusers 0.42.1 with the official q/k RMSNorm eps 1e-6). Tolerance: max abs error <= 1e-5 x max|reference|.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use orrery_dit::{load_dit, load_dit_offloaded, CosmosDit, DitConfig, DitModelDir};
use orrery_nn::Checkpoint;

mod common;
use common::{run, timesteps};

const CASES: [&str; 3] = ["t1d", "perframe", "padded"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/dit_tiny")
        .join(name)
}

fn case(name: &str) -> HashMap<String, Tensor> {
    common::fixture_case("dit_tiny", name)
}

fn config() -> DitConfig {
    DitConfig::from_diffusers_file(&fixture("config.json")).unwrap()
}

fn model(weights: &str) -> CosmosDit {
    load_dit(&fixture(weights), &config(), DType::F32, &Device::Cpu).unwrap()
}

/// max |a - b| / max |reference|
fn rel_err(a: &Tensor, reference: &Tensor) -> f64 {
    orrery_nn::compare::max_rel_err(a, reference).unwrap()
}

#[test]
fn velocity_matches_reference_in_every_case() {
    let m = model("diffusion_pytorch_model.safetensors");
    for name in CASES {
        let c = case(name);
        let out = run(&m, &c);
        common::assert_matches_references(name, &out, &c);
    }
}

/// Blocks kept in host memory (here the device is the host, so this checks the loading and that the forward's
/// numbers do not change; `tools/gpu/check-device.sh` checks the copies on a GPU).
#[test]
fn offloaded_blocks_give_the_reference_output_bit_for_bit() {
    let plain = model("diffusion_pytorch_model.safetensors");
    for host_blocks in [1, usize::MAX] {
        let weights = fixture("diffusion_pytorch_model.safetensors");
        let m = load_dit_offloaded(
            &weights,
            &config(),
            &[],
            DType::F32,
            &Device::Cpu,
            host_blocks,
        )
        .unwrap();
        assert_eq!(
            m.offloaded_blocks(),
            0,
            "host and device are one on the CPU"
        );
        for name in CASES {
            let c = case(name);
            let out = run(&m, &c);
            assert_eq!(rel_err(&out, &run(&plain, &c)), 0.0, "{name}");
            common::assert_matches_references(name, &out, &c);
        }
    }
    let copy = plain.blocks[0].to_device(&Device::Cpu).unwrap();
    assert!(copy.device().is_cpu());
}

#[test]
fn official_and_diffusers_names_give_the_same_output() {
    let diffusers = model("diffusion_pytorch_model.safetensors");
    let official = model("official.safetensors");
    for name in CASES {
        let c = case(name);
        assert_eq!(
            rel_err(&run(&official, &c), &run(&diffusers, &c)),
            0.0,
            "{name}"
        );
    }
}

#[test]
fn released_pt_layout_loads_with_its_extra_entries() {
    // torch.save dict with `net.` names, TransformerEngine `_extra_state` objects and bookkeeping buffers.
    let released = model("released_layout.pt");
    let diffusers = model("diffusion_pytorch_model.safetensors");
    let c = case("perframe");
    assert_eq!(rel_err(&run(&released, &c), &run(&diffusers, &c)), 0.0);
}

#[test]
fn model_folder_opens_with_its_diffusers_config() {
    let dir = DitModelDir::open(&fixture("")).unwrap();
    assert_eq!(dir.config, config());
    assert!(dir.weights.ends_with("diffusion_pytorch_model.safetensors"));
    assert_eq!(dir.config.in_channels, 4);
    assert_eq!(dir.config.crossattn_proj_in_channels, Some(64));
}

#[test]
fn intermediate_taps_match_reference() {
    let m = model("official.safetensors");
    for name in CASES {
        let c = case(name);
        let (_, _, t, h, w) = c["hidden_states"].dims5().unwrap();
        let (cos, sin) = m.rope(t, h, w).unwrap();
        assert!(rel_err(&cos, &c["rope_cos"]) <= 1e-6, "{name}: rope cos");
        assert!(rel_err(&sin, &c["rope_sin"]) <= 1e-6, "{name}: rope sin");

        let time = m.time_embedding(&timesteps(&c["timestep"])).unwrap();
        let lora = time.adaln_lora.flatten_to(1).unwrap();
        let t_emb = time.t_emb.flatten_to(1).unwrap();
        assert!(
            rel_err(&lora, &c["temb"]) <= 1e-5,
            "{name}: adaLN-LoRA term"
        );
        assert!(
            rel_err(&t_emb, &c["embedded_timestep"]) <= 1e-5,
            "{name}: normed sinusoid"
        );

        let text = m.project_text(&c["encoder_hidden_states"]).unwrap();
        assert!(
            rel_err(&text, &c["text_proj"]) <= 1e-5,
            "{name}: text projection"
        );
    }
}

#[test]
fn bfloat16_weights_stay_close_to_float32() {
    let f32_model = model("official.safetensors");
    let bf16_model = load_dit(
        &fixture("official.safetensors"),
        &config(),
        DType::BF16,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(bf16_model.dtype(), DType::BF16);
    assert_eq!(bf16_model.t_embedder.linear_1.weight.dtype(), DType::F32);
    assert_eq!(bf16_model.final_layer.linear.weight.dtype(), DType::F32);
    for name in CASES {
        let c = case(name);
        let out = run(&bf16_model, &c);
        assert_eq!(out.dtype(), DType::F32);
        let err = rel_err(&out, &run(&f32_model, &c));
        println!("{name}: bf16 vs f32 {err:.2e}");
        assert!(
            err < 3e-2,
            "{name}: bfloat16 drifted {err:.3e} from float32"
        );
    }
}

#[test]
fn every_parameter_gets_a_gradient() {
    let cfg = config();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let m = CosmosDit::new(vb, &cfg).unwrap();
    let vars = varmap.all_vars();
    assert_eq!(vars.len(), cfg.parameter_shapes().len());
    // Zero-initialised adaLN up-projections would block gradients to everything but themselves; the VarMap
    // init is uniform, so every path is live.
    let c = case("perframe");
    let out = run(&m, &c);
    let probe = Tensor::randn(0f32, 1., out.shape(), &Device::Cpu).unwrap();
    let loss = (out * probe).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    for var in &vars {
        let g = grads.get(var).expect("a gradient for every parameter");
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            norm > 0.0 && norm.is_finite(),
            "zero or non-finite gradient for a {:?} parameter",
            var.dims()
        );
    }
}

#[test]
fn gradients_match_finite_differences_on_loaded_weights() {
    let cfg = config();
    let ckpt = Checkpoint::open(fixture("official.safetensors")).unwrap();
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().unwrap();
        for (name, _) in cfg.parameter_shapes() {
            let t = ckpt.load(&format!("net.{name}"), &Device::Cpu).unwrap();
            data.insert(name, candle_core::Var::from_tensor(&t).unwrap());
        }
    }
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let m = CosmosDit::new(vb, &cfg).unwrap();
    let c = case("perframe");
    // A fixed probe, so the check is the same on every run.
    let n = c["velocity"].elem_count();
    let probe = Tensor::from_vec(
        (0..n).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>(),
        c["velocity"].shape(),
        &Device::Cpu,
    )
    .unwrap();
    let loss = |m: &CosmosDit| (run(m, &c) * &probe).unwrap().sum_all().unwrap();
    let grads = loss(&m).backward().unwrap();
    // One element of a parameter in each kind of module.
    let picks = [
        ("x_embedder.proj.1.weight", 5),
        ("blocks.0.self_attn.q_norm.weight", 3),
        ("blocks.1.cross_attn.v_proj.weight", 40),
        ("blocks.0.mlp.layer2.weight", 17),
        ("blocks.1.adaln_modulation_mlp.2.weight", 9),
        ("t_embedder.1.linear_1.weight", 11),
        ("crossattn_proj.0.bias", 2),
        ("final_layer.linear.weight", 7),
    ];
    let data = varmap.data().lock().unwrap().clone();
    for (name, index) in picks {
        let var = &data[name];
        let analytic = grads
            .get(var)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[index] as f64;
        let original = var.as_tensor().copy().unwrap();
        let eval = |delta: f32| {
            let mut v = original.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            v[index] += delta;
            var.set(&Tensor::from_vec(v, original.shape(), &Device::Cpu).unwrap())
                .unwrap();
            loss(&m).to_scalar::<f32>().unwrap() as f64
        };
        let eps = 5e-2;
        let numeric = (eval(eps) - eval(-eps)) / (2.0 * eps as f64);
        var.set(&original).unwrap();
        println!("{name}[{index}]: finite difference {numeric:.6}, backward {analytic:.6}");
        // 2% relative, plus the float32 resolution of the summed loss divided by 2 eps.
        let tol = 2e-2 * analytic.abs().max(numeric.abs()) + 2e-4;
        assert!(
            (numeric - analytic).abs() <= tol,
            "{name}[{index}]: finite difference {numeric:.5}, backward {analytic:.5}"
        );
    }
}

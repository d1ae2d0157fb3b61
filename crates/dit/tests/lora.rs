//! LoRA adapters against the reference: the tiny DiT of testdata/dit_tiny with a PEFT LoRA (r = 4, alpha = 8)
//! built and saved by diffusers 0.42.1 / PEFT 0.21.2 (`tools/oracles/dit_lora.py`), run through diffusers' own
//! loader at scale 1 and at scale 0.5 (`set_adapters`). Tolerance as the DiT golden tests: max abs error <=
//! 1e-5 x max|reference|, against both the float32 and float64 references. The other way round, an adapter saved
//! by orrery (`save_lora_weights`, as the trainer exports it) is loaded by the same diffusers loader in that script
//! and gives orrery's output. Bad adapter files give errors that name the file and the key.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use orrery_dit::lora::LoraLayer;
use orrery_dit::{
    load_dit, load_dit_with_loras, save_lora_weights, CosmosDit, DitConfig, DitModelDir,
    LoraAdapter, LoraShape, ScaledLora,
};
use orrery_nn::{Checkpoint, SeededVarMap};

mod common;
use common::{run, seeded};

fn tiny(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/dit_tiny")
        .join(name)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/dit_lora")
        .join(name)
}

fn model_dir() -> DitModelDir {
    DitModelDir::open(&tiny("")).unwrap()
}

fn config() -> DitConfig {
    model_dir().config
}

fn case() -> HashMap<String, Tensor> {
    let ckpt = Checkpoint::open(fixture("case.safetensors")).unwrap();
    ckpt.tensors()
        .iter()
        .map(|t| (t.name.clone(), ckpt.load(&t.name, &Device::Cpu).unwrap()))
        .collect()
}

fn diffusers_lora() -> LoraAdapter {
    LoraAdapter::open(&fixture("pytorch_lora_weights.safetensors"), None).unwrap()
}

fn with_loras(loras: &[ScaledLora]) -> CosmosDit {
    model_dir()
        .load_with_loras(loras, DType::F32, &Device::Cpu)
        .unwrap()
}

/// max |a - b| / max |reference|
fn rel_err(a: &Tensor, reference: &Tensor) -> f64 {
    orrery_nn::compare::max_rel_err(a, reference).unwrap()
}

fn assert_matches(out: &Tensor, c: &HashMap<String, Tensor>, key: &str) {
    let err = rel_err(out, &c[key]);
    let err64 = rel_err(out, &c[&format!("{key}_f64")]);
    println!("{key}: vs f32 reference {err:.2e}, vs f64 reference {err64:.2e}");
    assert!(
        err <= 1e-5,
        "{key}: error {err:.3e} vs the float32 reference"
    );
    assert!(
        err64 <= 1e-5,
        "{key}: error {err64:.3e} vs the float64 reference"
    );
}

#[test]
fn diffusers_lora_file_matches_diffusers_at_scale_one_and_one_half() {
    let c = case();
    let adapter = diffusers_lora();
    // 2 blocks x (4 self + 4 cross attention + 2 MLP) Linears, both key spellings in one file.
    assert_eq!(adapter.layers().len(), 20);
    assert!(adapter
        .layers()
        .values()
        .all(|l| l.alpha == 8.0 && l.rank() == 4));
    assert_matches(
        &run(&with_loras(&[(adapter.clone(), 1.0)]), &c),
        &c,
        "velocity_scale1",
    );
    assert_matches(
        &run(&with_loras(&[(adapter, 0.5)]), &c),
        &c,
        "velocity_scale0_5",
    );
}

#[test]
fn scale_zero_and_no_adapter_give_the_base_network() {
    let c = case();
    assert_matches(&run(&with_loras(&[]), &c), &c, "velocity_base");
    assert_matches(
        &run(&with_loras(&[(diffusers_lora(), 0.0)]), &c),
        &c,
        "velocity_base",
    );
}

#[test]
fn several_adapters_add_their_scaled_deltas() {
    let c = case();
    let a = diffusers_lora();
    let out = run(&with_loras(&[(a.clone(), 0.25), (a, 0.25)]), &c);
    assert_matches(&out, &c, "velocity_scale0_5");
}

#[test]
fn official_checkpoint_with_lora_keys_applies_its_adapter_at_load() {
    let c = case();
    // The full checkpoint: base + `lora_A/B.default` keys, applied automatically at scale 1 (alpha = r = 4 here,
    // as the official files carry no alpha: the reference adapter has alpha 8, so it is told).
    let ckpt = Checkpoint::open(fixture("official_with_lora.pt")).unwrap();
    let embedded = LoraAdapter::from_checkpoint(&ckpt, Some(8.0)).unwrap();
    assert_eq!(embedded.layers().len(), 20);
    let plain = load_dit(
        &fixture("official_with_lora.pt"),
        &config(),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    // alpha = rank: scaling 1 instead of the reference's 2, i.e. the reference at scale 0.5.
    assert_matches(&run(&plain, &c), &c, "velocity_scale0_5");
    // The same file as an adapter on the diffusers-named base, with its alpha told.
    let official = LoraAdapter::open(&fixture("official_with_lora.pt"), Some(8.0)).unwrap();
    assert_matches(
        &run(&with_loras(&[(official.clone(), 1.0)]), &c),
        &c,
        "velocity_scale1",
    );
    assert_matches(
        &run(&with_loras(&[(official, 0.5)]), &c),
        &c,
        "velocity_scale0_5",
    );
}

#[test]
fn without_metadata_alpha_is_the_rank() {
    let c = case();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no_metadata.safetensors");
    let tensors = lora_tensors();
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let adapter = LoraAdapter::open(&path, None).unwrap();
    assert!(adapter.layers().values().all(|l| l.alpha == 4.0));
    // alpha/r = 1 instead of 2: the reference at scale 0.5.
    assert_matches(
        &run(&with_loras(&[(adapter, 1.0)]), &c),
        &c,
        "velocity_scale0_5",
    );
}

#[test]
fn fused_file_loads_as_a_plain_model_with_the_same_output() {
    let c = case();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fused.safetensors");
    model_dir()
        .fuse_loras(&[(diffusers_lora(), 0.5)], &out)
        .unwrap();
    let fused = Checkpoint::open(&out).unwrap();
    assert!(fused.tensors().iter().all(|t| t.name.starts_with("net.")));
    assert_eq!(fused.tensors().len(), config().parameter_shapes().len());
    let m = load_dit(&out, &config(), DType::F32, &Device::Cpu).unwrap();
    let at_load = run(&with_loras(&[(diffusers_lora(), 0.5)]), &c);
    assert_eq!(rel_err(&run(&m, &c), &at_load), 0.0);
    assert_matches(&run(&m, &c), &c, "velocity_scale0_5");
}

#[test]
fn hand_made_adapter_adds_scale_alpha_over_rank_b_a_to_its_weight() {
    // One adapter on blocks.0.mlp.layer2 (out 48, in 192): the fused weight equals W + s alpha/r B A.
    let dev = Device::Cpu;
    let (r, out_dim, in_dim) = (2, 48, 192);
    let down = Tensor::randn(0f32, 1., (r, in_dim), &dev).unwrap(); // (r, in)
    let up = Tensor::randn(0f32, 1., (out_dim, r), &dev).unwrap(); // (out, r)
    let layer = LoraLayer {
        module: "blocks.0.mlp.layer2".into(),
        down: down.clone(),
        up: up.clone(),
        alpha: 3.0,
        use_rslora: false,
    };
    let adapter = LoraAdapter::from_layers(
        "hand-made".into(),
        BTreeMap::from([("blocks.0.mlp.layer2.weight".to_owned(), layer)]),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fused.safetensors");
    model_dir().fuse_loras(&[(adapter, 0.7)], &out).unwrap();
    let fused = Checkpoint::open(&out).unwrap();
    let base = Checkpoint::open(tiny("official.safetensors")).unwrap();
    let name = "net.blocks.0.mlp.layer2.weight";
    let w = base.load(name, &dev).unwrap();
    let expected = (w + (up.matmul(&down).unwrap() * (0.7 * 3.0 / 2.0)).unwrap()).unwrap();
    let got = fused.load(name, &dev).unwrap();
    assert!(rel_err(&got, &expected) <= 1e-6);
    // Every other weight is copied unchanged.
    let other = "net.blocks.0.mlp.layer1.weight";
    assert_eq!(
        rel_err(
            &fused.load(other, &dev).unwrap(),
            &base.load(other, &dev).unwrap()
        ),
        0.0
    );
}

/// The diffusers fixture's tensors (no metadata).
fn lora_tensors() -> HashMap<String, Tensor> {
    let ckpt = Checkpoint::open(fixture("pytorch_lora_weights.safetensors")).unwrap();
    ckpt.tensors()
        .iter()
        .map(|t| (t.name.clone(), ckpt.load(&t.name, &Device::Cpu).unwrap()))
        .collect()
}

/// The error of loading the fixture's tensors after `edit`, written to a temporary file.
fn edited_error(edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> (String, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edited_lora.safetensors");
    let mut tensors = lora_tensors();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let message = match LoraAdapter::open(&path, None) {
        Err(e) => e.to_string(),
        Ok(adapter) => match load_dit_with_loras(
            &tiny("diffusion_pytorch_model.safetensors"),
            &config(),
            &[(adapter, 1.0)],
            DType::F32,
            &Device::Cpu,
        ) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("the edited adapter loads"),
        },
    };
    (message, path)
}

fn rename(tensors: &mut HashMap<String, Tensor>, from: &str, to: &str) {
    let t = tensors.remove(from).unwrap();
    tensors.insert(to.to_owned(), t);
}

#[test]
fn key_that_targets_no_weight_is_named() {
    let (message, path) = edited_error(|t| {
        for half in ["down", "up"] {
            rename(
                t,
                &format!("transformer.transformer_blocks.1.attn1.to_q.lora.{half}.weight"),
                &format!("transformer.transformer_blocks.7.attn1.to_q.lora.{half}.weight"),
            );
        }
    });
    assert!(
        message.contains("transformer.transformer_blocks.7.attn1.to_q"),
        "{message}"
    );
    assert!(message.contains("targets no weight"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn rank_mismatch_between_a_and_b_is_named() {
    let key = "transformer.transformer_blocks.0.ff.net.2.lora_B.weight";
    let (message, path) = edited_error(|t| {
        let b = t[key].narrow(1, 0, 3).unwrap().contiguous().unwrap(); // (out, 3) against A (4, in)
        t.insert(key.to_owned(), b);
    });
    assert!(message.contains("rank mismatch"), "{message}");
    assert!(message.contains(key), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn shape_that_does_not_fit_the_weight_is_named() {
    let key = "transformer.transformer_blocks.0.attn2.to_k.lora.down.weight";
    let (message, _) = edited_error(|t| {
        // cross-attention k takes 32 text channels; give A 48 inputs
        t.insert(
            key.to_owned(),
            Tensor::zeros((4, 48), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    assert!(
        message.contains("transformer.transformer_blocks.0.attn2.to_k"),
        "{message}"
    );
    assert!(message.contains("(r, 32)"), "{message}");
}

#[test]
fn lone_half_and_foreign_keys_are_refused() {
    let key = "transformer.transformer_blocks.0.ff.net.2.lora_B.weight";
    let (message, _) = edited_error(|t| {
        t.remove(key);
    });
    assert!(message.contains("no partner"), "{message}");
    let (message, _) = edited_error(|t| {
        t.insert(
            "transformer.transformer_blocks.0.attn1.to_q.weight".into(),
            Tensor::zeros((48, 48), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    assert!(message.contains("is not a LoRA tensor"), "{message}");
    let (message, _) = edited_error(|t| {
        t.insert(
            "transformer.transformer_blocks.0.attn1.to_q.lora_magnitude_vector".into(),
            Tensor::zeros(48, DType::F32, &Device::Cpu).unwrap(),
        );
    });
    assert!(message.contains("lora_magnitude_vector"), "{message}");
    assert!(message.contains("not a LoRA spelling"), "{message}");
}

#[test]
fn truncated_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truncated.safetensors");
    let bytes = std::fs::read(fixture("pytorch_lora_weights.safetensors")).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let message = LoraAdapter::open(&path, None).unwrap_err().to_string();
    assert!(message.contains("truncated"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn base_model_file_is_not_an_adapter() {
    let message = LoraAdapter::open(&tiny("official.safetensors"), None)
        .unwrap_err()
        .to_string();
    assert!(message.contains("no LoRA tensors"), "{message}");
}

/// An adapter as orrery's trainers export it: `save_lora_weights` on adapters attached to the tiny DiT (rank 4,
/// alpha 8, the official targets), A at its seeded initialisation and B seeded non-zero.
fn write_orrery_adapter(path: &Path) {
    let shape = LoraShape {
        rank: 4,
        alpha: 8.0,
        ..LoraShape::default()
    };
    let vars = SeededVarMap::new(31);
    let mut dit = with_loras(&[]);
    let modules = dit
        .attach_adapters(vars.var_builder(&Device::Cpu), &shape)
        .unwrap();
    let named: HashMap<String, Tensor> = vars
        .named_vars()
        .into_iter()
        .enumerate()
        .map(|(i, (name, var))| {
            let t = if name.ends_with("lora_B.weight") {
                seeded(200 + i as u64, var.dims(), 0.1)
            } else {
                var.as_tensor().clone()
            };
            (name, t)
        })
        .collect();
    let layers: Vec<(String, Tensor, Tensor)> = modules
        .iter()
        .map(|m| {
            let part = |p: &str| named[&format!("{m}.{p}.weight")].clone();
            (m.clone(), part("lora_A"), part("lora_B"))
        })
        .collect();
    save_lora_weights(path, &layers, &shape).unwrap();
}

/// `ORRERY_WRITE_FIXTURES=1` writes the adapter into testdata/dit_lora for `tools/oracles/dit_lora.py`.
#[test]
fn an_adapter_orrery_saves_loads_in_diffusers_with_orrerys_output() {
    let committed = fixture("orrery_lora_weights.safetensors");
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("orrery_lora_weights.safetensors");
    write_orrery_adapter(&fresh);
    if std::env::var_os("ORRERY_WRITE_FIXTURES").is_some() {
        std::fs::copy(&fresh, &committed).unwrap();
        return;
    }
    assert_eq!(
        std::fs::read(&fresh).unwrap(),
        std::fs::read(&committed).unwrap(),
        "save_lora_weights no longer writes the file diffusers was checked on: regenerate with \
         tools/oracles/regenerate.sh dit_lora"
    );
    let c = case();
    let adapter = LoraAdapter::open(&committed, None).unwrap();
    assert_eq!(adapter.layers().len(), 20);
    let out = run(&with_loras(&[(adapter, 1.0)]), &c);
    assert_matches(&out, &c, "velocity_orrery_lora");
    assert!(
        rel_err(&out, &c["velocity_base"]) > 1e-2,
        "the adapter changes the output"
    );
}

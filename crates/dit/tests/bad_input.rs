//! Wrong or missing tensors and wrong input shapes are reported by name, never a panic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use orrery_dit::{load_dit, DitConfig, DitInput, DitModelDir};
use orrery_nn::Checkpoint;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/dit_tiny")
        .join(name)
}

fn config() -> DitConfig {
    DitConfig::from_diffusers_file(&fixture("config.json")).unwrap()
}

/// The official fixture's tensors, edited by `edit`, written to a temporary safetensors file.
fn edited_weights(dir: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> PathBuf {
    let ckpt = Checkpoint::open(fixture("official.safetensors")).unwrap();
    let mut tensors: HashMap<String, Tensor> = ckpt
        .tensors()
        .iter()
        .map(|t| (t.name.clone(), ckpt.load(&t.name, &Device::Cpu).unwrap()))
        .collect();
    edit(&mut tensors);
    let path = dir.join("edited.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    path
}

fn load_error(path: &Path, config: &DitConfig) -> String {
    load_dit(path, config, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string()
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_weights(dir.path(), |t| {
        t.remove("net.blocks.1.cross_attn.k_norm.weight");
    });
    let msg = load_error(&path, &config());
    assert!(
        msg.contains("net.blocks.1.cross_attn.k_norm.weight"),
        "{msg}"
    );
}

#[test]
fn wrong_shape_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_weights(dir.path(), |t| {
        t.insert(
            "net.blocks.0.mlp.layer1.weight".into(),
            Tensor::zeros((10, 48), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let msg = load_error(&path, &config());
    assert!(
        msg.contains("net.blocks.0.mlp.layer1.weight") && msg.contains("[10, 48]"),
        "{msg}"
    );
}

#[test]
fn unused_tensor_and_wrong_config_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_weights(dir.path(), |t| {
        t.insert(
            "net.blocks.2.mlp.layer1.weight".into(),
            Tensor::zeros((4, 4), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let msg = load_error(&path, &config());
    assert!(msg.contains("net.blocks.2.mlp.layer1.weight"), "{msg}");

    let mut three_blocks = config();
    three_blocks.num_blocks = 3;
    let msg = load_error(&fixture("official.safetensors"), &three_blocks);
    assert!(msg.contains("net.blocks.2."), "{msg}");
}

#[test]
fn non_dit_checkpoint_and_missing_folder_are_explained() {
    let msg = load_error(&fixture("case_t1d.safetensors"), &config());
    assert!(msg.contains("no Cosmos DiT tensors"), "{msg}");
    let msg = DitModelDir::open(Path::new("/nonexistent/model"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("config.json"), "{msg}");
}

#[test]
fn wrong_input_shapes_are_named() {
    let m = load_dit(
        &fixture("official.safetensors"),
        &config(),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let dev = Device::Cpu;
    let zeros = |s: &[usize]| Tensor::zeros(s, DType::F32, &dev).unwrap();
    let x = zeros(&[1, 4, 2, 8, 8]);
    let t = zeros(&[1]);
    let text = zeros(&[1, 5, 64]);
    let mask = zeros(&[1, 1, 2, 8, 8]);
    let ok = DitInput {
        x: &x,
        timesteps: &t,
        crossattn_emb: &text,
        condition_mask: &mask,
        padding_mask: None,
        action: None,
    };
    assert_eq!(m.forward(&ok).unwrap().dims(), &[1, 4, 2, 8, 8]);

    let cases: Vec<(&str, Tensor, &str)> = vec![
        ("x", zeros(&[1, 5, 2, 8, 8]), "hidden_states"),
        ("x", zeros(&[1, 4, 2, 7, 8]), "hidden_states"),
        ("x", zeros(&[1, 4, 2, 8, 80]), "RoPE"),
        ("t", zeros(&[1, 3]), "timestep"),
        ("text", zeros(&[1, 5, 32]), "encoder_hidden_states"),
        ("mask", zeros(&[1, 1, 1, 8, 8]), "condition_mask"),
        ("pad", zeros(&[1, 8, 8]), "padding_mask"),
    ];
    for (which, bad, expect) in cases {
        let mut input = ok.clone();
        let big_mask;
        match which {
            "x" => {
                input.x = &bad;
                let (b, _, tt, h, w) = bad.dims5().unwrap();
                big_mask = zeros(&[b, 1, tt, h, w]);
                input.condition_mask = &big_mask;
            }
            "t" => input.timesteps = &bad,
            "text" => input.crossattn_emb = &bad,
            "mask" => input.condition_mask = &bad,
            _ => input.padding_mask = Some(&bad),
        }
        let msg = m.forward(&input).unwrap_err().to_string();
        assert!(msg.contains(expect), "{which}: {msg}");
    }
}

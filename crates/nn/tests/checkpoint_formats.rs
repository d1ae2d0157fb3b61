//! Every checkpoint format lists the names, dtypes and shapes PyTorch reports, and the values sum to what
//! PyTorch sums (fixtures from `tools/oracles/checkpoint_io.py`).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use orrery_nn::{Checkpoint, Format, OpenOptions};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/checkpoint")
        .join(name)
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(testdata("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("valid JSON")
}

/// Checks names, dtypes, shapes and sums; `as_stored` also checks how many non-tensor entries were skipped.
fn check_tensors(ckpt: &Checkpoint, key: &str, as_stored: bool) {
    let expected = &expected()[key];
    let tensors = expected["tensors"].as_array().expect("tensor list");
    assert_eq!(ckpt.tensors().len(), tensors.len(), "{key}: tensor count");
    for (entry, want) in ckpt.tensors().iter().zip(tensors) {
        assert_eq!(entry.name, want["name"].as_str().unwrap(), "{key}: name");
        assert_eq!(
            entry.dtype.torch_name(),
            want["dtype"].as_str().unwrap(),
            "{key}: dtype of {}",
            entry.name
        );
        let shape: Vec<usize> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(entry.shape, shape, "{key}: shape of {}", entry.name);
        let sum = ckpt
            .load_as(&entry.name, DType::F64, &Device::Cpu)
            .and_then(|t| Ok(t.sum_all()?.to_scalar::<f64>()?))
            .unwrap_or_else(|e| panic!("{key}: loading {}: {e}", entry.name));
        let want_sum = want["sum"].as_f64().unwrap();
        assert!(
            (sum - want_sum).abs() <= 1e-9 * want_sum.abs().max(1.0),
            "{key}: sum of {}: {sum} vs {want_sum}",
            entry.name
        );
    }
    if as_stored {
        assert_eq!(
            ckpt.skipped_entries().len() as u64,
            expected["skipped"].as_u64().unwrap(),
            "{key}: skipped {:?}",
            ckpt.skipped_entries()
        );
    }
}

fn check_against_pytorch(ckpt: &Checkpoint, key: &str) {
    check_tensors(ckpt, key, true)
}

#[test]
fn torch_zip_f32_with_non_tensor_entries_and_views() {
    let ckpt = Checkpoint::open(testdata("f32_extras.pt")).unwrap();
    assert_eq!(ckpt.format(), Format::TorchZip);
    check_against_pytorch(&ckpt, "f32_extras.pt");
    // The transposed view comes back in logical (row-major) order.
    let t = ckpt.load("net.transposed.weight", &Device::Cpu).unwrap();
    let s = ckpt.load("net.slice.weight", &Device::Cpu).unwrap();
    assert_eq!(t.dims(), &[4, 6]);
    let t_row2 = t.t().unwrap().get(2).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(t_row2, s.get(0).unwrap().to_vec1::<f32>().unwrap());
}

#[test]
fn torch_zip_bf16_nested_flat_and_by_key() {
    let ckpt = Checkpoint::open(testdata("bf16_nested.pt")).unwrap();
    check_against_pytorch(&ckpt, "bf16_nested.pt");
    let options = OpenOptions {
        key: Some("state_dict".into()),
    };
    let ckpt = Checkpoint::open_with(testdata("bf16_nested.pt"), &options).unwrap();
    check_against_pytorch(&ckpt, "bf16_nested.pt#state_dict");
    let bf16 = ckpt.load("layer.weight", &Device::Cpu).unwrap();
    assert_eq!(bf16.dtype(), DType::BF16);
}

#[test]
fn missing_key_lists_what_is_there() {
    let options = OpenOptions {
        key: Some("model".into()),
    };
    let err = Checkpoint::open_with(testdata("bf16_nested.pt"), &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`model` not found") && err.contains("state_dict"),
        "{err}"
    );
}

#[test]
fn plain_safetensors() {
    let ckpt = Checkpoint::open(testdata("plain.safetensors")).unwrap();
    assert_eq!(ckpt.format(), Format::Safetensors);
    check_against_pytorch(&ckpt, "plain.safetensors");
}

#[test]
fn sharded_folder_and_index_file() {
    let ckpt = Checkpoint::open(testdata("sharded")).unwrap();
    assert_eq!(ckpt.format(), Format::ShardedSafetensors);
    check_against_pytorch(&ckpt, "sharded");
    let ckpt = Checkpoint::open(testdata("sharded/model.safetensors.index.json")).unwrap();
    check_against_pytorch(&ckpt, "sharded");
}

#[test]
fn missing_tensor_is_named_with_similar_names() {
    let ckpt = Checkpoint::open(testdata("f32_extras.pt")).unwrap();
    let err = ckpt
        .load("blocks.0.self_attn.q_proj.weight", &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("blocks.0.self_attn.q_proj.weight"), "{err}");
    assert!(
        err.contains("net.blocks.0.self_attn.q_proj.weight"),
        "hint missing: {err}"
    );
}

#[test]
fn shape_mismatch_is_reported() {
    let ckpt = Checkpoint::open(testdata("plain.safetensors")).unwrap();
    let err = ckpt
        .load_checked("encoder.conv1.bias", &[5], DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected shape [5], found [4]"), "{err}");
}

#[test]
fn convert_round_trips_every_format() {
    let dir = tempfile::tempdir().unwrap();
    for (name, key) in [
        ("f32_extras.pt", "f32_extras.pt"),
        ("plain.safetensors", "plain.safetensors"),
        ("sharded", "sharded"),
    ] {
        let ckpt = Checkpoint::open(testdata(name)).unwrap();
        let out = dir.path().join(format!("{name}.safetensors"));
        orrery_nn::checkpoint::write_safetensors(&ckpt, &out, None).unwrap();
        let back = Checkpoint::open(&out).unwrap();
        check_tensors(&back, key, false);
        for t in ckpt.tensors() {
            assert_eq!(
                ckpt.bytes(&t.name).unwrap(),
                back.bytes(&t.name).unwrap(),
                "{name}: bytes of {}",
                t.name
            );
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
}

#[test]
fn var_builder_reads_checkpoints() {
    let ckpt = Checkpoint::open(testdata("plain.safetensors")).unwrap();
    let vb = ckpt.var_builder(DType::F32, &Device::Cpu);
    let w = vb
        .pp("encoder")
        .pp("conv1")
        .get((4, 3, 3, 3, 3), "weight")
        .unwrap();
    assert_eq!(w.dtype(), DType::F32);
    let err = vb.pp("encoder").get(3, "missing").unwrap_err().to_string();
    assert!(err.contains("encoder.missing"), "{err}");
}

#[cfg(unix)]
#[test]
fn written_safetensors_get_the_mode_of_an_ordinary_new_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::File::create(&plain).unwrap();
    let out = dir.path().join("weights.safetensors");
    let t = candle_core::Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
    orrery_nn::checkpoint::save_tensors(&out, vec![("t".into(), t)]).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out), mode(&plain));
}

/// Releasing a tensor's pages changes nothing a reader sees: its bytes read back the same, from every format.
#[test]
fn released_tensors_read_back_the_same() {
    for file in [
        "f32_extras.pt",
        "bf16_nested.pt",
        "plain.safetensors",
        "sharded",
    ] {
        let ckpt = Checkpoint::open(testdata(file)).unwrap();
        for t in ckpt.tensors() {
            let before = ckpt.bytes(&t.name).unwrap().into_owned();
            ckpt.release(&t.name).unwrap();
            assert_eq!(*ckpt.bytes(&t.name).unwrap(), *before, "{file}: {}", t.name);
        }
    }
}

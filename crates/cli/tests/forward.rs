//! `orrery forward dit`: the reference check a user runs, on the tiny DiT fixture, and its errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{DType, Device};
use orrery_nn::Checkpoint;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

fn orrery(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orrery"))
        .args(args)
        .output()
        .expect("run orrery")
}

fn max_rel_err(out: &Path, reference: &Path) -> f64 {
    let dev = Device::Cpu;
    let got = Checkpoint::open(out)
        .unwrap()
        .load_as("velocity", DType::F64, &dev)
        .unwrap();
    let want = Checkpoint::open(reference)
        .unwrap()
        .load_as("velocity", DType::F64, &dev)
        .unwrap();
    let diff = (got - &want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    diff / want
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn forward_dit_reproduces_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    for case in ["t1d", "perframe", "padded"] {
        let inputs = testdata(&format!("dit_tiny/case_{case}.safetensors"));
        let out = dir.path().join(format!("{case}.safetensors"));
        let run = orrery(&[
            "forward",
            "dit",
            "--model",
            testdata("dit_tiny").to_str().unwrap(),
            "--inputs",
            inputs.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let err = max_rel_err(&out, &inputs);
        assert!(err <= 1e-5, "{case}: {err:.3e}");
    }
}

#[test]
fn forward_dit_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let model = testdata("dit_tiny");
    let cases = [
        // Inputs without the DiT's tensors.
        (
            testdata("checkpoint/plain.safetensors"),
            model.clone(),
            "hidden_states",
        ),
        // A folder without config.json.
        (
            testdata("dit_tiny/case_t1d.safetensors"),
            testdata("checkpoint"),
            "config.json",
        ),
        // Not a tensor file.
        (
            testdata("dit_tiny/config.json"),
            model.clone(),
            "config.json",
        ),
    ];
    for (inputs, model, expect) in cases {
        let run = orrery(&[
            "forward",
            "dit",
            "--model",
            model.to_str().unwrap(),
            "--inputs",
            inputs.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{expect}: succeeded");
        assert!(stderr.contains(expect), "{expect}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!out.exists());
    }
}

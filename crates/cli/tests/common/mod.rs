//! Helpers shared by the CLI test files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{DType, Device};
use orrery_nn::Checkpoint;

pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

pub fn orrery(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orrery"))
        .args(args)
        .output()
        .expect("run orrery")
}

/// Runs a command that must succeed; the failure message is its standard error.
pub fn run_ok(args: &[&str]) -> Output {
    let run = orrery(args);
    assert!(
        run.status.success(),
        "orrery {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&run.stderr)
    );
    run
}

/// `orrery forward NET --model MODEL --inputs INPUTS --out OUT`, which must succeed.
pub fn forward(net: &str, model: &Path, inputs: &Path, out: &Path) {
    run_ok(&[
        "forward",
        net,
        "--model",
        model.to_str().unwrap(),
        "--inputs",
        inputs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
}

/// max |out[out_name] - reference[ref_name]| / max |reference|.
pub fn rel_err(out: &Path, out_name: &str, reference: &Path, ref_name: &str) -> f64 {
    let load = |p: &Path, n: &str| {
        Checkpoint::open(p)
            .unwrap()
            .load_as(n, DType::F64, &Device::Cpu)
            .unwrap()
    };
    orrery_nn::compare::max_rel_err(&load(out, out_name), &load(reference, ref_name)).unwrap()
}

/// Runs a command that must fail: non-zero exit, `expect` in the message, no panic.
pub fn assert_fails_with(args: &[&str], expect: &str) {
    let run = orrery(args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{expect}: succeeded");
    assert!(stderr.contains(expect), "{expect}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

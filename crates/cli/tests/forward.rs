//! `orrery forward dit`: the reference check a user runs, on the tiny DiT fixture, and its errors.

mod common;

use std::path::Path;

use common::{assert_fails_with, forward, rel_err, run_ok, testdata};

#[test]
fn forward_dit_reproduces_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    for case in ["t1d", "perframe", "padded"] {
        let inputs = testdata(&format!("dit_tiny/case_{case}.safetensors"));
        let out = dir.path().join(format!("{case}.safetensors"));
        let model = testdata("dit_tiny");
        forward("dit", &model, &inputs, &out);
        let err = rel_err(&out, "velocity", &inputs, "velocity");
        assert!(err <= 1e-5, "{case}: {err:.3e}");
    }
}

#[test]
fn forward_dit_takes_actions_for_an_action_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = testdata("dit_action/model");
    for case in ["perframe", "batch2"] {
        let inputs = testdata(&format!("dit_action/case_{case}.safetensors"));
        let out = dir.path().join(format!("{case}.safetensors"));
        forward("dit", &model, &inputs, &out);
        let err = rel_err(&out, "velocity", &inputs, "velocity");
        assert!(err <= 1e-5, "{case}: {err:.3e}");
    }
    // The action model without actions, and the plain model with them: each error names `action`.
    let out = dir.path().join("out.safetensors");
    for (inputs, model, expect) in [
        (
            testdata("dit_tiny/case_perframe.safetensors"),
            testdata("dit_action/model"),
            "input `action`: expected (2, 8, 3)",
        ),
        (
            testdata("dit_action/case_perframe.safetensors"),
            testdata("dit_tiny"),
            "not action-conditioned",
        ),
    ] {
        forward_dit_fails_with(&inputs, &model, &out, expect);
    }
}

/// `orrery forward dit` on `inputs` and `model` fails naming `expect`, and writes nothing.
fn forward_dit_fails_with(inputs: &Path, model: &Path, out: &Path, expect: &str) {
    assert_fails_with(
        &[
            "forward",
            "dit",
            "--model",
            model.to_str().unwrap(),
            "--inputs",
            inputs.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        expect,
    );
    assert!(!out.exists());
}

#[test]
fn forward_dit_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let cases = [
        // Inputs without the DiT's tensors.
        (
            testdata("checkpoint/plain.safetensors"),
            testdata("dit_tiny"),
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
            testdata("dit_tiny"),
            "config.json",
        ),
    ];
    for (inputs, model, expect) in cases {
        forward_dit_fails_with(&inputs, &model, &out, expect);
    }
}

#[test]
fn schedule_prints_the_official_karras_sigmas() {
    let run = run_ok(&[
        "schedule",
        "--sampler",
        "unipc",
        "--steps",
        "35",
        "--karras",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(v["calls"], 36);
    assert_eq!(v["timesteps"][0], 995);
    assert!((v["sigmas"][35].as_f64().unwrap() - 0.009901).abs() < 1e-6);
    assert_fails_with(&["schedule", "--steps", "0"], "steps");
}

//! The action-conditioned DiT against the official `ActionChunkConditionedMinimalV1LVGDiT.forward` on a tiny random
//! network (`tools/oracles/dit_action.py`): action width 3, 4 actions per latent frame, embedder hidden width 32.
//! Tolerance: max abs error <= 1e-5 x max|reference| (the reference's own float32-vs-float64 error is 2.6e-7).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use orrery_dit::{CosmosDit, DitError, DitInput, DitModelDir};

mod common;
use common::timesteps;

const CASES: [&str; 2] = ["perframe", "batch2"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/dit_action")
        .join(name)
}

fn case(name: &str) -> HashMap<String, Tensor> {
    common::fixture_case("dit_action", name)
}

fn model() -> CosmosDit {
    DitModelDir::open(&fixture("model"))
        .unwrap()
        .load(DType::F32, &Device::Cpu)
        .unwrap()
}

fn forward(
    m: &CosmosDit,
    c: &HashMap<String, Tensor>,
    action: Option<&Tensor>,
) -> Result<Tensor, DitError> {
    let ts = timesteps(&c["timestep"]);
    m.forward(&DitInput {
        x: &c["hidden_states"],
        timesteps: &ts,
        crossattn_emb: &c["encoder_hidden_states"],
        condition_mask: &c["condition_mask"],
        padding_mask: Some(&c["padding_mask"]),
        action,
    })
}

fn rel_err(a: &Tensor, reference: &Tensor) -> f64 {
    orrery_nn::compare::max_rel_err(a, reference).unwrap()
}

#[test]
fn velocity_matches_the_official_action_network() {
    let m = model();
    for name in CASES {
        let c = case(name);
        let out = forward(&m, &c, Some(&c["action"])).unwrap();
        common::assert_matches_references(name, &out, &c);
    }
}

#[test]
fn zero_actions_match_the_reference_and_differ_from_real_ones() {
    let m = model();
    for name in CASES {
        let c = case(name);
        let zeros = c["action"].zeros_like().unwrap();
        let still = forward(&m, &c, Some(&zeros)).unwrap();
        let moving = forward(&m, &c, Some(&c["action"])).unwrap();
        assert!(
            rel_err(&still, &c["velocity_zero_action"]) <= 1e-5,
            "{name}"
        );
        let changed = rel_err(&still, &moving);
        assert!(
            changed > 1e-2,
            "{name}: actions change the output by only {changed:.2e}"
        );
    }
}

#[test]
fn conditioning_frames_ignore_their_actions() {
    // batch2 has two conditioning latent frames: frame 1's actions (the first 4) are masked to zero, so changing
    // them changes nothing; changing frame 2's actions does.
    let m = model();
    let c = case("batch2");
    let action = &c["action"]; // (2, 12, 3)
    let base = forward(&m, &c, Some(action)).unwrap();
    let bump = |from: usize| {
        let ones = Tensor::ones((2, 4, 3), DType::F32, &Device::Cpu).unwrap();
        action
            .slice_assign(
                &[0..2, from..from + 4, 0..3],
                &(action.narrow(1, from, 4).unwrap() + ones).unwrap(),
            )
            .unwrap()
    };
    let masked = forward(&m, &c, Some(&bump(0))).unwrap();
    assert_eq!(rel_err(&masked, &base), 0.0);
    let free = forward(&m, &c, Some(&bump(4))).unwrap();
    assert!(rel_err(&free, &base) > 1e-3);
}

#[test]
fn wrong_or_missing_actions_are_clear_errors() {
    let m = model();
    let c = case("perframe"); // 3 latent frames: 8 actions of width 3
    let missing = forward(&m, &c, None).unwrap_err().to_string();
    assert!(
        missing.contains("action") && missing.contains("(1, 8, 3)"),
        "{missing}"
    );
    for shape in [(1, 8, 4), (1, 7, 3), (1, 12, 3), (2, 8, 3)] {
        let bad = Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
        let err = forward(&m, &c, Some(&bad)).unwrap_err().to_string();
        assert!(
            err.contains("input `action`") && err.contains("(1, 8, 3)"),
            "{shape:?}: {err}"
        );
    }
    let plain =
        DitModelDir::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/dit_tiny"))
            .unwrap()
            .load(DType::F32, &Device::Cpu)
            .unwrap();
    let err = forward(&plain, &c, Some(&c["action"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not action-conditioned"), "{err}");
}

#[test]
fn the_weights_must_hold_the_action_embedders() {
    // The base tiny network's weights under the action configuration: every missing embedder tensor is named.
    let config = DitModelDir::open(&fixture("model")).unwrap().config;
    let weights =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/dit_tiny/official.safetensors");
    let err = orrery_dit::load_dit(&weights, &config, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("action_embedder"), "{err}");
}

//! `orrery embed` and `orrery forward text` on the tiny Qwen2.5-VL fixture with its tiny tokenizer.

mod common;

use std::path::Path;

use candle_core::{DType, Device};
use common::{assert_fails_with, forward, orrery, rel_err, testdata};
use orrery_nn::Checkpoint;

fn tensor(path: &Path, name: &str) -> candle_core::Tensor {
    Checkpoint::open(path)
        .unwrap()
        .load_as(name, DType::F64, &Device::Cpu)
        .unwrap()
}

#[test]
fn embed_matches_reference_and_fills_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let model = testdata("qwen_tiny");
    let prompt = "A robot arm picks up a red cube and places it on a blue plate.";
    let want = tensor(
        &testdata("qwen_tiny/embed_case.safetensors"),
        "prompt_embeds",
    )
    .get(0)
    .unwrap();
    for round in 0..2 {
        let out = dir.path().join(format!("embeds{round}.safetensors"));
        let run = orrery(&[
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            prompt,
            "--dtype",
            "f32",
            "--cache",
            cache.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{stderr}");
        assert_eq!(
            stderr.contains("found in the cache"),
            round == 1,
            "{stderr}"
        );
        let got = tensor(&out, "prompt_embeds").squeeze(0).unwrap();
        let err = orrery_nn::compare::max_rel_err(&got, &want).unwrap();
        assert!(err <= 1e-5, "round {round}: {err:.3e}");
    }
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
}

#[test]
fn forward_text_matches_reference() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let inputs = testdata("qwen_tiny/case.safetensors");
    forward("text", &testdata("qwen_tiny"), &inputs, &out);
    let err = rel_err(&out, "prompt_embeds", &inputs, "prompt_embeds");
    assert!(err <= 1e-5, "{err:.3e}");
}

#[test]
fn forward_text_from_token_ids_needs_no_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("decoder_only");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(testdata("qwen_tiny").join(f), model.join(f)).unwrap();
    }
    let inputs = testdata("qwen_tiny/case.safetensors");
    let out = dir.path().join("out.safetensors");
    forward("text", &model, &inputs, &out);
    let err = rel_err(&out, "prompt_embeds", &inputs, "prompt_embeds");
    assert!(err <= 1e-5, "{err:.3e}");
}

#[test]
fn embed_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let model = testdata("qwen_tiny");
    let long = "word ".repeat(600);
    let cases = [
        (model.clone(), "  ", "empty prompt"),
        (model.clone(), long.as_str(), "too long"),
        (testdata("dit_tiny"), "a prompt", "tokenizer.json"),
    ];
    for (model, prompt, expect) in cases {
        assert_fails_with(
            &[
                "embed",
                "--model",
                model.to_str().unwrap(),
                "--prompt",
                prompt,
                "--dtype",
                "f32",
                "--out",
                out.to_str().unwrap(),
            ],
            expect,
        );
        assert!(!out.exists());
    }
}

//! `orrery forward dit --lora` and `orrery lora fuse` on the tiny DiT with the diffusers-built LoRA fixture
//! (testdata/dit_lora, `tools/oracles/dit_lora.py`); tolerance max abs error <= 1e-5 x max|reference|.

mod common;

use common::{assert_fails_with, rel_err, run_ok, testdata};

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn forward_dit_with_lora_reproduces_diffusers_at_two_scales() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = testdata("dit_lora/case.safetensors");
    let lora = testdata("dit_lora/pytorch_lora_weights.safetensors");
    let model = testdata("dit_tiny");
    for (lora_arg, reference) in [
        (format!("{}", lora.display()), "velocity_scale1"),
        (format!("{}:0.5", lora.display()), "velocity_scale0_5"),
    ] {
        let out = dir.path().join(format!("{reference}.safetensors"));
        run_ok(&[
            "forward",
            "dit",
            "--model",
            path(&model),
            "--inputs",
            path(&inputs),
            "--out",
            path(&out),
            "--lora",
            &lora_arg,
        ]);
        let err = rel_err(&out, "velocity", &inputs, reference);
        assert!(err <= 1e-5, "{reference}: {err:.3e}");
    }
}

#[test]
fn lora_fuse_writes_a_model_that_gives_the_adapted_output() {
    let dir = tempfile::tempdir().unwrap();
    let fused_dir = dir.path().join("fused");
    std::fs::create_dir(&fused_dir).unwrap();
    std::fs::copy(
        testdata("dit_tiny/config.json"),
        fused_dir.join("config.json"),
    )
    .unwrap();
    let fused = fused_dir.join("fused.safetensors");
    let lora = testdata("dit_lora/pytorch_lora_weights.safetensors");
    // Two adapters at 0.25 each: the reference's scale 0.5.
    let half = format!("{}:0.25", lora.display());
    run_ok(&[
        "lora",
        "fuse",
        "--model",
        path(&testdata("dit_tiny")),
        "--lora",
        &half,
        "--lora",
        &half,
        "--out",
        path(&fused),
    ]);
    let inputs = testdata("dit_lora/case.safetensors");
    let out = dir.path().join("out.safetensors");
    run_ok(&[
        "forward",
        "dit",
        "--model",
        path(&fused_dir),
        "--inputs",
        path(&inputs),
        "--out",
        path(&out),
    ]);
    let err = rel_err(&out, "velocity", &inputs, "velocity_scale0_5");
    assert!(err <= 1e-5, "{err:.3e}");
}

#[test]
fn bad_adapters_fail_with_a_message_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    let bytes = std::fs::read(testdata("dit_lora/pytorch_lora_weights.safetensors")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let out = dir.path().join("out.safetensors");
    let model = testdata("dit_tiny");
    let inputs = testdata("dit_lora/case.safetensors");
    // A key that targets no weight of the model (block 7 of a 2-block DiT), and B of rank 3 against A of rank 4.
    let lora =
        orrery_nn::Checkpoint::open(testdata("dit_lora/pytorch_lora_weights.safetensors")).unwrap();
    let mut tensors: std::collections::HashMap<String, candle_core::Tensor> = lora
        .tensors()
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                lora.load(&t.name, &candle_core::Device::Cpu).unwrap(),
            )
        })
        .collect();
    let mut nowhere = tensors.clone();
    for half in ["down", "up"] {
        let key = format!("transformer.transformer_blocks.1.attn2.to_v.lora.{half}.weight");
        let t = nowhere.remove(&key).unwrap();
        nowhere.insert(key.replace("blocks.1", "blocks.7"), t);
    }
    let nowhere_path = dir.path().join("nowhere.safetensors");
    candle_core::safetensors::save(&nowhere, &nowhere_path).unwrap();
    let b = "transformer.transformer_blocks.0.ff.net.0.proj.lora_B.weight";
    let narrowed = tensors[b].narrow(1, 0, 3).unwrap().contiguous().unwrap();
    tensors.insert(b.to_owned(), narrowed);
    let rank_path = dir.path().join("rank.safetensors");
    candle_core::safetensors::save(&tensors, &rank_path).unwrap();
    let cases = [
        (
            nowhere_path.display().to_string(),
            "transformer.transformer_blocks.7.attn2.to_v",
        ),
        (rank_path.display().to_string(), "rank mismatch"),
        (truncated.display().to_string(), "truncated"),
        ("missing.safetensors".to_owned(), "missing.safetensors"),
        // A base model is not an adapter.
        (
            testdata("dit_tiny/official.safetensors")
                .display()
                .to_string(),
            "no LoRA tensors",
        ),
        (format!("{}:abc", truncated.display()), "abc"),
    ];
    for (lora, expect) in &cases {
        assert_fails_with(
            &[
                "forward",
                "dit",
                "--model",
                path(&model),
                "--inputs",
                path(&inputs),
                "--out",
                path(&out),
                "--lora",
                lora,
            ],
            expect,
        );
        assert_fails_with(
            &[
                "lora",
                "fuse",
                "--model",
                path(&model),
                "--lora",
                lora,
                "--out",
                path(&out),
            ],
            expect,
        );
        assert!(!out.exists());
    }
}

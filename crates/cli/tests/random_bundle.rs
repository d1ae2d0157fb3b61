//! `orrery random-bundle`: a bundle of random weights in the released layout that `orrery generate` runs from its
//! prompt embeddings, the same for the same seed.

mod common;

use common::{assert_fails_with, run_ok, testdata};

#[test]
fn a_tiny_random_bundle_generates_from_its_prompt_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let b = bundle.to_str().unwrap();
    run_ok(&["random-bundle", "--config", "tiny", "--out", b]);
    for file in [
        "transformer/config.json",
        "transformer/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ] {
        assert!(bundle.join(file).is_file(), "{file}");
    }
    let again = dir.path().join("again");
    run_ok(&[
        "random-bundle",
        "--config",
        "tiny",
        "--out",
        again.to_str().unwrap(),
    ]);
    let weights = |root: &std::path::Path| {
        std::fs::read(root.join("transformer/diffusion_pytorch_model.safetensors")).unwrap()
    };
    assert_eq!(weights(&bundle), weights(&again), "one seed, one bundle");
    let embeds = bundle.join("prompt_embeds.safetensors");
    let out = dir.path().join("out.mp4");
    // No orrery_sampling.json: the released 2B's defaults (Karras, guidance 7, the official negative prompt) at a
    // small size.
    run_ok(&[
        "generate",
        "--model",
        b,
        "--prompt",
        "noise",
        "--prompt-embeds",
        embeds.to_str().unwrap(),
        "--frames",
        "9",
        "--size",
        "64x64",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    let video = orrery_media::read_video(&out).unwrap();
    assert_eq!((video.frames.len(), video.width()), (9, 64));
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(
        (record["dtype"].as_str(), record["guidance"].as_f64()),
        (Some("bf16"), Some(7.0))
    );
    assert_fails_with(&["random-bundle", "--config", "3b", "--out", b], "3b");
}

#[test]
fn a_random_text_encoder_embeds_prompts_for_the_dit() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let b = bundle.to_str().unwrap();
    let tokenizer = testdata("qwen_tokenizer/tokenizer.json");
    let t = tokenizer.to_str().unwrap();
    run_ok(&[
        "random-bundle",
        "--config",
        "tiny",
        "--out",
        b,
        "--text-encoder",
        t,
    ]);
    let out = dir.path().join("out.mp4");
    let o = out.to_str().unwrap();
    let flags = [
        "--frames", "9", "--size", "64x64", "--steps", "1", "--out", o,
    ];
    let mut args = vec!["generate", "--model", b, "--prompt", "a ball rolls"];
    args.extend(flags);
    run_ok(&args);
    args.push("--text-encoder-8bit");
    run_ok(&args);
    assert_eq!(orrery_media::read_video(&out).unwrap().frames.len(), 9);
    let missing = dir.path().join("none.json");
    assert_fails_with(
        &[
            "random-bundle",
            "--config",
            "tiny",
            "--out",
            b,
            "--text-encoder",
            missing.to_str().unwrap(),
        ],
        "none.json",
    );
}

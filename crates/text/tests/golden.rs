//! The Reason1 embedder against transformers: a tiny random Qwen2.5-VL (tools/oracles/qwen.py) and the real Qwen
//! tokenizer (tools/oracles/qwen_tokenizer.py). Tolerance: max abs error <= 1e-5 x max|reference| in float32.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use orrery_nn::Checkpoint;
use orrery_text::tokenizer::{render_template, PROMPT_TOKENS};
use orrery_text::{Overflow, PromptCache, PromptTokenizer, Reason1Embedder, TextWeights};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

fn load(file: &str, name: &str) -> Tensor {
    Checkpoint::open(testdata(file))
        .unwrap()
        .load(name, &Device::Cpu)
        .unwrap()
}

fn rel_err(a: &Tensor, reference: &Tensor) -> f64 {
    orrery_nn::compare::max_rel_err(a, reference).unwrap()
}

/// A model folder holding the tiny model under `weights` as `model.safetensors`.
fn tiny_folder(weights: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(testdata("qwen_tiny").join(name), dir.path().join(name)).unwrap();
    }
    std::fs::copy(
        testdata("qwen_tiny").join(weights),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    dir
}

#[test]
fn every_hidden_state_and_the_embedding_match_in_both_layouts() {
    for weights in ["model.safetensors", "language_model_layout.safetensors"] {
        let dir = tiny_folder(weights);
        let e = Reason1Embedder::open(dir.path(), DType::F32, &Device::Cpu).unwrap();
        let ids = load("qwen_tiny/case.safetensors", "input_ids");
        let states = e.model.hidden_states(&ids).unwrap();
        assert_eq!(states.len(), 4);
        for (i, s) in states.iter().enumerate() {
            let want = load("qwen_tiny/case.safetensors", &format!("hidden_state_{i}"));
            let err = rel_err(s, &want);
            assert!(err <= 1e-5, "{weights}: hidden state {i}: {err:.3e}");
        }
        let embeds = e.embed_ids(&ids).unwrap();
        let err = rel_err(
            &embeds,
            &load("qwen_tiny/case.safetensors", "prompt_embeds"),
        );
        let err64 = rel_err(
            &embeds,
            &load("qwen_tiny/case.safetensors", "prompt_embeds_f64"),
        );
        println!("{weights}: prompt_embeds vs f32 {err:.2e}, vs f64 {err64:.2e}");
        assert!(
            err <= 1e-5 && err64 <= 1e-5,
            "{weights}: {err:.3e} / {err64:.3e}"
        );
    }
}

#[test]
fn prompts_embed_end_to_end_through_template_and_padding() {
    let dir = tiny_folder("model.safetensors");
    let e = Reason1Embedder::open(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let ids = load("qwen_tiny/embed_case.safetensors", "input_ids");
    let want = load("qwen_tiny/embed_case.safetensors", "prompt_embeds");
    let prompts = [
        "A robot arm picks up a red cube and places it on a blue plate.",
        "The video captures a snowy intersection at night; a traffic light turns from red to green.\n\nCars wait.",
    ];
    for (i, prompt) in prompts.iter().enumerate() {
        let got_ids = e
            .tokenizer
            .prompt_ids(prompt, PROMPT_TOKENS, Overflow::Error)
            .unwrap();
        let want_ids: Vec<u32> = ids
            .get(i)
            .unwrap()
            .to_dtype(DType::U32)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(got_ids, want_ids, "ids of prompt {i}");
        let got = e.embed(prompt, Overflow::Error).unwrap();
        assert_eq!(got.dims(), &[1, 512, 3 * 64]);
        let err = rel_err(&got.squeeze(0).unwrap(), &want.get(i).unwrap());
        println!("prompt {i}: {err:.2e}");
        assert!(err <= 1e-5, "prompt {i}: {err:.3e}");
    }
}

#[test]
fn qwen_tokenizer_gives_the_reference_ids_for_the_template() {
    let tok = PromptTokenizer::from_dir(&testdata("qwen_tokenizer")).unwrap();
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(testdata("qwen_tokenizer/cases.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(tok.pad_id() as u64, cases["pad_id"].as_u64().unwrap());
    assert_eq!(tok.pad_id(), 151_643);
    for case in cases["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        assert_eq!(render_template(prompt), case["text"].as_str().unwrap());
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let ids = tok.prompt_ids(prompt, 512, Overflow::Error).unwrap();
        assert_eq!(&ids[..want.len()], &want[..], "{prompt:?}");
        assert!(ids[want.len()..].iter().all(|&i| i == 151_643));
        assert_eq!(ids[0], 151_644); // <|im_start|>
    }
}

#[test]
fn bad_prompts_and_folders_are_explained() {
    let tok = PromptTokenizer::from_dir(&testdata("qwen_tokenizer")).unwrap();
    let msg = tok
        .prompt_ids("   ", 512, Overflow::Error)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("empty prompt"), "{msg}");
    let long = "word ".repeat(600);
    let msg = tok
        .prompt_ids(&long, 512, Overflow::Error)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("too long") && msg.contains("512"), "{msg}");
    let cut = tok.prompt_ids(&long, 512, Overflow::Truncate).unwrap();
    assert_eq!(cut.len(), 512);
    assert_ne!(cut[511], 151_643);

    // Missing tokenizer.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        testdata("qwen_tiny/config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    std::fs::copy(
        testdata("qwen_tiny/model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let msg = Reason1Embedder::open(dir.path(), DType::F32, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("tokenizer.json"), "{msg}");
    // Weights in a layout that is not a Qwen2 decoder.
    for name in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(testdata("qwen_tiny").join(name), dir.path().join(name)).unwrap();
    }
    std::fs::copy(
        testdata("dit_tiny/official.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let msg = Reason1Embedder::open(dir.path(), DType::F32, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("no Qwen2 decoder"), "{msg}");
}

#[test]
fn cache_returns_what_was_stored_and_only_for_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let cache = PromptCache::new(dir.path()).unwrap();
    let t = Tensor::arange(0f32, 12., &Device::Cpu)
        .unwrap()
        .reshape((1, 3, 4))
        .unwrap();
    assert!(cache.get("enc", "a prompt", &Device::Cpu).is_none());
    cache.put("enc", "a prompt", &t).unwrap();
    let back = cache.get("enc", "a prompt", &Device::Cpu).unwrap();
    assert_eq!(rel_err(&back, &t), 0.0);
    assert!(cache
        .get("other-encoder", "a prompt", &Device::Cpu)
        .is_none());
    assert!(cache.get("enc", "another prompt", &Device::Cpu).is_none());
}

#[test]
fn bfloat16_stays_close_to_float32() {
    let dir = tiny_folder("model.safetensors");
    let f32e = Reason1Embedder::open(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let bf16e = Reason1Embedder::open(dir.path(), DType::BF16, &Device::Cpu).unwrap();
    assert_ne!(f32e.fingerprint_str(), bf16e.fingerprint_str());
    let ids = load("qwen_tiny/case.safetensors", "input_ids");
    let a = f32e.embed_ids(&ids).unwrap();
    let b = bf16e.embed_ids(&ids).unwrap();
    assert_eq!(b.dtype(), DType::BF16);
    let err = rel_err(&b, &a);
    println!("bf16 vs f32: {err:.2e}");
    assert!(err < 0.1, "{err:.3e}");
}

#[test]
fn eight_bit_weights_stay_close_to_the_reference_and_are_cached_apart() {
    let dir = tiny_folder("model.safetensors");
    let open = |dtype, weights| {
        Reason1Embedder::open_with_tokenizer(dir.path(), dir.path(), dtype, weights, &Device::Cpu)
            .unwrap()
    };
    let full = open(DType::F32, TextWeights::Full);
    let q8 = open(DType::F32, TextWeights::Q8);
    assert_eq!(q8.model.weights(), TextWeights::Q8);
    assert_ne!(full.fingerprint_str(), q8.fingerprint_str());
    assert!(
        q8.fingerprint_str().ends_with("-Q8_0"),
        "{}",
        q8.fingerprint_str()
    );
    let ids = load("qwen_tiny/case.safetensors", "input_ids");
    let want = load("qwen_tiny/case.safetensors", "prompt_embeds");
    let got = q8.embed_ids(&ids).unwrap();
    let err = rel_err(&got, &want);
    let bf16_err = rel_err(
        &open(DType::BF16, TextWeights::Full)
            .embed_ids(&ids)
            .unwrap(),
        &want,
    );
    let q8_bf16 = open(DType::BF16, TextWeights::Q8).embed_ids(&ids).unwrap();
    assert_eq!(q8_bf16.dtype(), DType::BF16);
    let q8_bf16_err = rel_err(&q8_bf16, &want);
    println!(
        "against the reference: Q8 {err:.2e}, bf16 {bf16_err:.2e}, Q8 in bf16 {q8_bf16_err:.2e}"
    );
    // Q8_0 rounds each weight to 1/254 of its block's largest magnitude: about what bf16 costs.
    assert!(err > 1e-6, "8-bit weights changed nothing: {err:.3e}");
    assert!(err < 3e-2, "{err:.3e}");
    assert!(q8_bf16_err < 0.1, "{q8_bf16_err:.3e}");
}

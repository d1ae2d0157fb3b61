//! `generate`'s device-memory flags on a tiny released-layout bundle: blocks kept in host memory change nothing;
//! tiled decoding changes the pixels a little and the latents not at all; the 8-bit text encoder changes the
//! embedding a little, and its embeddings are cached apart from the full encoder's.

mod common;

use std::path::Path;

use common::{assert_fails_with, generate, run_ok, tiny_reason1_bundle};

const SAMPLING: &str = r#"{"schedule": 5.0, "steps": 2, "guidance": 2.0, "cond_timestep": 0.1, "frames": 9, "width": 64, "height": 64, "fps": 16}"#;

fn psnr(a: &[Vec<u8>], b: &[Vec<u8>]) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for (x, y) in a.iter().zip(b) {
        for (p, q) in x.iter().zip(y) {
            sum += (f64::from(*p) - f64::from(*q)).powi(2);
            n += 1;
        }
    }
    orrery_eval::metrics::psnr_of_mse(sum / n as f64)
}

#[test]
fn offloaded_blocks_change_nothing_and_tiles_change_only_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    tiny_reason1_bundle(&bundle, None, SAMPLING);
    let run = |name: &str, extra: &[&str]| {
        let mut args = vec!["--dtype", "f32"];
        args.extend(extra);
        generate(&bundle, &dir.path().join(format!("{name}.mp4")), &args)
    };
    let plain = run("plain", &[]);
    for n in ["1", "all"] {
        let offloaded = run(&format!("offload-{n}"), &["--offload-blocks", n]);
        assert_eq!(plain.0, offloaded.0, "--offload-blocks {n}: latents");
        assert_eq!(plain.1, offloaded.1, "--offload-blocks {n}: frames");
    }
    // 64 x 64 pixels are 8 x 8 latent pixels. One tile as large as the frame decodes as the whole frame does; tiles
    // of 4 overlapping by 1 cut each frame into 9, whose borders see less context (on random weights with a
    // receptive field wider than a tile, much less: only the scale is checked).
    let one_tile = run("one-tile", &["--vae-tile", "16"]);
    assert_eq!(plain.0, one_tile.0, "tiling must not touch the latents");
    let off_by = |a: &[Vec<u8>], b: &[Vec<u8>]| {
        a.iter()
            .zip(b)
            .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| p.abs_diff(*q)))
            .max()
            .unwrap_or(0)
    };
    assert!(off_by(&plain.1, &one_tile.1) <= 1);
    let tiled = run("tiled", &["--vae-tile", "4"]);
    let record = std::fs::read_to_string(dir.path().join("tiled.json")).unwrap();
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["vae_tile"], 4);
    assert_eq!(plain.0, tiled.0, "tiling must not touch the latents");
    let db = psnr(&plain.1, &tiled.1);
    println!("9 tiles against whole-frame decoding: {db:.1} dB");
    assert!(off_by(&plain.1, &tiled.1) > 1, "tiles made no difference");
    assert!(db > 10.0, "{db:.1} dB");
    for bad in ["1", "0", "x"] {
        assert_fails_with(
            &[
                "generate",
                "--model",
                bundle.to_str().unwrap(),
                "--prompt",
                "a ball",
                "--out",
                dir.path().join("bad.mp4").to_str().unwrap(),
                "--vae-tile",
                bad,
            ],
            "--vae-tile",
        );
    }
}

/// `orrery embed` of `prompt` with `extra` flags, as stored bytes.
fn embed(text: &Path, out: &Path, extra: &[&str]) -> Vec<u8> {
    let mut args = vec![
        "embed",
        "--model",
        text.to_str().unwrap(),
        "--prompt",
        "a red ball rolls off a table",
        "--out",
        out.to_str().unwrap(),
        "--dtype",
        "f32",
    ];
    args.extend(extra);
    run_ok(&args);
    orrery_nn::Checkpoint::open(out)
        .unwrap()
        .bytes("prompt_embeds")
        .unwrap()
        .into_owned()
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn the_eight_bit_text_encoder_is_close_and_cached_apart() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    tiny_reason1_bundle(&bundle, None, SAMPLING);
    let text = bundle.join("text_encoder");
    let cache = dir.path().join("cache");
    let cache = cache.to_str().unwrap();
    let full = embed(
        &text,
        &dir.path().join("full.safetensors"),
        &["--cache", cache],
    );
    let q8_flags = ["--cache", cache, "--text-encoder-8bit"];
    let q8 = embed(&text, &dir.path().join("q8.safetensors"), &q8_flags);
    assert_ne!(full, q8, "the full encoder's cached embedding was returned");
    let again = embed(&text, &dir.path().join("q8-again.safetensors"), &q8_flags);
    assert_eq!(q8, again, "the 8-bit embedding is cached under its own key");
    let (f, q) = (floats(&full), floats(&q8));
    let scale = f.iter().fold(0f32, |m, x| m.max(x.abs()));
    let err = f
        .iter()
        .zip(&q)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale;
    println!("8-bit against full text encoder: max error {err:.2e} of the largest value");
    assert!(err < 3e-2, "{err:.3e}");

    let plain = generate(&bundle, &dir.path().join("plain.mp4"), &["--dtype", "f32"]);
    let q8_flags = ["--dtype", "f32", "--text-encoder-8bit"];
    let eight_bit = generate(&bundle, &dir.path().join("q8.mp4"), &q8_flags);
    assert_ne!(plain.0, eight_bit.0, "the 8-bit encoder changed nothing");
    let record = |name: &str| -> serde_json::Value {
        let path = dir.path().join(name).with_extension("json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    assert_eq!(record("q8.mp4")["text_encoder_weights"], "Q8_0");
    assert!(record("plain.mp4").get("text_encoder_weights").is_none());
}

//! `orrery forward vae-encode|vae-decode` against the reference fixture, and `orrery vae roundtrip` on a sample.

mod common;

use common::{assert_fails_with, forward, rel_err, run_ok, testdata};

#[test]
fn forward_vae_encode_and_decode_match_reference() {
    let dir = tempfile::tempdir().unwrap();
    let model = testdata("vae_tiny");
    let case = testdata("vae_tiny/case_9f.safetensors");
    for (cmd, out_name, ref_name) in [
        ("vae-encode", "latent", "latent"),
        ("vae-decode", "video", "decoded"),
    ] {
        let out = dir.path().join(format!("{cmd}.safetensors"));
        forward(cmd, &model, &case, &out);
        let err = rel_err(&out, out_name, &case, ref_name);
        assert!(err <= 1e-5, "{cmd}: {err:.3e}");
    }
}

#[test]
fn roundtrip_writes_a_video_and_reports_psnr() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("recon.mp4");
    let run = run_ok(&[
        "vae",
        "roundtrip",
        testdata("media/video2world_nemo_2b.mp4").to_str().unwrap(),
        out.to_str().unwrap(),
        "--model",
        testdata("vae_tiny").to_str().unwrap(),
        "--size",
        "64x48",
        "--frames",
        "11",
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("9 frames 64x48") && stdout.contains("PSNR"),
        "{stdout}"
    );
    let video = orrery_media::read_video(&out).unwrap();
    assert_eq!(
        (video.frames.len(), video.width(), video.height()),
        (9, 64, 48)
    );

    assert_fails_with(
        &[
            "vae",
            "roundtrip",
            testdata("media/video2world_nemo_2b.mp4").to_str().unwrap(),
            out.to_str().unwrap(),
            "--model",
            testdata("vae_tiny").to_str().unwrap(),
            "--size",
            "60x48",
        ],
        "multiples of 8",
    );
}

#[test]
fn bench_scores_the_round_trip_of_held_out_worlds_by_colour() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vae.json");
    let run = run_ok(&[
        "vae",
        "bench",
        "--clips",
        "2",
        "--frames",
        "9",
        "--seed",
        "4242",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("objects found (%) by colour") && stdout.contains("nearest colour"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let summary = &report["summary"];
    assert_eq!(summary["clips"], 2);
    // The embedded VAE keeps the flat worlds well (about 30 dB); a broken round trip scores far below.
    let pooled = summary["pooled_psnr"].as_f64().unwrap();
    assert!(pooled > 24.0, "pooled PSNR {pooled}");
    let by_color = summary["found_rate_by_color"].as_object().unwrap();
    assert!(!by_color.is_empty());
    assert!(by_color
        .values()
        .all(|r| (0.0..=1.0).contains(&r.as_f64().unwrap())));
    assert_eq!(report["clips"].as_array().unwrap().len(), 2);
    let codes = &report["latent_codes"];
    let colours = codes["colours"].as_array().unwrap();
    assert!(!colours.is_empty());
    assert_eq!(codes["distances"].as_array().unwrap().len(), colours.len());

    // The embedded VAE halves the frames in time: 1 + 2k.
    assert_fails_with(&["vae", "bench", "--clips", "1", "--frames", "8"], "1 + 2k");
    assert_fails_with(
        &["vae", "bench", "--clips", "1", "--size", "60x64"],
        "multiples of 8",
    );
}

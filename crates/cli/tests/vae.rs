//! `orrery forward vae-encode|vae-decode` against the reference fixture, and `orrery vae roundtrip` on a sample.

mod common;

use common::{assert_fails_with, forward, orrery, rel_err, testdata};

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
    let run = orrery(&[
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
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
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

//! The `orrery` binary end to end: inspect and convert every checkpoint format, media commands, and clear errors
//! with a non-zero exit on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

fn orrery(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orrery"))
        .args(args)
        .output()
        .expect("run orrery")
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// `orrery inspect --json` lists the names, dtypes and shapes PyTorch reports.
fn inspect_matches_pytorch(path: &Path, key: &str, extra: &[&str]) {
    let mut args = vec![os("inspect"), path.as_os_str(), os("--json")];
    args.extend(extra.iter().map(|a| os(a)));
    let out = orrery(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(testdata("checkpoint/expected.json")).unwrap(),
    )
    .unwrap();
    let want = expected[key]["tensors"].as_array().unwrap();
    let got_tensors = got["tensors"].as_array().unwrap();
    assert_eq!(got_tensors.len(), want.len(), "{key}");
    let mut total = 0u64;
    for (g, w) in got_tensors.iter().zip(want) {
        for field in ["name", "dtype", "shape"] {
            assert_eq!(g[field], w[field], "{key}: {field}");
        }
        total += w["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .product::<u64>();
    }
    assert_eq!(got["parameters"].as_u64().unwrap(), total);
}

#[test]
fn inspect_every_format() {
    inspect_matches_pytorch(&testdata("checkpoint/f32_extras.pt"), "f32_extras.pt", &[]);
    inspect_matches_pytorch(
        &testdata("checkpoint/bf16_nested.pt"),
        "bf16_nested.pt",
        &[],
    );
    inspect_matches_pytorch(
        &testdata("checkpoint/bf16_nested.pt"),
        "bf16_nested.pt#state_dict",
        &["--key", "state_dict"],
    );
    inspect_matches_pytorch(
        &testdata("checkpoint/plain.safetensors"),
        "plain.safetensors",
        &[],
    );
    inspect_matches_pytorch(&testdata("checkpoint/sharded"), "sharded", &[]);
}

#[test]
fn inspect_table_shows_total_and_skipped_entries() {
    let out = orrery(&[
        os("inspect"),
        testdata("checkpoint/f32_extras.pt").as_os_str(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("net.blocks.0.self_attn.q_proj.weight  float32   [8, 8]"),
        "{text}"
    );
    assert!(text.contains("7 tensors, 106 parameters"), "{text}");
    assert!(
        text.contains("skipped 4 non-tensor entries") && text.contains("_io.BytesIO"),
        "{text}"
    );
}

#[test]
fn convert_then_inspect_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("converted.safetensors");
    let out = orrery(&[
        os("convert"),
        testdata("checkpoint/f32_extras.pt").as_os_str(),
        out_path.as_os_str(),
        os("--strip-prefix"),
        os("net."),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = orrery(&[os("inspect"), out_path.as_os_str()]);
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(
        text.contains("blocks.0.self_attn.q_proj.weight") && !text.contains("net."),
        "{text}"
    );
    assert!(text.contains("7 tensors"), "{text}");
}

#[test]
fn bad_checkpoints_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.pt");
    let bytes = std::fs::read(testdata("checkpoint/f32_extras.pt")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let image_as_pt = testdata("media/droid_episode_000408.png");
    let cases: [(&Path, &str); 3] = [
        (&truncated, "corrupted or truncated"),
        (&image_as_pt, "PNG image"),
        (Path::new("/nonexistent/model.pt"), "/nonexistent/model.pt"),
    ];
    for (path, want) in cases {
        let out = orrery(&[os("inspect"), path.as_os_str()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", path.display());
        assert!(
            err.contains(want) && !err.contains("panicked"),
            "{}: {err}",
            path.display()
        );
        // The cause is said once, not again by the error chain.
        assert!(
            err.matches("(os error").count() <= 1,
            "{}: {err}",
            path.display()
        );
    }
    // A failed conversion leaves an existing output untouched.
    let existing = dir.path().join("keep.safetensors");
    std::fs::write(&existing, b"precious").unwrap();
    let out = orrery(&[os("convert"), truncated.as_os_str(), existing.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read(&existing).unwrap(), b"precious");
}

#[test]
fn media_info_and_transcode() {
    let out = orrery(&[
        os("media"),
        os("info"),
        testdata("media/video2world_nemo_2b.mp4").as_os_str(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1280x704, 16.000 fps, 93 frames"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mp4 = dir.path().join("small.mp4");
    let out = orrery(&[
        os("media"),
        os("transcode"),
        testdata("media/urban_freeway_front_tele_30fov.mp4").as_os_str(),
        mp4.as_os_str(),
        os("--size"),
        os("128x64"),
        os("--fps"),
        os("16"),
        os("--frames"),
        os("9"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = orrery(&[os("media"), os("info"), mp4.as_os_str()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("128x64, 16.000 fps, 9 frames"));

    let bad = orrery(&[
        os("media"),
        os("transcode"),
        mp4.as_os_str(),
        dir.path().join("x.gif").as_os_str(),
        os("--size"),
        os("0x10"),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("0x10"));

    // Side by side: the 9-frame clip beside an image, which holds its one frame.
    let tiled = dir.path().join("tiled.mp4");
    let out = orrery(&[
        os("media"),
        os("tile"),
        mp4.as_os_str(),
        testdata("media/droid_episode_000408.png").as_os_str(),
        os("--out"),
        tiled.as_os_str(),
        os("--size"),
        os("64x32"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = orrery(&[os("media"), os("info"), tiled.as_os_str()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("128x32, 16.000 fps, 9 frames"));
    let bad = orrery(&[
        os("media"),
        os("tile"),
        mp4.as_os_str(),
        dir.path().join("missing.mp4").as_os_str(),
        os("--out"),
        tiled.as_os_str(),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("missing.mp4"));
}

#[test]
fn bad_media_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let video = std::fs::read(testdata("media/video2world_nemo_2b.mp4")).unwrap();
    let truncated = dir.path().join("truncated.mp4");
    std::fs::write(&truncated, &video[..video.len() - 100]).unwrap();
    let png_as_mp4 = dir.path().join("picture.mp4");
    std::fs::copy(testdata("media/droid_episode_000408.png"), &png_as_mp4).unwrap();
    let jpeg = std::fs::read(testdata("media/robot_welding.jpg")).unwrap();
    let cut_jpeg = dir.path().join("cut.jpg");
    std::fs::write(&cut_jpeg, &jpeg[..jpeg.len() / 2]).unwrap();
    let out_mp4 = dir.path().join("out.mp4");
    let cases: [(Vec<&std::ffi::OsStr>, &str); 3] = [
        (
            vec![os("media"), os("info"), truncated.as_os_str()],
            "truncated",
        ),
        (
            vec![os("media"), os("info"), png_as_mp4.as_os_str()],
            "PNG image",
        ),
        (
            vec![
                os("media"),
                os("transcode"),
                cut_jpeg.as_os_str(),
                out_mp4.as_os_str(),
            ],
            "truncated file",
        ),
    ];
    for (args, want) in cases {
        let out = orrery(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(want) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    assert!(!out_mp4.exists());
}

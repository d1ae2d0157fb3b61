//! `orrery physics generate|preview` end to end, and their errors.

mod common;

use common::{assert_fails_with, run_ok};

#[test]
fn generate_writes_shards_and_preview_writes_pictures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("worlds");
    run_ok(&[
        "physics",
        "generate",
        "--out",
        out.to_str().unwrap(),
        "--clips",
        "5",
        "--frames",
        "9",
        "--families",
        "fall,collision",
        "--clips-per-shard",
        "2",
        "--seed",
        "3",
    ]);
    let samples: Vec<_> = (0..3)
        .flat_map(|i| {
            orrery_physics::dataset::read_shard(&out.join(format!("shard-{i:06}.tar"))).unwrap()
        })
        .collect();
    assert_eq!(samples.len(), 5);
    assert!(samples[1].key.starts_with("collision_"));
    for ext in ["png", "gif"] {
        let path = dir.path().join(format!("preview.{ext}"));
        run_ok(&[
            "physics",
            "preview",
            "--out",
            path.to_str().unwrap(),
            "--clips",
            "1",
            "--frames",
            "9",
        ]);
        let image = orrery_media::read_image(&path).unwrap();
        assert_eq!(
            (image.width(), image.height()),
            if ext == "png" {
                (320, 7 * 64)
            } else {
                (64, 7 * 64)
            }
        );
    }
}

#[test]
fn bad_arguments_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w");
    let o = out.to_str().unwrap();
    assert_fails_with(
        &["physics", "generate", "--out", o, "--clips", "0"],
        "--clips",
    );
    assert_fails_with(
        &[
            "physics", "generate", "--out", o, "--clips", "2", "--size", "63x64",
        ],
        "63x64",
    );
    assert_fails_with(
        &[
            "physics",
            "generate",
            "--out",
            o,
            "--clips",
            "2",
            "--families",
            "fall,juggle",
        ],
        "juggle",
    );
    assert_fails_with(
        &["physics", "preview", "--out", "/tmp/x.bmp"],
        ".png or a .gif",
    );
}

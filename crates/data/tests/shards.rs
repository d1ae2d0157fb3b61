//! Webdataset shards unpack into the official layout and go through the same scan, report and policy.

use std::path::{Path, PathBuf};

use orrery_data::{unpack_shards, ClipSpec, ClipStart, Policy, SkipReason, VideoFolder};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/media")
            .join(name),
    )
    .unwrap()
}

fn shard(path: &Path, entries: &[(&str, Vec<u8>)]) {
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, data.as_slice())
            .unwrap();
    }
    builder.finish().unwrap();
}

#[test]
fn shard_samples_are_scanned_like_folder_files() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("train-000.tar");
    shard(
        &path,
        &[
            ("0001.mp4", fixture("video2world_nemo_2b.mp4")),
            ("0001.txt", b"a teal robot".to_vec()),
            ("0001.json", b"{}".to_vec()),
            ("0002.mp4", fixture("droid_episode_000408.png")),
            ("0002.txt", b"a picture".to_vec()),
            ("0003.mp4", fixture("urban_freeway_front_tele_30fov.mp4")),
        ],
    );
    let out = tmp.path().join("unpacked");
    assert_eq!(unpack_shards(std::slice::from_ref(&path), &out).unwrap(), 3);
    let spec = ClipSpec {
        frames: 5,
        width: 32,
        height: 32,
        fps: 16.0,
        start: ClipStart::First,
    };
    let folder = VideoFolder::scan(&out, spec, Policy::skip_all()).unwrap();
    assert_eq!(folder.len(), 1);
    let clip = folder.clip(0).unwrap();
    assert_eq!(
        (clip.key.as_str(), clip.caption.as_str()),
        ("train-000.0001", "a teal robot")
    );
    assert_eq!(clip.frames.len(), 5);
    let reasons: Vec<&SkipReason> = folder.report().skipped.iter().map(|s| &s.reason).collect();
    assert!(
        matches!(reasons[0], SkipReason::NotAVideo { .. }),
        "{reasons:?}"
    );
    assert!(
        matches!(reasons[1], SkipReason::MissingCaption { .. }),
        "{reasons:?}"
    );

    // A shard cut short is an error naming it, not a panic.
    let bytes = std::fs::read(&path).unwrap();
    let cut: PathBuf = tmp.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let err = unpack_shards(&[cut], &tmp.path().join("cut")).unwrap_err();
    assert!(err.to_string().contains("cut.tar"), "{err}");
    assert!(unpack_shards(&[tmp.path().join("missing.tar")], &tmp.path().join("m")).is_err());
}

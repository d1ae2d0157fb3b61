//! A user's video folder built from the committed fixtures plus broken files: clip sizes and lengths, frame-rate
//! sampling, caption pairing, the skip/refuse policy and its report, determinism.

use std::path::{Path, PathBuf};

use orrery_data::{
    ClipSpec, ClipStart, DataError, OnProblem, Policy, SkipReason, VideoClip, VideoFolder,
};
use orrery_media::resize::resize_to_cover_and_crop;
use orrery_media::VideoReader;

/// 1280x704, 16 fps, 93 frames.
const NEMO: &str = "video2world_nemo_2b.mp4";
/// 1280x720, 30 fps, 128 frames.
const FREEWAY: &str = "urban_freeway_front_tele_30fov.mp4";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/media")
        .join(name)
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Two good videos (one captioned in `metas/`, one beside) and four bad ones, in the official layout.
fn user_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let nemo = std::fs::read(fixture(NEMO)).unwrap();
    write(&d.join("videos/nemo.mp4"), &nemo);
    write(&d.join("metas/nemo.txt"), "  A teal robot on a table.\n");
    // Beside-file loses to metas/ (here both exist for nemo).
    write(&d.join("videos/nemo.txt"), "not this one");
    write(
        &d.join("videos/freeway.mp4"),
        std::fs::read(fixture(FREEWAY)).unwrap(),
    );
    write(
        &d.join("videos/freeway.txt"),
        "A car drives down a freeway.",
    );
    write(&d.join("videos/truncated.mp4"), &nemo[..nemo.len() / 2]);
    write(&d.join("metas/truncated.txt"), "half a video");
    write(
        &d.join("videos/image.mp4"),
        std::fs::read(fixture("droid_episode_000408.png")).unwrap(),
    );
    write(&d.join("metas/image.txt"), "a picture");
    write(&d.join("videos/uncaptioned.mp4"), &nemo);
    write(&d.join("videos/empty_caption.mp4"), &nemo);
    write(&d.join("metas/empty_caption.txt"), " \n\t");
    dir
}

fn spec(frames: usize, start: ClipStart) -> ClipSpec {
    ClipSpec {
        frames,
        width: 64,
        height: 48,
        fps: 16.0,
        start,
    }
}

fn clip_named(folder: &VideoFolder, key: &str) -> VideoClip {
    let i = folder
        .report()
        .used
        .iter()
        .position(|u| u.key == key)
        .unwrap();
    folder.clip(i).unwrap()
}

#[test]
fn clips_have_the_requested_size_length_captions_and_source_frames() {
    let dir = user_folder();
    let folder =
        VideoFolder::scan(dir.path(), spec(17, ClipStart::First), Policy::skip_all()).unwrap();
    assert_eq!(folder.len(), 2);
    let keys: Vec<&str> = folder
        .report()
        .used
        .iter()
        .map(|u| u.key.as_str())
        .collect();
    assert_eq!(keys, ["freeway", "nemo"]);

    let freeway = clip_named(&folder, "freeway");
    let nemo = clip_named(&folder, "nemo");
    for clip in [&freeway, &nemo] {
        assert_eq!(clip.frames.len(), 17);
        assert!(clip
            .frames
            .iter()
            .all(|f| (f.width(), f.height()) == (64, 48)));
    }
    assert_eq!(nemo.caption, "A teal robot on a table.");
    assert_eq!(freeway.caption, "A car drives down a freeway.");
    let used = &folder.report().used;
    assert_eq!(used[1].caption_path, dir.path().join("metas/nemo.txt"));
    assert_eq!(used[0].caption_path, dir.path().join("videos/freeway.txt"));
    assert_eq!(
        (used[0].fps, used[0].frame_count, used[0].frames_at_fps),
        (30.0, 128, 69)
    );

    // 30 fps -> 16 fps: the latest source frame at or before each tick k / 16 s.
    assert_eq!(
        freeway.source_indices,
        [0, 1, 3, 5, 7, 9, 11, 13, 15, 16, 18, 20, 22, 24, 26, 28, 30]
    );
    // 16 fps -> 16 fps: consecutive frames.
    assert_eq!(nemo.source_indices, (0..17).collect::<Vec<_>>());

    // Each clip frame is its source frame, resized to cover and centre-cropped.
    let mut reader = VideoReader::open(&dir.path().join("videos/freeway.mp4")).unwrap();
    for i in 0..=5 {
        let frame = reader.next_frame().unwrap().unwrap();
        if let Some(k) = freeway.source_indices.iter().position(|&s| s == i) {
            assert_eq!(
                freeway.frames[k],
                resize_to_cover_and_crop(&frame, 64, 48).unwrap(),
                "frame {i}"
            );
        }
    }
}

#[test]
fn bad_files_are_skipped_with_named_reasons() {
    let dir = user_folder();
    let folder =
        VideoFolder::scan(dir.path(), spec(17, ClipStart::First), Policy::skip_all()).unwrap();
    let skipped: Vec<(String, &SkipReason)> = folder
        .report()
        .skipped
        .iter()
        .map(|s| {
            (
                s.video.file_name().unwrap().to_string_lossy().into_owned(),
                &s.reason,
            )
        })
        .collect();
    let names: Vec<&str> = skipped.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "empty_caption.mp4",
            "image.mp4",
            "truncated.mp4",
            "uncaptioned.mp4"
        ]
    );
    assert_eq!(
        skipped[0].1,
        &SkipReason::EmptyCaption {
            path: dir.path().join("metas/empty_caption.txt")
        }
    );
    assert!(
        matches!(skipped[1].1, SkipReason::NotAVideo { found } if found.contains("PNG")),
        "{:?}",
        skipped[1].1
    );
    assert!(
        matches!(skipped[2].1, SkipReason::Unreadable { .. }),
        "{:?}",
        skipped[2].1
    );
    assert_eq!(
        skipped[3].1,
        &SkipReason::MissingCaption {
            looked_in: vec![
                dir.path().join("metas/uncaptioned.txt"),
                dir.path().join("videos/uncaptioned.txt")
            ]
        }
    );
    let text = folder.report().to_string();
    assert!(text.starts_with("2 videos used, 4 skipped"), "{text}");
    assert!(text.contains("truncated.mp4"), "{text}");
}

#[test]
fn the_refuse_policy_names_the_first_bad_file() {
    let dir = user_folder();
    let err = VideoFolder::scan(dir.path(), spec(17, ClipStart::First), Policy::refuse_all())
        .unwrap_err();
    match &err {
        DataError::Refused { path, reason } => {
            assert_eq!(path, &dir.path().join("videos/empty_caption.mp4"));
            assert!(matches!(reason, SkipReason::EmptyCaption { .. }));
        }
        other => panic!("expected a refusal, got {other}"),
    }
    assert!(err.to_string().contains("empty_caption.mp4"), "{err}");

    std::fs::remove_file(dir.path().join("videos/empty_caption.mp4")).unwrap();
    let err = VideoFolder::scan(dir.path(), spec(17, ClipStart::First), Policy::refuse_all())
        .unwrap_err();
    assert!(
        matches!(
            &err,
            DataError::Refused {
                reason: SkipReason::NotAVideo { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn short_videos_follow_their_own_policy() {
    let dir = user_folder();
    // 81 frames at 16 fps: nemo has 93, freeway 69.
    let lenient = Policy {
        bad_file: OnProblem::Skip,
        too_short: OnProblem::Skip,
    };
    let folder = VideoFolder::scan(dir.path(), spec(81, ClipStart::First), lenient).unwrap();
    assert_eq!(folder.len(), 1);
    let short = folder
        .report()
        .skipped
        .iter()
        .find(|s| s.reason.is_too_short())
        .unwrap();
    assert_eq!(short.video, dir.path().join("videos/freeway.mp4"));
    assert_eq!(
        short.reason,
        SkipReason::TooShort {
            frames_at_fps: 69,
            needed: 81,
            fps: 16.0
        }
    );

    let strict_on_length = Policy {
        bad_file: OnProblem::Skip,
        too_short: OnProblem::Refuse,
    };
    let err =
        VideoFolder::scan(dir.path(), spec(81, ClipStart::First), strict_on_length).unwrap_err();
    assert!(
        matches!(&err, DataError::Refused { path, reason: SkipReason::TooShort { .. } } if path.ends_with("freeway.mp4")),
        "{err}"
    );

    // Nothing long enough: an error that carries the report.
    let err = VideoFolder::scan(dir.path(), spec(97, ClipStart::First), lenient).unwrap_err();
    match err {
        DataError::Empty { report, .. } => assert_eq!(report.skipped.len(), 6),
        other => panic!("expected an empty dataset, got {other}"),
    }
}

#[test]
fn seeded_clips_are_the_same_on_every_scan() {
    let dir = user_folder();
    let start = ClipStart::Seeded { seed: 7 };
    let a = VideoFolder::scan(dir.path(), spec(9, start), Policy::skip_all()).unwrap();
    let b = VideoFolder::scan(dir.path(), spec(9, start), Policy::skip_all()).unwrap();
    assert_eq!(a.report(), b.report());
    let (ca, cb) = (clip_named(&a, "nemo"), clip_named(&b, "nemo"));
    assert_eq!(ca, cb);
    let first = ca.source_indices[0];
    assert_eq!(ca.source_indices, (first..first + 9).collect::<Vec<_>>());
    assert!(a.clip(2).is_err());
}

#[test]
fn bad_specs_and_missing_folders_are_errors() {
    let dir = user_folder();
    assert!(matches!(
        VideoFolder::scan(dir.path(), spec(16, ClipStart::First), Policy::skip_all()),
        Err(DataError::Invalid { .. })
    ));
    assert!(VideoFolder::scan(
        &dir.path().join("nope"),
        spec(17, ClipStart::First),
        Policy::skip_all()
    )
    .is_err());
}

//! Truncated, corrupted and mislabelled images and videos give errors naming the file, never panics; a
//! deterministic mutation fuzz of the MP4 reader runs with the tests.

mod common;

use std::path::Path;

use common::*;
use orrery_media::{read_image, read_video, write_mp4, Mp4Options, RgbImage};

fn small_mp4(dir: &Path) -> Vec<u8> {
    let frames: Vec<RgbImage> = (0..6)
        .map(|t| {
            RgbImage::from_fn(32, 32, |x, y| {
                image::Rgb([(x * 8) as u8, (y * 8) as u8, (t * 40) as u8])
            })
        })
        .collect();
    let path = dir.join("small.mp4");
    write_mp4(&path, &frames, 16.0, Mp4Options::default()).unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn wrong_content_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let png = std::fs::read(testdata("droid_episode_000408.png")).unwrap();
    let cases: [(&str, &[u8], bool, &str); 4] = [
        ("fake.mp4", &png, true, "PNG image"),
        (
            "fake.png",
            b"PK\x03\x04 zip bytes here",
            false,
            "zip archive",
        ),
        ("empty.jpg", b"", false, "empty file"),
        (
            "text.mp4",
            b"hello world, not a video",
            true,
            "unrecognised",
        ),
    ];
    for (name, bytes, video, want) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = if video {
            read_video(&path).unwrap_err()
        } else {
            read_image(&path).unwrap_err()
        }
        .to_string();
        assert!(err.contains(name) && err.contains(want), "{name}: {err}");
    }
    let err = read_video(&dir.path().join("missing.mp4"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.mp4"), "{err}");
}

#[test]
fn truncated_images_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["droid_episode_000408.png", "robot_welding.jpg"] {
        let bytes = std::fs::read(testdata(name)).unwrap();
        let path = dir.path().join(name);
        for cut in [0, 10, 100, bytes.len() / 2, bytes.len() - 200] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = read_image(&path).unwrap_err().to_string();
            assert!(err.contains(name), "{name} cut at {cut}: {err}");
        }
    }
}

#[test]
fn truncated_videos_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(testdata("video2world_nemo_2b.mp4")).unwrap();
    let path = dir.path().join("cut.mp4");
    for cut in [0, 8, 40, 1000, bytes.len() / 2, bytes.len() - 10] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let result = std::panic::catch_unwind(|| read_video(&path));
        let err = result.unwrap_or_else(|_| panic!("cut at {cut} panicked"));
        assert!(
            err.is_err(),
            "cut at {cut} of {} bytes was accepted",
            bytes.len()
        );
    }
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

#[test]
fn mutation_fuzz_of_mp4_reader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let original = small_mp4(dir.path());
    let path = dir.path().join("mutated.mp4");
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    let (mut ok, mut rejected) = (0, 0);
    for _ in 0..400 {
        let mut bytes = original.clone();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(bytes.len());
            match rng.below(3) {
                0 => bytes[at] ^= 1 << rng.below(8),
                1 => bytes[at] = [0x00, 0xff, 0x7f, 0x80][rng.below(4)],
                _ => {
                    let end = (at + rng.below(32)).min(bytes.len());
                    bytes.drain(at..end);
                }
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        if std::env::var_os("ORRERY_FUZZ_TRACE").is_some() {
            std::fs::copy(&path, std::env::temp_dir().join("orrery-fuzz-current.mp4")).unwrap();
        }
        match std::panic::catch_unwind(|| read_video(&path)) {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(_)) => rejected += 1,
            Err(_) => panic!("mutated MP4 panicked; reproduce with the same seed"),
        }
    }
    println!("MP4 mutation fuzz: {ok} decoded, {rejected} rejected, 0 panics");
    assert_eq!(ok + rejected, 400);
}

/// Inputs the fuzzers found that once crashed or hung the reader; each must now be a clean error.
#[test]
fn fuzz_regressions_are_errors() {
    let dir = testdata("fuzz");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let result = std::panic::catch_unwind(|| read_video(&path));
        let err = result.unwrap_or_else(|_| panic!("{} panicked", path.display()));
        assert!(err.is_err(), "{} was accepted", path.display());
    }
}

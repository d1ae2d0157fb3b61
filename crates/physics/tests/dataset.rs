//! Shards: byte-identical for the same seed, readable back with decodable videos and consistent ground truth;
//! clear errors for bad settings.

use orrery_physics::dataset::{read_shard, write_dataset, DatasetSpec};
use orrery_physics::families::FAMILIES;
use orrery_physics::ClipSettings;

fn spec(clips: usize, seed: u64) -> DatasetSpec {
    DatasetSpec {
        clips,
        clips_per_shard: 4,
        families: FAMILIES.iter().map(|s| s.to_string()).collect(),
        seed,
        settings: ClipSettings {
            frames: 9,
            width: 64,
            height: 64,
            fps: 16.0,
        },
        workers: 2,
    }
}

#[test]
fn shards_are_deterministic_and_load_back() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut count = 0;
    let shards = write_dataset(&spec(9, 5), a.path(), || count += 1).unwrap();
    assert_eq!((shards.len(), count), (3, 9));
    let again = write_dataset(&spec(9, 5), b.path(), || ()).unwrap();
    for (x, y) in shards.iter().zip(&again) {
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            "{}",
            x.display()
        );
    }
    let samples: Vec<_> = shards.iter().flat_map(|s| read_shard(s).unwrap()).collect();
    assert_eq!(samples.len(), 9);
    for (i, s) in samples.iter().enumerate() {
        assert_eq!(s.key, format!("{}_{i:07}", FAMILIES[i % FAMILIES.len()]));
        assert!(!s.caption.is_empty());
        assert_eq!(s.json["frames"], 9);
        let mp4 = a.path().join(format!("{}.mp4", s.key));
        std::fs::write(&mp4, &s.mp4).unwrap();
        let video = orrery_media::read_video(&mp4).unwrap();
        assert_eq!(
            (video.frames.len(), video.width(), video.height()),
            (9, 64, 64)
        );
        let tracks = s.json["tracks"].as_array().unwrap();
        assert!(!tracks.is_empty());
        assert_eq!(tracks[0]["pixel"].as_array().unwrap().len(), 9);
    }
    let other = tempfile::tempdir().unwrap();
    let different = write_dataset(&spec(4, 6), other.path(), || ()).unwrap();
    assert_ne!(
        std::fs::read(&different[0]).unwrap(),
        std::fs::read(&shards[0]).unwrap()
    );
}

#[test]
fn bad_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(0, 0);
    assert!(write_dataset(&s, dir.path(), || ())
        .unwrap_err()
        .to_string()
        .contains("--clips"));
    s.clips = 2;
    s.families = vec!["juggling".into()];
    assert!(write_dataset(&s, dir.path(), || ())
        .unwrap_err()
        .to_string()
        .contains("juggling"));
    s.families = vec!["fall".into()];
    s.settings.width = 63;
    assert!(write_dataset(&s, dir.path(), || ())
        .unwrap_err()
        .to_string()
        .contains("63x64"));
}

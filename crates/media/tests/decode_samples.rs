//! The sample MP4s decode to the frame counts, sizes, rates and pixels ffmpeg gives
//! (fixtures from `tools/oracles/media.py`).

mod common;

use common::*;
use orrery_media::{read_video, VideoReader};

fn check_sample(name: &str) {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(testdata(&format!("{name}.expected.json"))).unwrap(),
    )
    .unwrap();
    let video = read_video(&testdata(name)).unwrap();
    assert_eq!(
        video.frames.len() as u64,
        expected["frames"].as_u64().unwrap(),
        "{name}: frame count"
    );
    assert_eq!(video.width() as u64, expected["width"].as_u64().unwrap());
    assert_eq!(video.height() as u64, expected["height"].as_u64().unwrap());
    assert!(
        (video.fps - expected["fps"].as_f64().unwrap()).abs() < 1e-6,
        "{name}: fps {}",
        video.fps
    );

    // Per-frame channel means catch dropped, duplicated or reordered frames.
    let means = expected["channel_means"].as_array().unwrap();
    let mut worst_mean = 0.0f64;
    for (i, (frame, want)) in video.frames.iter().zip(means).enumerate() {
        let n = (frame.width() * frame.height()) as f64;
        for c in 0..3 {
            let got = frame.pixels().map(|p| p.0[c] as f64).sum::<f64>() / n;
            let d = (got - want[c].as_f64().unwrap()).abs();
            worst_mean = worst_mean.max(d);
            // ffmpeg's default rgb24 conversion runs about one level below exact BT.601 arithmetic.
            assert!(
                d < 1.5,
                "{name}: frame {i} channel {c} mean {got} vs ffmpeg {want}"
            );
        }
    }

    let (shape, crops) = fixture_u8(&format!("{name}.crops.safetensors"), "crops");
    let (_, exact) = fixture_u8(&format!("{name}.crops.safetensors"), "crops_exact");
    let ids: Vec<usize> = expected["frame_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let [x0, y0] = [0, 1].map(|k| expected["crop_origin"][k].as_u64().unwrap() as u32);
    let size = shape[1];
    let per_crop = size * size * 3;
    for (k, &id) in ids.iter().enumerate() {
        let ours = image::imageops::crop_imm(&video.frames[id], x0, y0, size as u32, size as u32)
            .to_image();
        let range = k * per_crop..(k + 1) * per_crop;
        let (max, mean) = diff_stats(ours.as_raw(), &crops[range.clone()]);
        let (max_exact, mean_exact) = diff_stats(ours.as_raw(), &exact[range]);
        println!(
            "{name}: frame {id}: vs ffmpeg rgb24 max {max} mean {mean:.3}; vs ffmpeg YUV + exact BT.601 max {max_exact} \
             mean {mean_exact:.4}; worst channel-mean diff {worst_mean:.3}"
        );
        // The decode itself is exact: ffmpeg's YUV through the same arithmetic differs only by float rounding.
        assert!(
            max_exact <= 1 && mean_exact < 0.01,
            "{name}: frame {id} decodes differently from ffmpeg"
        );
        // swscale's default fixed-point conversion is coarser.
        assert!(
            max <= 3 && mean < 1.6,
            "{name}: frame {id} differs from ffmpeg rgb24: max {max}, mean {mean}"
        );
    }
}

#[test]
fn freeway_1280x720_30fps_decodes_like_ffmpeg() {
    check_sample("urban_freeway_front_tele_30fov.mp4");
}

#[test]
fn nemo_1280x704_16fps_decodes_like_ffmpeg() {
    check_sample("video2world_nemo_2b.mp4");
}

#[test]
fn streaming_reader_reports_container_info() {
    let mut reader = VideoReader::open(&testdata("video2world_nemo_2b.mp4")).unwrap();
    let info = reader.info().clone();
    assert_eq!((info.width, info.height, info.frame_count), (1280, 704, 93));
    let first = reader.next_frame().unwrap().unwrap();
    assert_eq!(first.dimensions(), (1280, 704));
}

//! Motion masks and Physics-IQ metrics against the benchmark's OpenCV procedure (fixture from
//! tools/oracles/motion.py): masks bit for bit, metrics to 1e-9.

use candle_core::Device;
use orrery_eval::motion::{motion_masks, motion_scores, physics_iq_score, Mask, MotionScores};
use orrery_media::RgbImage;
use orrery_nn::Checkpoint;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/motion");

fn load(checkpoint: &Checkpoint, name: &str) -> (Vec<usize>, Vec<u8>) {
    let t = checkpoint.load(name, &Device::Cpu).unwrap();
    (
        t.dims().to_vec(),
        t.flatten_all().unwrap().to_vec1::<u8>().unwrap(),
    )
}

fn clip(checkpoint: &Checkpoint, name: &str) -> Vec<RgbImage> {
    let (dims, bytes) = load(checkpoint, name);
    let (h, w) = (dims[1], dims[2]);
    bytes
        .chunks(h * w * 3)
        .map(|f| RgbImage::from_raw(w as u32, h as u32, f.to_vec()).unwrap())
        .collect()
}

fn scores(v: &serde_json::Value) -> MotionScores {
    serde_json::from_value(v.clone()).unwrap()
}

fn close(a: &MotionScores, b: &MotionScores) -> bool {
    let pairs = [
        (a.spatial_iou, b.spatial_iou),
        (a.spatiotemporal_iou, b.spatiotemporal_iou),
        (a.weighted_spatial_iou, b.weighted_spatial_iou),
        (a.mse, b.mse),
    ];
    pairs
        .iter()
        .all(|(x, y)| (x - y).abs() <= 1e-9 * y.abs().max(1.0))
}

#[test]
fn masks_and_metrics_equal_the_physics_iq_reference() {
    let data = Checkpoint::open(format!("{DIR}/clips.safetensors")).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/expected.json")).unwrap())
            .unwrap();
    let mut masks: Vec<Vec<Mask>> = Vec::new();
    let names = ["take1", "take2", "generated"];
    for name in names {
        let got = motion_masks(&clip(&data, name));
        let (_, want) = load(&data, &format!("{name}_masks"));
        let got_bits: Vec<u8> = got
            .iter()
            .flat_map(|m| m.moving.iter().map(|&b| b as u8))
            .collect();
        let differing = got_bits.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(
            differing, 0,
            "{name}: {differing} mask pixels differ from OpenCV's"
        );
        assert!(
            want.contains(&1),
            "{name}: the fixture should contain motion"
        );
        masks.push(got);
    }
    let frames: Vec<Vec<RgbImage>> = names.iter().map(|n| clip(&data, n)).collect();
    let generated = motion_scores(&frames[0], &masks[0], &frames[2], &masks[2]).unwrap();
    let variance = motion_scores(&frames[0], &masks[0], &frames[1], &masks[1]).unwrap();
    assert!(
        close(&generated, &scores(&expected["generated_vs_take1"])),
        "{generated:?}"
    );
    assert!(
        close(&variance, &scores(&expected["take2_vs_take1"])),
        "{variance:?}"
    );
    let iq = physics_iq_score(&[generated], &[variance]).unwrap();
    let want = expected["physics_iq"].as_f64().unwrap();
    assert!((iq - want).abs() < 1e-9, "Physics-IQ {iq} vs {want}");
}

#[test]
fn clips_of_different_lengths_are_refused() {
    let data = Checkpoint::open(format!("{DIR}/clips.safetensors")).unwrap();
    let a = clip(&data, "take1");
    let masks = motion_masks(&a);
    let err = motion_scores(&a, &masks, &a[..3], &masks[..3]).unwrap_err();
    assert!(err.contains("differ in length"), "{err}");
}

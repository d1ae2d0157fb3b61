//! The distilled sampler against a Python reference of the released 4-step model's inference loop
//! (tools/oracles/distilled.py) on the tiny DiT and VAE, in all three modes: TrigFlow times, x0 prediction,
//! re-noising with the initial noise, conditioning frames and their timestep pinned, no guidance.

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use common::{frames, pipeline, testdata};
use orrery_flow::noise::NoiseKind;
use orrery_pipeline::{Request, SamplerKind, SamplingSettings};

#[test]
fn all_three_modes_match_the_released_distilled_loop() {
    let p = pipeline();
    // (case, steps asked, network calls, seed), as in distilled.py: 6 steps are cut to the four times.
    let cases = [
        ("text2world", 4, 4, 3),
        ("image2world", 6, 4, 1),
        ("video2world", 2, 2, 0),
    ];
    for (mode, steps, expected_calls, seed) in cases {
        let case: HashMap<String, Tensor> = candle_core::safetensors::load(
            testdata(&format!("distilled/case_{mode}.safetensors")),
            &Device::Cpu,
        )
        .unwrap();
        let video_in = frames(&case["frames_u8"]);
        let settings = SamplingSettings {
            sampler: SamplerKind::Distilled,
            steps,
            guidance: 0.0,
            seed,
            noise: NoiseKind::Numpy,
            ..SamplingSettings::cosmos_2b_post_trained(seed)
        };
        assert_eq!(settings.calls().unwrap(), expected_calls);
        let request = Request {
            action: None,
            frames: 9,
            width: 32,
            height: 32,
            text: &case["text"],
            negative: None,
            image: (mode == "image2world").then_some(&video_in[0]),
            video: (mode == "video2world").then_some(&video_in[..]),
            settings,
        };
        assert_eq!(request.mode().name(), mode);
        let mut calls = 0;
        let out = p.generate(&request, |_, _| calls += 1).unwrap();
        assert_eq!(calls, expected_calls);
        let lerr = orrery_nn::compare::max_rel_err(&out.latents, &case["latents"]).unwrap();
        let verr = orrery_nn::compare::max_rel_err(&out.video, &case["video"]).unwrap();
        println!("{mode}: {calls} calls, latents {lerr:.2e}, video {verr:.2e}");
        assert!(
            lerr <= 1e-5 && verr <= 1e-5,
            "{mode}: latents {lerr:.3e}, video {verr:.3e}"
        );
    }
}

#[test]
fn the_distilled_sampler_refuses_guidance() {
    let p = pipeline();
    let text = Tensor::zeros((1, 7, 64), candle_core::DType::F32, &Device::Cpu).unwrap();
    let request = Request {
        action: None,
        frames: 9,
        width: 32,
        height: 32,
        text: &text,
        negative: Some(&text),
        image: None,
        video: None,
        settings: SamplingSettings {
            sampler: SamplerKind::Distilled,
            steps: 4,
            ..SamplingSettings::cosmos_2b_post_trained(0)
        },
    };
    let err = p.generate(&request, |_, _| ()).err().unwrap().to_string();
    assert!(err.contains("distilled sampler takes none"), "{err}");
}

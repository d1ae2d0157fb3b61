//! The whole pipeline against a Python reference of the official sampling loop (tools/oracles/pipeline.py) on
//! the tiny DiT and VAE, in all three modes, with guidance, NumPy-seeded noise and the official UniPC.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use common::{frames, pipeline, testdata};
use orrery_flow::noise::NoiseKind;
use orrery_media::RgbImage;
use orrery_pipeline::{KeepObserved, Request, SamplerKind, SamplingSettings, ScheduleKind};

#[test]
fn all_three_modes_match_the_official_loop() {
    let p = pipeline();
    // (mode, steps, schedule, guidance, conditioning-frame timestep, seed), as in pipeline.py.
    let cases = [
        ("text2world", 6, ScheduleKind::Shift(5.0), 7.0, None, 3),
        ("image2world", 5, ScheduleKind::Karras, 3.0, Some(0.1), 1),
        ("video2world", 4, ScheduleKind::Karras, 7.0, Some(0.1), 0),
    ];
    for (mode, steps, schedule, guidance, cond_timestep, seed) in cases {
        let case: HashMap<String, Tensor> = candle_core::safetensors::load(
            testdata(&format!("pipeline/case_{mode}.safetensors")),
            &Device::Cpu,
        )
        .unwrap();
        let video_in = frames(&case["frames_u8"]);
        let settings = SamplingSettings {
            sampler: SamplerKind::UniPc,
            steps,
            schedule,
            guidance,
            cond_timestep,
            timestep_scale: 0.001,
            seed,
            noise: NoiseKind::Numpy,
            conditional_frames: None,
            keep_observed: None,
        };
        let request = Request {
            action: None,
            frames: 9,
            width: 32,
            height: 32,
            text: &case["text"],
            negative: Some(&case["negative"]),
            image: (mode == "image2world").then_some(&video_in[0]),
            video: (mode == "video2world").then_some(&video_in[..]),
            settings,
        };
        assert_eq!(request.mode().name(), mode);
        let mut calls = 0;
        let out = p.generate(&request, |_, _| calls += 1).unwrap();
        let lerr = orrery_nn::compare::max_rel_err(&out.latents, &case["latents"]).unwrap();
        let verr = orrery_nn::compare::max_rel_err(&out.video, &case["video"]).unwrap();
        println!("{mode}: {calls} steps, latents {lerr:.2e}, video {verr:.2e}");
        assert!(
            lerr <= 1e-5 && verr <= 1e-5,
            "{mode}: latents {lerr:.3e}, video {verr:.3e}"
        );
    }
}

#[test]
fn bad_requests_are_explained() {
    let p = pipeline();
    let text = Tensor::zeros((1, 7, 64), DType::F32, &Device::Cpu).unwrap();
    let settings = SamplingSettings {
        steps: 2,
        ..SamplingSettings::cosmos_2b_post_trained(0)
    };
    let request = |frames, width, negative| Request {
        action: None,
        frames,
        width,
        height: 32,
        text: &text,
        negative,
        image: None,
        video: None,
        settings: settings.clone(),
    };
    let msg = |r: Request| p.generate(&r, |_, _| ()).err().unwrap().to_string();
    assert!(msg(request(8, 32, Some(&text))).contains("1 + 4k"));
    assert!(msg(request(9, 40, Some(&text))).contains("multiples of 16"));
    assert!(msg(request(9, 32, None)).contains("negative prompt"));
    let clip = vec![orrery_media::RgbImage::new(32, 32); 5];
    let mut video2world = request(9, 32, Some(&text));
    video2world.video = Some(&clip);
    video2world.settings.conditional_frames = Some(0);
    assert!(msg(video2world.clone()).contains("at least 1 conditional latent frame"));
    // 9 output frames make 3 latent frames: 4 cannot condition.
    video2world.settings.conditional_frames = Some(4);
    assert!(msg(video2world).contains("cannot hold 4 conditioning latent frames"));
}

#[test]
fn keeping_observed_pixels_changes_only_what_it_says() {
    let p = pipeline();
    let case: HashMap<String, Tensor> = candle_core::safetensors::load(
        testdata("pipeline/case_video2world.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let video_in = frames(&case["frames_u8"]);
    let generate = |threshold: Option<f64>, video: Option<&[RgbImage]>| {
        let request = Request {
            action: None,
            frames: 9,
            width: 32,
            height: 32,
            text: &case["text"],
            negative: None,
            image: None,
            video,
            settings: SamplingSettings {
                steps: 2,
                guidance: 0.0,
                keep_observed: threshold.map(|threshold| KeepObserved {
                    threshold,
                    margin: 1,
                }),
                ..SamplingSettings::cosmos_2b_post_trained(0)
            },
        };
        p.generate(&request, |_, _| ()).unwrap()
    };
    let max_diff = |a: &Tensor, b: &Tensor| -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    let decoded = generate(None, Some(&video_in));
    let observed = decoded
        .observed
        .clone()
        .expect("Video2World keeps its conditioning frames");
    let p_frames = observed.dim(2).unwrap();
    let t = decoded.video.dim(2).unwrap();
    // Threshold 0: the conditioning frames are the observed ones, the rest the decoder's.
    let exact = generate(Some(0.0), Some(&video_in));
    assert_eq!(
        max_diff(&exact.video.narrow(2, 0, p_frames).unwrap(), &observed),
        0.0
    );
    let later = |g: &orrery_pipeline::Generated| g.video.narrow(2, p_frames, t - p_frames).unwrap();
    assert_eq!(max_diff(&later(&exact), &later(&decoded)), 0.0);
    // A threshold above any change: every later frame is the last observed one.
    let still = generate(Some(100.0), Some(&video_in));
    let last = observed.narrow(2, p_frames - 1, 1).unwrap();
    assert_eq!(
        max_diff(
            &later(&still),
            &last.broadcast_as(later(&still).shape()).unwrap()
        ),
        0.0
    );
    // Text2World has nothing observed to keep.
    let text_only = generate(Some(100.0), None);
    assert!(text_only.observed.is_none());
    assert_eq!(max_diff(&text_only.video, &generate(None, None).video), 0.0);
}

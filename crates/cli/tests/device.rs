//! `--device`: naming the CPU changes nothing, bit for bit; a build without CUDA refuses `cuda` in every command
//! that runs a network, saying how to build CUDA support.

mod common;

use common::{assert_fails_with, generate, testdata, tiny_reason1_bundle};

#[test]
fn device_cpu_generates_what_the_default_generates_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    tiny_reason1_bundle(
        &bundle,
        None,
        r#"{"schedule": 5.0, "steps": 2, "guidance": 2.0, "cond_timestep": 0.1, "frames": 9, "width": 32, "height": 32, "fps": 16}"#,
    );
    let image = testdata("media/robot_welding.jpg");
    let video = testdata("media/video2world_nemo_2b.mp4");
    // Text2World in f32, Image2World in the released models' default bf16, Video2World with the churn sampler.
    let cases: [(&str, Vec<&str>); 3] = [
        ("t2w", vec!["--dtype", "f32"]),
        ("i2w", vec!["--image", image.to_str().unwrap()]),
        (
            "v2w",
            vec![
                "--video",
                video.to_str().unwrap(),
                "--dtype",
                "f32",
                "--sampler",
                "churn",
            ],
        ),
    ];
    for (name, extra) in cases {
        let default = generate(&bundle, &dir.path().join(format!("{name}.mp4")), &extra);
        let mut on_cpu = extra.clone();
        on_cpu.extend(["--device", "cpu"]);
        let cpu = generate(
            &bundle,
            &dir.path().join(format!("{name}-cpu.mp4")),
            &on_cpu,
        );
        assert_eq!(default.0, cpu.0, "{name}: latents");
        assert_eq!(default.1, cpu.1, "{name}: frames");
    }
}

/// Every command that runs a network, with the flags it needs to reach its networks (files that do not exist:
/// the device is refused before any is read).
#[cfg(not(feature = "cuda"))]
#[test]
fn a_build_without_cuda_refuses_it_in_every_command_and_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let o = out.to_str().unwrap();
    let none = "/nonexistent/model";
    let commands: Vec<Vec<&str>> = vec![
        vec![
            "generate", "--model", none, "--prompt", "a ball", "--out", "x.mp4",
        ],
        vec!["physics", "bench", "--model", none, "--out", o],
        vec![
            "policy", "eval", "--task", "push", "--model", none, "--out", o,
        ],
        vec!["policy", "eval", "--task", "push", "--out", o],
        vec!["policy", "bench", "--model", none, "--out", o],
        vec!["embed", "--model", none, "--prompt", "a ball", "--out", o],
        vec![
            "forward", "dit", "--model", none, "--inputs", none, "--out", o,
        ],
        vec![
            "forward", "text", "--model", none, "--inputs", none, "--out", o,
        ],
        vec![
            "forward",
            "vae-encode",
            "--model",
            none,
            "--inputs",
            none,
            "--out",
            o,
        ],
        vec![
            "forward",
            "vae-decode",
            "--model",
            none,
            "--inputs",
            none,
            "--out",
            o,
        ],
        vec!["vae", "roundtrip", "in.mp4", "out.mp4", "--model", none],
        vec!["eval", "--real", none, "--generated", none, "--report", o],
        vec!["serve", "--data", none, "--model", none],
    ];
    for device in ["cuda", "cuda:1"] {
        for command in &commands {
            let mut args = command.clone();
            args.extend(["--device", device]);
            assert_fails_with(&args, "built without CUDA");
            assert_fails_with(&args, "--features cuda");
        }
    }
    assert!(!out.exists());
    assert_fails_with(
        &[
            "generate", "--model", none, "--prompt", "a", "--out", "x.mp4", "--device", "gpu",
        ],
        "expected cpu, cuda or cuda:N",
    );
}

//! Schedules, UniPC trajectories and seeded noise against the official `FlowUniPCMultistepScheduler` and NumPy
//! (fixtures from tools/oracles/flow.py).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use orrery_flow::noise::{gaussian, NoiseKind};
use orrery_flow::unipc::UniPc;
use orrery_flow::Schedule;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/flow")
        .join(name)
}

fn schedules() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("schedules.json")).unwrap()).unwrap()
}

fn build(entry: &serde_json::Value) -> Schedule {
    let steps = entry["steps"].as_u64().unwrap() as usize;
    if entry["karras"].as_bool().unwrap() {
        Schedule::karras(steps).unwrap()
    } else {
        Schedule::shifted(steps, entry["shift"].as_f64().unwrap()).unwrap()
    }
}

#[test]
fn schedules_equal_the_official_ones() {
    for (name, entry) in schedules().as_object().unwrap() {
        let s = build(entry);
        let sigmas: Vec<f64> = entry["sigmas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let timesteps: Vec<i64> = entry["timesteps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(s.sigmas.len(), sigmas.len(), "{name}");
        for (a, b) in s.sigmas.iter().zip(&sigmas) {
            assert!((*a as f64 - b).abs() <= 1e-6, "{name}: sigma {a} vs {b}");
        }
        assert_eq!(s.timesteps, timesteps, "{name}: network timesteps");
    }
}

#[test]
fn unipc_trajectories_equal_the_official_sampler() {
    for (name, entry) in schedules().as_object().unwrap() {
        let tensors = candle_core::safetensors::load(
            fixture(&format!("unipc_{name}.safetensors")),
            &Device::Cpu,
        )
        .unwrap();
        let states = &tensors["states"];
        let schedule = build(entry);
        let mut sampler = UniPc::new(&schedule);
        let mut x = tensors["noise"].clone();
        let n = x.elem_count();
        let c = Tensor::from_vec(
            (0..n)
                .map(|i| -1.0 + 2.0 * i as f32 / (n - 1) as f32)
                .collect::<Vec<_>>(),
            x.shape(),
            &Device::Cpu,
        )
        .unwrap();
        let mut worst = 0f64;
        for (k, t) in schedule.timesteps.iter().enumerate() {
            let sigma = *t as f64 / 1000.0;
            let v = ((x.tanh().unwrap() * 0.7).unwrap() + (&c * sigma).unwrap()
                - (&x * 0.2).unwrap())
            .unwrap();
            x = sampler.step(&v, &x).unwrap();
            let want = states.get(k + 1).unwrap();
            worst = worst.max(orrery_nn::compare::max_rel_err(&x, &want).unwrap());
        }
        println!("{name}: worst step error / scale {worst:.2e}");
        assert!(worst <= 1e-5, "{name}: {worst:.3e}");
        assert!(
            sampler.step(&x, &x).is_err(),
            "{name}: stepping past the end must fail"
        );
    }
}

#[test]
fn numpy_noise_is_reproduced_bit_for_bit() {
    let tensors =
        candle_core::safetensors::load(fixture("numpy_noise.safetensors"), &Device::Cpu).unwrap();
    for seed in [0u64, 1, 42, 4_294_967_295] {
        let want = &tensors[&format!("seed{seed}")];
        let got = gaussian(NoiseKind::Numpy, seed, &[3, 5, 7], &Device::Cpu).unwrap();
        let diff = (got - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        assert_eq!(diff.to_scalar::<f64>().unwrap(), 0.0, "seed {seed}");
    }
}

//! Each fused CPU kernel against the composed candle ops it replaced, forward and forward + backward, at the
//! shapes of the benchmark DiT (width 384, 6 heads, 512 tokens, batch 2) and of the tiny VAE (17 frames 64x64).
//! `cargo bench -p orrery-nn --bench kernels`; the side-by-side with PyTorch is `tools/bench/suite.py`.

use candle_core::{Device, Result, Tensor, Var};
use orrery_nn::{kernels, ops::composed};

fn main() {
    divan::main();
}

type Op = fn(&[Tensor]) -> Result<Tensor>;

/// (input shapes, fused, composed)
fn case(name: &str) -> (Vec<Vec<usize>>, Op, Op) {
    match name {
        "softmax" => (
            vec![vec![2, 6, 512, 512]],
            |t| kernels::softmax_last_dim(&t[0]),
            |t| composed::softmax_last_dim(&t[0]),
        ),
        "gelu_erf" => (
            vec![vec![1024, 1536]],
            |t| kernels::gelu_erf(&t[0]),
            |t| t[0].gelu_erf(),
        ),
        "layer_norm" => (
            vec![vec![1024, 384]],
            |t| kernels::layer_norm(&t[0], None, 1e-6),
            |t| composed::layer_norm_no_affine(&t[0], 1e-6),
        ),
        "rms_norm" => (
            vec![vec![2, 6, 512, 64], vec![64]],
            |t| kernels::rms_norm(&t[0], &t[1], 1e-6),
            |t| composed::rms_norm(&t[0], &t[1], 1e-6),
        ),
        "attention_512" => (
            vec![vec![2, 6, 512, 64]; 3],
            |t| kernels::flash_attention(&t[0], &t[1], &t[2]),
            |t| composed::attention(&t[0], &t[1], &t[2]),
        ),
        "attention_4096" => (
            vec![vec![1, 6, 4096, 64]; 3],
            |t| kernels::flash_attention(&t[0], &t[1], &t[2]),
            |t| composed::attention(&t[0], &t[1], &t[2]),
        ),
        // The VAE's norm and SiLU over 32 channels of 17 frames at 64x64.
        "channel_rms_norm_silu" => (
            vec![vec![17, 32, 64, 64], vec![32]],
            |t| kernels::channel_rms_norm(&t[0], &t[1], true),
            |t| composed::channel_rms_norm(&t[0], &t[1])?.silu(),
        ),
        // A 32-channel causal 3x3x3 layer over 17 frames (plus 2 context frames) at 64x64.
        _ => (
            vec![vec![1, 19, 32, 64, 64], vec![32, 32, 3, 3, 3]],
            |t| kernels::conv3d(&t[0], &t[1], 1, (1, 1)),
            |t| composed::conv3d(&t[0], &t[1], 1, 1),
        ),
    }
}

const CASES: &[&str] = &[
    "softmax",
    "gelu_erf",
    "layer_norm",
    "rms_norm",
    "attention_512",
    "attention_4096",
    "channel_rms_norm_silu",
    "conv3d",
];

fn run(bencher: divan::Bencher, name: &str, fused: bool, backward: bool) {
    let (shapes, fast, slow) = case(name);
    let vars: Vec<Var> = shapes
        .iter()
        .map(|s| {
            Var::from_tensor(&Tensor::randn(0f32, 1., s.as_slice(), &Device::Cpu).unwrap()).unwrap()
        })
        .collect();
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let op = if fused { fast } else { slow };
    bencher.bench_local(|| {
        let y = op(&tensors).unwrap();
        if backward {
            y.sum_all().unwrap().backward().unwrap();
        }
    });
}

#[divan::bench(args = CASES, sample_count = 5)]
fn forward_fused(bencher: divan::Bencher, name: &str) {
    run(bencher, name, true, false)
}

#[divan::bench(args = CASES, sample_count = 5)]
fn forward_composed(bencher: divan::Bencher, name: &str) {
    run(bencher, name, false, false)
}

#[divan::bench(args = CASES, sample_count = 5)]
fn train_fused(bencher: divan::Bencher, name: &str) {
    run(bencher, name, true, true)
}

#[divan::bench(args = CASES, sample_count = 5)]
fn train_composed(bencher: divan::Bencher, name: &str) {
    run(bencher, name, false, true)
}

//! The fused CPU kernels against PyTorch autograd (fixtures from `tools/oracles/kernels.py`), against the composed
//! candle ops they replace, and their gradients against finite differences.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Result, Tensor, Var};
use orrery_nn::compare::{max_rel_err, seeded_uniform};
use orrery_nn::gradcheck::check_gradients;
use orrery_nn::{kernels, ops};

type Op = fn(&[Tensor]) -> Result<Tensor>;

fn cases() -> HashMap<String, Tensor> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/kernels/cases.safetensors");
    candle_core::safetensors::load(path, &Device::Cpu).expect("kernel fixtures")
}

/// Output and every input gradient of `op` on case `name`, each against PyTorch (float64) within `tol` relative
/// to the reference's largest magnitude: float32 rounding, largest for attention's 600-key sums (3e-6).
fn check_against_torch(all: &HashMap<String, Tensor>, name: &str, args: &[&str], op: Op, tol: f64) {
    // Arguments with a reference gradient become variables; the others (RoPE's tables) stay constants.
    let inputs: Vec<(Option<Var>, Tensor)> = args
        .iter()
        .map(|a| {
            let t = all[&format!("{name}.in.{a}")].clone();
            if all.contains_key(&format!("{name}.grad.{a}")) {
                let v = Var::from_tensor(&t).unwrap();
                (Some(v.clone()), v.as_tensor().clone())
            } else {
                (None, t)
            }
        })
        .collect();
    let tensors: Vec<Tensor> = inputs.iter().map(|(_, t)| t.clone()).collect();
    let out = op(&tensors).unwrap();
    let err = max_rel_err(&out, &all[&format!("{name}.out")]).unwrap();
    assert!(err < tol, "{name}: output differs from PyTorch by {err:e}");
    let probe = &all[&format!("{name}.probe")];
    let grads = (out * probe)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (a, (var, _)) in args.iter().zip(&inputs) {
        let Some(var) = var else { continue };
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient for {a}"));
        let err = max_rel_err(g, &all[&format!("{name}.grad.{a}")]).unwrap();
        assert!(
            err < tol,
            "{name}: gradient of {a} differs from PyTorch by {err:e}"
        );
    }
}

/// (case, arguments, fused kernel, composed candle ops)
fn table() -> Vec<(&'static str, Vec<&'static str>, Op, Op)> {
    vec![
        (
            "gelu_erf",
            vec!["x"],
            |t| kernels::gelu_erf(&t[0]),
            |t| t[0].gelu_erf(),
        ),
        (
            "gelu_tanh",
            vec!["x"],
            |t| kernels::gelu_tanh(&t[0]),
            |t| t[0].gelu(),
        ),
        ("silu", vec!["x"], |t| kernels::silu(&t[0]), |t| t[0].silu()),
        (
            "softmax",
            vec!["x"],
            |t| kernels::softmax_last_dim(&t[0]),
            |t| ops::composed::softmax_last_dim(&t[0]),
        ),
        (
            "layer_norm",
            vec!["x"],
            |t| kernels::layer_norm(&t[0], None, 1e-6),
            |t| ops::composed::layer_norm_no_affine(&t[0], 1e-6),
        ),
        (
            "layer_norm_affine",
            vec!["x", "w", "b"],
            |t| kernels::layer_norm(&t[0], Some((&t[1], &t[2])), 1e-5),
            |t| {
                ops::composed::layer_norm_no_affine(&t[0], 1e-5)?
                    .broadcast_mul(&t[1])?
                    .broadcast_add(&t[2])
            },
        ),
        (
            "rms_norm",
            vec!["x", "w"],
            |t| kernels::rms_norm(&t[0], &t[1], 1e-6),
            |t| ops::composed::rms_norm(&t[0], &t[1], 1e-6),
        ),
        (
            "rope",
            vec!["x", "cos", "sin"],
            |t| kernels::rotate_half_rope(&t[0], &t[1], &t[2]),
            |t| ops::composed::rotate_half_rope(&t[0], &t[1], &t[2]),
        ),
        (
            "conv3d",
            vec!["x", "w"],
            |t| kernels::conv3d(&t[0], &t[1], 1, (1, 1)),
            |t| ops::composed::conv3d(&t[0], &t[1], 1, 1),
        ),
        (
            "conv3d_strided",
            vec!["x", "w"],
            |t| kernels::conv3d(&t[0], &t[1], 2, (0, 0)),
            |t| ops::composed::conv3d(&t[0], &t[1], 2, 0),
        ),
        (
            "conv3d_tiled",
            vec!["x", "w"],
            |t| kernels::conv3d(&t[0], &t[1], 1, (0, 1)),
            // candle's conv2d pads both directions alike: drop the rows the extra H padding adds.
            |t| ops::composed::conv3d(&t[0], &t[1], 1, 1)?.narrow(3, 1, 39),
        ),
        (
            "modulate",
            vec!["x", "shift", "scale"],
            modulate_fused,
            modulate_composed,
        ),
        (
            "modulate_shared",
            vec!["x", "shift", "scale"],
            modulate_fused,
            modulate_composed,
        ),
        ("gated", vec!["x", "y", "gate"], gated_fused, gated_composed),
        (
            "gated_shared",
            vec!["x", "y", "gate"],
            gated_fused,
            gated_composed,
        ),
        (
            "attention_cross",
            vec!["q", "k", "v"],
            attention_fused,
            attention_composed,
        ),
        (
            "attention_self",
            vec!["q", "k", "v"],
            attention_fused,
            attention_composed,
        ),
    ]
}

fn modulate_fused(t: &[Tensor]) -> Result<Tensor> {
    kernels::modulate(&t[0], &t[1], &t[2], 1e-6)
}

fn modulate_composed(t: &[Tensor]) -> Result<Tensor> {
    ops::composed::layer_norm_no_affine(&t[0], 1e-6)?
        .broadcast_mul(&(&t[2] + 1.0)?)?
        .broadcast_add(&t[1])
}

fn gated_fused(t: &[Tensor]) -> Result<Tensor> {
    kernels::gated_residual(&t[0], &t[1], &t[2])
}

fn gated_composed(t: &[Tensor]) -> Result<Tensor> {
    &t[0] + t[1].broadcast_mul(&t[2])?
}

fn attention_fused(t: &[Tensor]) -> Result<Tensor> {
    kernels::flash_attention(&t[0], &t[1], &t[2])
}

fn attention_composed(t: &[Tensor]) -> Result<Tensor> {
    ops::composed::attention(&t[0], &t[1], &t[2])
}

#[test]
fn kernels_match_pytorch_outputs_and_gradients() {
    let all = cases();
    for (name, args, fused, _) in table() {
        check_against_torch(&all, name, &args, fused, 1e-5);
    }
}

#[test]
fn composed_ops_match_pytorch_too() {
    // The kernels replace these; both agreeing with PyTorch makes them equal to each other.
    let all = cases();
    for (name, args, _, composed) in table() {
        check_against_torch(&all, name, &args, composed, 1e-5);
    }
}

#[test]
fn kernel_gradients_match_finite_differences() {
    let dev = Device::Cpu;
    for (name, args, fused, _) in table() {
        // Small inputs of each case's ranks: (2, 3, 4, 8)-sized cuts keep finite differences cheap.
        let all = cases();
        let small: Vec<(&str, Tensor)> = args
            .iter()
            .map(|a| (*a, shrink(&all[&format!("{name}.in.{a}")]).unwrap()))
            .collect();
        let vars: Vec<(String, Var)> = small
            .iter()
            .filter(|(a, _)| all.contains_key(&format!("{name}.grad.{a}")))
            .map(|(a, t)| (a.to_string(), Var::from_tensor(t).unwrap()))
            .collect();
        // Each argument: its variable when it has one, else the constant.
        let inputs = || {
            small
                .iter()
                .map(|(a, t)| match vars.iter().find(|(n, _)| n == a) {
                    Some((_, v)) => v.as_tensor().clone(),
                    None => t.clone(),
                })
                .collect::<Vec<_>>()
        };
        let probe_shape = fused(&inputs()).unwrap().shape().clone();
        let n = probe_shape.elem_count();
        let probe: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.4)
            .collect();
        let probe = Tensor::from_vec(probe, probe_shape, &dev).unwrap();
        let loss = || {
            (fused(&inputs())? * &probe)?
                .sum_all()?
                .to_dtype(DType::F32)
        };
        check_gradients(&vars, loss, 12, 1e-2, 2e-2, 2e-3)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .assert_ok();
    }
}

/// The first 2 (or fewer) entries along the leading axes and up to 8 along the last of a fixture input, keeping
/// attention's k and v the same length.
fn shrink(t: &Tensor) -> Result<Tensor> {
    let mut t = t.clone();
    let rank = t.rank();
    for axis in 0..rank {
        let keep = if axis + 1 == rank { 8 } else { 3 };
        let n = t.dim(axis)?;
        t = t.narrow(axis, 0, n.min(keep))?;
    }
    t.contiguous()
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 3, 4, 8), DType::F32, &dev).unwrap();
    let wrong = Tensor::zeros((2, 2, 1, 8), DType::F32, &dev).unwrap();
    assert!(kernels::modulate(&x, &wrong, &wrong, 1e-6).is_err());
    assert!(kernels::gated_residual(&x, &x, &wrong).is_err());
    let w = Tensor::zeros(5, DType::F32, &dev).unwrap();
    assert!(kernels::rms_norm(&x, &w, 1e-6).is_err());
    let k = Tensor::zeros((2, 3, 4, 7), DType::F32, &dev).unwrap();
    assert!(kernels::flash_attention(&x, &k, &k).is_err());
    let empty = Tensor::zeros((2, 3, 0, 8), DType::F32, &dev).unwrap();
    assert!(kernels::flash_attention(&x, &empty, &empty).is_err());
    // conv3d: channel mismatch, fewer frames than taps, padding as large as the kernel.
    let video = Tensor::zeros((1, 2, 3, 8, 8), DType::F32, &dev).unwrap();
    let kernel = |s: &[usize]| Tensor::zeros(s, DType::F32, &dev).unwrap();
    assert!(kernels::conv3d(&video, &kernel(&[4, 2, 1, 3, 3]), 1, (1, 1)).is_err());
    assert!(kernels::conv3d(&video, &kernel(&[4, 3, 3, 3, 3]), 1, (1, 1)).is_err());
    assert!(kernels::conv3d(&video, &kernel(&[4, 3, 1, 3, 3]), 1, (3, 3)).is_err());
    assert!(kernels::conv3d(&video, &kernel(&[4, 3, 1, 3, 3]), 0, (1, 1)).is_err());
}

#[test]
fn backward_passes_are_bit_reproducible() {
    // Parallel sums (weight gradients of norms, adaLN, conv3d) use fixed blocks added in order.
    let dev = Device::Cpu;
    let grads = || {
        let n = 2 * 5 * 8 * 40 * 40;
        let data: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let x =
            Var::from_tensor(&Tensor::from_vec(data, (2, 5, 8, 40, 40), &dev).unwrap()).unwrap();
        let w =
            Var::from_tensor(&Tensor::ones((8, 8, 3, 3, 3), DType::F32, &dev).unwrap()).unwrap();
        let y = kernels::conv3d(x.as_tensor(), w.as_tensor(), 1, (1, 1)).unwrap();
        let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        g.get(w.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let first = grads();
    for _ in 0..3 {
        assert_eq!(grads(), first);
    }
}

/// A seeded input (N, C, H, W), with pixel (0, 0) of every frame all zero (the norm's clamp) when `zero_pixel`, and
/// a gamma around 1.
fn channel_norm_inputs(n: usize, c: usize, h: usize, w: usize, zero_pixel: bool) -> (Var, Var) {
    let dev = Device::Cpu;
    let mut data: Vec<f32> = (0..n * c * h * w)
        .map(|i| ((i * 7919) % 97) as f32 / 24.0 - 2.0)
        .collect();
    for i in (0..n * c).filter(|_| zero_pixel) {
        data[i * h * w] = 0.0;
    }
    let x = Tensor::from_vec(data, (n, c, h, w), &dev).unwrap();
    let gamma: Vec<f32> = (0..c).map(|i| 0.5 + 0.25 * i as f32).collect();
    let gamma = Tensor::from_vec(gamma, (c, 1, 1, 1), &dev).unwrap();
    (
        Var::from_tensor(&x).unwrap(),
        Var::from_tensor(&gamma).unwrap(),
    )
}

#[test]
fn channel_rms_norm_matches_composed_ops() {
    // The VAE's norm (golden-tested against PyTorch through the VAE) composed from candle ops, with and without
    // the SiLU after it: outputs and both gradients, at sizes that split the pixel passes into several blocks.
    for silu in [false, true] {
        let (x, gamma) = channel_norm_inputs(3, 6, 40, 30, false);
        let probe = Tensor::rand(-1f32, 1f32, (3, 6, 40, 30), &Device::Cpu).unwrap();
        let run = |fused: bool| {
            let y = if fused {
                kernels::channel_rms_norm(x.as_tensor(), gamma.as_tensor(), silu).unwrap()
            } else {
                let y = ops::composed::channel_rms_norm(x.as_tensor(), gamma.as_tensor()).unwrap();
                if silu {
                    y.silu().unwrap()
                } else {
                    y
                }
            };
            let g = (&y * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let dx = g.get(x.as_tensor()).unwrap().clone();
            let dg = g.get(gamma.as_tensor()).unwrap().clone();
            (y, dx, dg)
        };
        let (fused, composed) = (run(true), run(false));
        assert_eq!(fused.2.dims(), &[6, 1, 1, 1]);
        for (what, a, b) in [
            ("output", &fused.0, &composed.0),
            ("x gradient", &fused.1, &composed.1),
            ("gamma gradient", &fused.2, &composed.2),
        ] {
            let err = max_rel_err(a, b).unwrap();
            assert!(err < 1e-5, "silu {silu}: {what} differs by {err:e}");
        }
    }
}

#[test]
fn channel_rms_norm_gradients_match_finite_differences() {
    for silu in [false, true] {
        let (x, gamma) = channel_norm_inputs(2, 3, 4, 5, true);
        // The zero pixel's gradient is (k / eps) gu, far beyond what finite differences resolve: its output is
        // masked out of the loss.
        let mut mask = vec![1f32; 4 * 5];
        mask[0] = 0.0;
        let mask = Tensor::from_vec(mask, (1, 1, 4, 5), &Device::Cpu).unwrap();
        let vars = vec![
            ("x".to_string(), x.clone()),
            ("gamma".to_string(), gamma.clone()),
        ];
        let loss = || {
            let y = kernels::channel_rms_norm(x.as_tensor(), gamma.as_tensor(), silu)?;
            y.broadcast_mul(&mask)?.sqr()?.sum_all()
        };
        check_gradients(&vars, loss, 16, 1e-2, 2e-2, 2e-3)
            .unwrap_or_else(|e| panic!("silu {silu}: {e}"))
            .assert_ok();
        // At the clamped pixel the output is 0 and the gradient finite (PyTorch's; candle's composed sqrt gives NaN).
        let y = kernels::channel_rms_norm(x.as_tensor(), gamma.as_tensor(), silu).unwrap();
        let at_zero = y.narrow(2, 0, 1).unwrap().narrow(3, 0, 1).unwrap();
        assert_eq!(
            at_zero
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
        let g = y.sum_all().unwrap().backward().unwrap();
        let dx = g
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(
            dx.iter().all(|v| v.is_finite()),
            "silu {silu}: non-finite gradient"
        );
    }
}

#[test]
fn channel_rms_norm_rejects_bad_shapes() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 3, 4, 4), DType::F32, &dev).unwrap();
    let wrong = Tensor::ones(4, DType::F32, &dev).unwrap();
    assert!(kernels::channel_rms_norm(&x, &wrong, true).is_err());
    let flat = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
    assert!(
        kernels::channel_rms_norm(&flat, &Tensor::ones(3, DType::F32, &dev).unwrap(), false)
            .is_err()
    );
}

#[test]
fn conv3d_front_zeros_and_bias_match_explicit_ops() {
    // Front zero frames skipped in the kernel equal zero frames concatenated before the input, and the fused bias
    // equals a broadcast add: outputs and the gradients of x, the kernel and the bias (stride 1 and 2 in time).
    let dev = Device::Cpu;
    for (stride_t, front) in [(1, 2), (1, 1), (2, 2), (1, 0)] {
        let x =
            Var::from_tensor(&Tensor::rand(-1f32, 1f32, (2, 5, 3, 9, 7), &dev).unwrap()).unwrap();
        let w =
            Var::from_tensor(&Tensor::rand(-1f32, 1f32, (4, 3, 3, 3, 3), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::rand(-1f32, 1f32, 4, &dev).unwrap()).unwrap();
        let p = kernels::Conv3d {
            stride_t,
            padding: (1, 1),
            front,
        };
        let fused =
            kernels::conv3d_with(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), p).unwrap();
        let zeros = Tensor::zeros((2, front, 3, 9, 7), DType::F32, &dev).unwrap();
        let padded = Tensor::cat(&[&zeros, x.as_tensor()], 1).unwrap();
        let explicit = kernels::conv3d(&padded, w.as_tensor(), stride_t, (1, 1))
            .unwrap()
            .broadcast_add(&b.as_tensor().reshape((1, 1, 4, 1, 1)).unwrap())
            .unwrap();
        assert_eq!(fused.dims(), explicit.dims());
        let probe = Tensor::rand(-1f32, 1f32, fused.dims(), &dev).unwrap();
        let grads = |y: &Tensor| {
            let g = (y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            [&x, &w, &b].map(|v| g.get(v.as_tensor()).unwrap().clone())
        };
        let err = max_rel_err(&fused, &explicit).unwrap();
        assert!(
            err < 1e-6,
            "stride {stride_t}, front {front}: output differs by {err:e}"
        );
        let (fused_grads, explicit_grads) = (grads(&fused), grads(&explicit));
        for (i, name) in ["x", "kernel", "bias"].into_iter().enumerate() {
            let err = max_rel_err(&fused_grads[i], &explicit_grads[i]).unwrap();
            assert!(
                err < 1e-5,
                "stride {stride_t}, front {front}: {name} gradient differs by {err:e}"
            );
        }
    }
    // As many zero frames as taps, or a bias of the wrong size, is an error.
    let x = Tensor::zeros((1, 2, 3, 4, 4), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((4, 3, 3, 3, 3), DType::F32, &dev).unwrap();
    let p = |front| kernels::Conv3d {
        stride_t: 1,
        padding: (1, 1),
        front,
    };
    assert!(kernels::conv3d_with(&x, &w, None, p(3)).is_err());
    let wrong = Tensor::zeros(5, DType::F32, &dev).unwrap();
    assert!(kernels::conv3d_with(&x, &w, Some(&wrong), p(2)).is_err());
}

#[test]
fn conv3d_3x3_same_matches_composed_ops_at_odd_sizes_and_several_bands() {
    // 3x3 kernels with padding 1 take the Winograd path: against candle's own convolution, at odd heights and
    // widths (tiles cut at the edge), a single pixel, a frame wide and tall enough for several bands of tiles, and
    // temporal strides 1 and 2.
    let dev = Device::Cpu;
    for (shape, cout, kt) in [
        ((1, 7, 3, 31, 70), 5, 3),
        ((2, 3, 2, 5, 9), 3, 3),
        ((1, 3, 2, 1, 1), 2, 1),
        ((1, 2, 17, 8, 6), 16, 2),
    ] {
        let (_, _, cin, _, _) = shape;
        let x = Tensor::rand(-1f32, 1f32, shape, &dev).unwrap();
        let w = Tensor::rand(-1f32, 1f32, (cout, cin, kt, 3, 3), &dev).unwrap();
        for stride_t in [1, 2] {
            let fused = kernels::conv3d(&x, &w, stride_t, (1, 1)).unwrap();
            let composed = ops::composed::conv3d(&x, &w, stride_t, 1).unwrap();
            assert_eq!(fused.dims(), composed.dims());
            let err = max_rel_err(&fused, &composed).unwrap();
            assert!(
                err < 1e-5,
                "{shape:?} -> {cout} channels, stride {stride_t}: differs by {err:e}"
            );
        }
    }
}

#[test]
fn conv3d_with_front_zeros_and_bias_has_finite_difference_gradients() {
    // Seeded, so that a run is repeatable (31 seeds from 0 to 90 pass).
    let seed = 0;
    let x = Var::from_tensor(&seeded_uniform(seed, &[1, 3, 2, 5, 4], 1.0).unwrap()).unwrap();
    let w = Var::from_tensor(&seeded_uniform(seed + 1, &[3, 2, 3, 3, 3], 1.0).unwrap()).unwrap();
    let b = Var::from_tensor(&seeded_uniform(seed + 2, &[3], 1.0).unwrap()).unwrap();
    let p = kernels::Conv3d {
        stride_t: 1,
        padding: (1, 1),
        front: 2,
    };
    let vars = vec![
        ("x".to_string(), x.clone()),
        ("w".to_string(), w.clone()),
        ("b".to_string(), b.clone()),
    ];
    // A loss linear in the output: central differences are exact up to float32 rounding, which a sum of
    // squares (hundreds in size) makes larger than the smallest gradients' tolerance.
    let probe = seeded_uniform(seed + 3, &[1, 3, 3, 5, 4], 1.0).unwrap();
    let loss = || {
        (kernels::conv3d_with(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), p)? * &probe)?
            .sum_all()
    };
    check_gradients(&vars, loss, 12, 1e-2, 2e-2, 2e-3)
        .unwrap()
        .assert_ok();
}

#[test]
fn upsample_nearest_2x_matches_composed_ops_and_its_gradient_sums_each_block() {
    let dev = Device::Cpu;
    for shape in [(2, 3, 5, 7), (1, 1, 1, 1), (1, 4, 8, 2)] {
        let x = Var::from_tensor(&Tensor::rand(-1f32, 1f32, shape, &dev).unwrap()).unwrap();
        let fused = kernels::upsample_nearest_2x(x.as_tensor()).unwrap();
        let composed = ops::composed::upsample_nearest_2x(x.as_tensor()).unwrap();
        assert_eq!(fused.dims(), composed.dims());
        assert_eq!(max_rel_err(&fused, &composed).unwrap(), 0.0, "{shape:?}");
        let probe = Tensor::rand(-1f32, 1f32, fused.dims(), &dev).unwrap();
        let grad = |y: &Tensor| {
            let g = (y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            g.get(x.as_tensor()).unwrap().clone()
        };
        let err = max_rel_err(&grad(&fused), &grad(&composed)).unwrap();
        assert!(err < 1e-6, "{shape:?}: gradient differs by {err:e}");
    }
    assert!(
        kernels::upsample_nearest_2x(&Tensor::zeros((2, 3, 4), DType::F32, &dev).unwrap()).is_err()
    );
}

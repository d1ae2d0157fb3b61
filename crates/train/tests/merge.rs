//! Model merging against the NumPy reference (`tools/oracles/merge.py`, fixtures in `testdata/merge/`), DARE's
//! properties, bundles, and clear errors for inputs that cannot be merged.
//!
//! Tolerance: float32 outputs within 1e-6 of the expected value relative to the tensor's largest magnitude
//! (DESIGN's "relative to the output scale"); bfloat16 outputs within one bfloat16 step (2^-8 relative). Both
//! sides compute in float64 with the sums in model order, so the measured error is 0; the tolerance only allows
//! for a different but equally correct summation order in the future.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use orrery_nn::checkpoint::save_tensors;
use orrery_nn::{Checkpoint, DType};
use orrery_train::merge::{Dare, DareRescale, MergeError, MergeMethod, MergeOptions, Merger};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/merge")
        .join(name)
}

fn models() -> Vec<PathBuf> {
    (0..3)
        .map(|i| fixture(&format!("model{i}.safetensors")))
        .collect()
}

/// Every element of a float tensor as float64.
fn values(ckpt: &Checkpoint, name: &str) -> Vec<f64> {
    let t = ckpt
        .load_as(name, candle_core::DType::F64, &Device::Cpu)
        .unwrap();
    t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// Checks `got` against `want` tensor by tensor (names, shapes, dtypes, values within the stated tolerance) and
/// returns the largest error relative to each tensor's scale.
fn assert_close(got: &Path, want: &Path) -> f64 {
    let (got, want) = (
        Checkpoint::open(got).unwrap(),
        Checkpoint::open(want).unwrap(),
    );
    let names = |c: &Checkpoint| -> Vec<(String, DType, Vec<usize>)> {
        c.tensors()
            .iter()
            .map(|t| (t.name.clone(), t.dtype, t.shape.clone()))
            .collect()
    };
    assert_eq!(names(&got), names(&want));
    let mut worst = 0.0f64;
    for t in want.tensors() {
        let (g, w) = (values(&got, &t.name), values(&want, &t.name));
        let scale = w.iter().fold(1e-30f64, |m, x| m.max(x.abs()));
        let tolerance = match t.dtype {
            DType::BF16 => 2f64.powi(-8),
            _ => 1e-6,
        };
        for (j, (a, b)) in g.iter().zip(&w).enumerate() {
            let err = (a - b).abs() / scale;
            worst = worst.max(err);
            assert!(
                err <= tolerance,
                "{}[{j}]: got {a}, want {b} ({err:e} of the scale {scale})",
                t.name
            );
        }
    }
    worst
}

fn method_of(case: &serde_json::Value) -> MergeMethod {
    let lambda = case["lambda"].as_f64().unwrap_or(1.0);
    let density = case["density"].as_f64().unwrap_or(0.2);
    let dare = Dare {
        density,
        lambda,
        seed: 0,
        rescale: DareRescale::InverseDensity,
    };
    match case["method"].as_str().unwrap() {
        "soup" => MergeMethod::Soup,
        "task-arithmetic" => MergeMethod::TaskArithmetic { lambda },
        "ties" => MergeMethod::Ties { density, lambda },
        "dare-linear" => MergeMethod::DareLinear(dare),
        "dare-ties" => MergeMethod::DareTies(dare),
        other => panic!("unknown method {other}"),
    }
}

fn merge(
    base: Option<&Path>,
    models: &[PathBuf],
    method: MergeMethod,
    weights: Option<Vec<f64>>,
    out: &Path,
) {
    let merger = Merger::open(base, models, MergeOptions { method, weights }).unwrap();
    merger.write(out, &|_| {}).unwrap();
}

#[test]
fn merges_equal_the_numpy_reference() {
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture("cases.json")).unwrap()).unwrap();
    assert_eq!(cases.len(), 8);
    let dir = tempfile::tempdir().unwrap();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let method = method_of(case);
        let weights = case["weights"]
            .as_array()
            .map(|w| w.iter().map(|x| x.as_f64().unwrap()).collect());
        let base = fixture("base.safetensors");
        let base = method.needs_base().then_some(base.as_path());
        let out = dir.path().join(format!("{name}.safetensors"));
        merge(base, &models(), method, weights, &out);
        let worst = assert_close(&out, &fixture(&format!("expected_{name}.safetensors")));
        eprintln!("{name}: largest error {worst:e} of the tensor scale");
    }
}

/// A base of zeros and one model of `n` distinct non-zero values over several chunks, so that DARE's output
/// reveals its mask: `out = f32(τ / density)` where kept, 0 where dropped.
fn dare_inputs(dir: &Path, n: usize) -> (PathBuf, PathBuf, Vec<f32>) {
    let tau: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() + 1.5).collect();
    let base = dir.join("zeros.safetensors");
    let model = dir.join("model.safetensors");
    let t = |v: Vec<f32>| Tensor::from_vec(v, n, &Device::Cpu).unwrap();
    let small = Tensor::from_vec(vec![0.5f32, -0.25], 2, &Device::Cpu).unwrap();
    save_tensors(
        &base,
        vec![
            ("w".into(), t(vec![0.0; n])),
            ("v".into(), small.zeros_like().unwrap()),
        ],
    )
    .unwrap();
    save_tensors(
        &model,
        vec![("w".into(), t(tau.clone())), ("v".into(), small)],
    )
    .unwrap();
    (base, model, tau)
}

fn dare(density: f64, seed: u64, rescale: DareRescale) -> Dare {
    Dare {
        density,
        lambda: 1.0,
        seed,
        rescale,
    }
}

#[test]
fn dare_keeps_about_density_rescales_by_its_inverse_and_repeats_with_its_seed() {
    let dir = tempfile::tempdir().unwrap();
    let n = 200_000; // three chunks and a part
    let (base, model, tau) = dare_inputs(dir.path(), n);
    let density = 0.3;
    for (label, method) in [
        (
            "linear",
            MergeMethod::DareLinear(dare(density, 7, DareRescale::InverseDensity)),
        ),
        (
            "ties",
            MergeMethod::DareTies(dare(density, 7, DareRescale::InverseDensity)),
        ),
    ] {
        let out = dir.path().join(format!("{label}.safetensors"));
        merge(
            Some(&base),
            std::slice::from_ref(&model),
            method,
            None,
            &out,
        );
        let got = values(&Checkpoint::open(&out).unwrap(), "w");
        let mut kept = 0;
        for (g, t) in got.iter().zip(&tau) {
            if *g != 0.0 {
                assert_eq!(*g, (*t as f64 / density) as f32 as f64, "{label}");
                kept += 1;
            }
        }
        // Binomial(n, 0.3): σ ≈ 205 entries, so 5σ ≈ 0.5 % of n.
        let fraction = kept as f64 / n as f64;
        assert!(
            (fraction - density).abs() < 0.005,
            "{label}: kept {fraction}"
        );
        let again = dir.path().join(format!("{label}-again.safetensors"));
        merge(
            Some(&base),
            std::slice::from_ref(&model),
            method,
            None,
            &again,
        );
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(&again).unwrap(),
            "{label}"
        );
    }
    let other_seed = dir.path().join("seed8.safetensors");
    let method = MergeMethod::DareLinear(dare(density, 8, DareRescale::InverseDensity));
    merge(
        Some(&base),
        std::slice::from_ref(&model),
        method,
        None,
        &other_seed,
    );
    assert_ne!(
        values(&Checkpoint::open(&other_seed).unwrap(), "w"),
        values(
            &Checkpoint::open(dir.path().join("linear.safetensors")).unwrap(),
            "w"
        )
    );
}

#[test]
fn a_dare_mask_depends_on_the_tensor_name_not_on_the_other_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let (base, model, _) = dare_inputs(dir.path(), 1000);
    // The same `w` alone in its files.
    let (base_w, model_w) = (
        dir.path().join("base_w.safetensors"),
        dir.path().join("model_w.safetensors"),
    );
    for (from, to) in [(&base, &base_w), (&model, &model_w)] {
        let c = Checkpoint::open(from).unwrap();
        save_tensors(to, vec![("w".into(), c.load("w", &Device::Cpu).unwrap())]).unwrap();
    }
    let method = MergeMethod::DareLinear(dare(0.5, 3, DareRescale::InverseDensity));
    let (both, alone) = (
        dir.path().join("both.safetensors"),
        dir.path().join("alone.safetensors"),
    );
    merge(Some(&base), &[model], method, None, &both);
    merge(Some(&base_w), &[model_w], method, None, &alone);
    assert_eq!(
        values(&Checkpoint::open(&both).unwrap(), "w"),
        values(&Checkpoint::open(&alone).unwrap(), "w")
    );
}

#[test]
fn dare_l1_rescale_keeps_each_tensor_l1_norm() {
    let dir = tempfile::tempdir().unwrap();
    let (base, model, tau) = dare_inputs(dir.path(), 100_000);
    let out = dir.path().join("l1.safetensors");
    let method = MergeMethod::DareLinear(dare(0.2, 1, DareRescale::L1));
    merge(Some(&base), &[model], method, None, &out);
    let got = values(&Checkpoint::open(&out).unwrap(), "w");
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(f64::abs).sum::<f64>();
    let (before, after) = (
        norm(&mut tau.iter().map(|&t| t as f64)),
        norm(&mut got.iter().copied()),
    );
    assert!((after / before - 1.0).abs() < 1e-6, "{after} vs {before}");
    let kept = got.iter().filter(|g| **g != 0.0).count() as f64 / got.len() as f64;
    assert!((kept - 0.2).abs() < 0.01, "{kept}");
}

/// Tiny bundles: the fixture models as the transformer of a bundle with other parts to copy.
fn bundle(dir: &Path, name: &str, weights: &Path) -> PathBuf {
    let root = dir.join(name);
    for sub in ["transformer", "vae"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let dit_config =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/dit_tiny/config.json");
    std::fs::copy(dit_config, root.join("transformer/config.json")).unwrap();
    std::fs::copy(
        weights,
        root.join("transformer/diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    std::fs::write(
        root.join("vae/config.json"),
        format!("{{\"from\": \"{name}\"}}"),
    )
    .unwrap();
    std::fs::write(
        root.join("orrery_sampling.json"),
        format!("{{\"from\": \"{name}\"}}"),
    )
    .unwrap();
    std::fs::write(root.join("train_config.json"), "{}").unwrap();
    root
}

#[test]
fn bundles_merge_the_transformer_and_copy_the_rest_of_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let bundles: Vec<PathBuf> = models()
        .iter()
        .enumerate()
        .map(|(i, m)| bundle(dir.path(), &format!("m{i}"), m))
        .collect();
    let base = bundle(dir.path(), "base", &fixture("base.safetensors"));
    let out = dir.path().join("merged");
    let merger = Merger::open(
        Some(&base),
        &bundles,
        MergeOptions {
            method: MergeMethod::Ties {
                density: 0.5,
                lambda: 0.8,
            },
            weights: Some(vec![1.0, 0.5, 2.0]),
        },
    )
    .unwrap();
    assert!(merger.is_bundle());
    let seen = std::cell::Cell::new(0);
    merger.write(&out, &|_| seen.set(seen.get() + 1)).unwrap();
    assert_eq!(seen.get(), merger.tensor_count());
    assert_close(
        &out.join("transformer/diffusion_pytorch_model.safetensors"),
        &fixture("expected_ties_weighted.safetensors"),
    );
    for copied in [
        "transformer/config.json",
        "vae/config.json",
        "orrery_sampling.json",
    ] {
        assert_eq!(
            std::fs::read(out.join(copied)).unwrap(),
            std::fs::read(bundles[0].join(copied)).unwrap(),
            "{copied}"
        );
    }
    assert!(!out.join("train_config.json").exists());
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("merge_config.json")).unwrap())
            .unwrap();
    assert_eq!(record["method"], "ties");
    assert_eq!(record["density"], 0.5);
    // Nothing else was left beside the output.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["base", "m0", "m1", "m2", "merged"]);
    // A second merge into the same folder is refused before any work.
    let err = merger.write(&out, &|_| {}).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

/// Gives a bundle orrery's word encoder: `vocab` in its config, `weights` as its model.
fn with_word_encoder(bundle: &Path, vocab: &[&str], weights: &Path) {
    let dir = bundle.join("text_encoder");
    std::fs::create_dir_all(&dir).unwrap();
    let config =
        serde_json::json!({"model_type": "orrery_word_encoder", "vocab": vocab, "width": 8});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(weights, dir.join("model.safetensors")).unwrap();
}

#[allow(clippy::result_large_err)] // the library's error type, as `merge` returns it
fn ties_merge(base: &Path, bundles: &[PathBuf], out: &Path) -> Result<(), MergeError> {
    let options = MergeOptions {
        method: MergeMethod::Ties {
            density: 0.5,
            lambda: 0.8,
        },
        weights: Some(vec![1.0, 0.5, 2.0]),
    };
    Merger::open(Some(base), bundles, options)?.write(out, &|_| {})
}

#[test]
fn word_encoders_trained_with_the_dits_are_merged_and_frozen_ones_copied() {
    let dir = tempfile::tempdir().unwrap();
    let make = |name: &str, transformer: &Path, words: &Path, vocab: &[&str]| {
        let b = bundle(dir.path(), name, transformer);
        with_word_encoder(&b, vocab, words);
        b
    };
    let vocab = ["ball", "red"];
    // Full fine-tunes: each bundle's word encoder is its own (the fixture models again).
    let bundles: Vec<PathBuf> = models()
        .iter()
        .enumerate()
        .map(|(i, m)| make(&format!("m{i}"), m, m, &vocab))
        .collect();
    let base_model = fixture("base.safetensors");
    let base = make("base", &base_model, &base_model, &vocab);
    let out = dir.path().join("merged");
    ties_merge(&base, &bundles, &out).unwrap();
    assert_close(
        &out.join("text_encoder/model.safetensors"),
        &fixture("expected_ties_weighted.safetensors"),
    );
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("merge_config.json")).unwrap())
            .unwrap();
    assert_eq!(
        record["merged"],
        serde_json::json!(["transformer", "text_encoder"])
    );

    // LoRA fine-tunes freeze it: the same word encoder everywhere is copied as it is.
    let frozen: Vec<PathBuf> = models()
        .iter()
        .enumerate()
        .map(|(i, m)| make(&format!("f{i}"), m, &base_model, &vocab))
        .collect();
    let out = dir.path().join("merged-frozen");
    ties_merge(&base, &frozen, &out).unwrap();
    assert_eq!(
        std::fs::read(out.join("text_encoder/model.safetensors")).unwrap(),
        std::fs::read(&base_model).unwrap()
    );

    // Word encoders of other vocabularies cannot be merged.
    let other = make("other", &models()[1], &models()[1], &["ball", "blue"]);
    let mixed = [bundles[0].clone(), other, bundles[2].clone()];
    let err = ties_merge(&base, &mixed, &dir.path().join("merged-mixed")).unwrap_err();
    assert!(err.to_string().contains("vocabulary"), "{err}");
    assert!(!dir.path().join("merged-mixed").exists());
}

#[test]
fn mixing_bundles_and_checkpoints_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = bundle(dir.path(), "b", &fixture("model0.safetensors"));
    let err = Merger::open(
        None,
        &[b, fixture("model1.safetensors")],
        MergeOptions {
            method: MergeMethod::Soup,
            weights: None,
        },
    )
    .err()
    .unwrap();
    assert!(matches!(err, MergeError::Bundle { .. }), "{err}");
    assert!(err.to_string().contains("model1.safetensors"), "{err}");
}

/// model0's tensors with one changed by `change` (None: left out), written to `dir/name`.
fn altered(dir: &Path, name: &str, change: impl Fn(&str, Tensor) -> Option<Tensor>) -> PathBuf {
    let c = Checkpoint::open(fixture("model0.safetensors")).unwrap();
    let tensors = c
        .tensors()
        .iter()
        .filter_map(|t| {
            change(&t.name, c.load(&t.name, &Device::Cpu).unwrap()).map(|x| (t.name.clone(), x))
        })
        .collect();
    let path = dir.join(name);
    save_tensors(&path, tensors).unwrap();
    path
}

const Q: &str = "blocks.0.attn.to_q.weight";

fn open_err(
    base: Option<&Path>,
    models: &[PathBuf],
    method: MergeMethod,
    weights: Option<Vec<f64>>,
) -> MergeError {
    Merger::open(base, models, MergeOptions { method, weights })
        .err()
        .expect("the merge should be refused")
}

#[test]
fn inputs_that_cannot_be_merged_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let soup = MergeMethod::Soup;
    let [m0, m1, _] = <[PathBuf; 3]>::try_from(models()).unwrap();
    let reshaped = altered(dir.path(), "reshaped.safetensors", |n, t| {
        Some(if n == Q {
            t.reshape((12, 16)).unwrap()
        } else {
            t
        })
    });
    let err = open_err(None, &[m0.clone(), reshaped], soup, None);
    assert!(matches!(err, MergeError::ShapeMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(Q) && text.contains("[16, 12]") && text.contains("[12, 16]"),
        "{text}"
    );
    assert!(
        text.contains("model0.safetensors") && text.contains("reshaped.safetensors"),
        "{text}"
    );

    let missing = altered(dir.path(), "missing.safetensors", |n, t| {
        (n != Q).then_some(t)
    });
    let err = open_err(None, &[m0.clone(), missing.clone()], soup, None);
    assert!(matches!(err, MergeError::MissingTensor { .. }), "{err}");
    assert!(
        err.to_string().contains(Q) && err.to_string().contains("missing.safetensors"),
        "{err}"
    );
    // The same, the other way round, and as a base.
    let err = open_err(None, &[missing.clone(), m0.clone()], soup, None);
    assert!(err.to_string().contains(Q), "{err}");
    let ties = MergeMethod::Ties {
        density: 0.2,
        lambda: 1.0,
    };
    let err = open_err(Some(&missing), &[m0.clone(), m1.clone()], ties, None);
    assert!(matches!(err, MergeError::MissingTensor { .. }), "{err}");

    let integer = altered(dir.path(), "integer.safetensors", |n, t| {
        Some(if n == Q {
            t.to_dtype(candle_core::DType::I64).unwrap()
        } else {
            t
        })
    });
    for models in [[m0.clone(), integer.clone()], [integer.clone(), m0.clone()]] {
        let err = open_err(None, &models, soup, None);
        assert!(matches!(err, MergeError::NotFloat { .. }), "{err}");
        assert!(
            err.to_string().contains("int64") && err.to_string().contains(Q),
            "{err}"
        );
    }

    let f16 = altered(dir.path(), "f16.safetensors", |n, t| {
        Some(if n == Q {
            t.to_dtype(candle_core::DType::F16).unwrap()
        } else {
            t
        })
    });
    let err = open_err(None, &[m0.clone(), f16], soup, None);
    assert!(matches!(err, MergeError::DTypeMismatch { .. }), "{err}");

    let truncated = dir.path().join("truncated.safetensors");
    let bytes = std::fs::read(&m1).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = open_err(None, &[m0.clone(), truncated], soup, None);
    assert!(err.to_string().contains("truncated.safetensors"), "{err}");
}

#[test]
fn options_are_checked_before_any_work() {
    let ms = models();
    let base = fixture("base.safetensors");
    let ties = |density: f64| MergeMethod::Ties {
        density,
        lambda: 1.0,
    };
    for density in [0.0, -0.1, 1.5, f64::NAN] {
        let err = open_err(Some(&base), &ms, ties(density), None);
        assert!(err.to_string().starts_with("density"), "{err}");
    }
    let err = open_err(Some(&base), &ms, ties(0.2), Some(vec![1.0, 2.0]));
    assert!(err.to_string().contains("2 weights for 3 models"), "{err}");
    let err = open_err(None, &ms, ties(0.2), None);
    assert!(err.to_string().starts_with("base"), "{err}");
    let err = open_err(Some(&base), &ms, MergeMethod::Soup, None);
    assert!(err.to_string().contains("takes no base"), "{err}");
    let err = open_err(None, &ms, MergeMethod::Soup, Some(vec![1.0, -1.0, 0.0]));
    assert!(err.to_string().contains("sum of the weights"), "{err}");
    let err = open_err(
        Some(&base),
        &ms,
        MergeMethod::TaskArithmetic {
            lambda: f64::INFINITY,
        },
        None,
    );
    assert!(err.to_string().starts_with("lambda"), "{err}");
}

#[test]
fn a_file_output_must_be_safetensors_and_nothing_is_left_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let merger = Merger::open(
        None,
        &models(),
        MergeOptions {
            method: MergeMethod::Soup,
            weights: None,
        },
    )
    .unwrap();
    let err = merger
        .write(&dir.path().join("out.pt"), &|_| {})
        .unwrap_err();
    assert!(err.to_string().contains(".safetensors"), "{err}");
    let err = merger
        .write(&dir.path().join("no-such-folder/out.safetensors"), &|_| {})
        .unwrap_err();
    assert!(err.to_string().contains("no-such-folder"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

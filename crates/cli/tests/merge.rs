//! `orrery merge` end to end: the NumPy reference through the command line, DARE's seed, and inputs or flags that
//! cannot work giving a clear error, a non-zero exit and no output.

use std::path::{Path, PathBuf};
use std::process::Output;

use candle_core::{Device, Tensor};
use orrery_nn::checkpoint::save_tensors;
use orrery_nn::Checkpoint;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/merge")
        .join(name)
}

fn models() -> Vec<String> {
    (0..3)
        .map(|i| path_str(&fixture(&format!("model{i}.safetensors"))))
        .collect()
}

fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

fn orrery(args: &[String]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("merge")
        .args(args)
        .output()
        .expect("run orrery")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Float32 within 1e-6 of the tensor's scale, bfloat16 within one step (as crates/train/tests/merge.rs states).
fn assert_close(got: &Path, want: &Path) {
    let (got, want) = (
        Checkpoint::open(got).unwrap(),
        Checkpoint::open(want).unwrap(),
    );
    assert_eq!(got.tensors().len(), want.tensors().len());
    for t in want.tensors() {
        let load = |c: &Checkpoint| -> Vec<f64> {
            let x = c
                .load_as(&t.name, candle_core::DType::F64, &Device::Cpu)
                .unwrap();
            x.flatten_all().unwrap().to_vec1().unwrap()
        };
        let (g, w) = (load(&got), load(&want));
        assert_eq!(got.get(&t.name).unwrap().dtype, t.dtype, "{}", t.name);
        let scale = w.iter().fold(1e-30f64, |m, x| m.max(x.abs()));
        let tolerance = if t.dtype == orrery_nn::DType::BF16 {
            2f64.powi(-8)
        } else {
            1e-6
        };
        for (a, b) in g.iter().zip(&w) {
            assert!((a - b).abs() <= tolerance * scale, "{}: {a} vs {b}", t.name);
        }
    }
}

#[test]
fn merge_command_equals_the_numpy_reference() {
    let dir = tempfile::tempdir().unwrap();
    let base = path_str(&fixture("base.safetensors"));
    let cases: [(&str, Vec<&str>); 3] = [
        (
            "soup_weighted",
            vec!["--method", "soup", "--weights", "1,2,0.5"],
        ),
        (
            "task_arithmetic",
            vec![
                "--method",
                "task-arithmetic",
                "--base",
                &base,
                "--weights",
                "1,0.5,2",
                "--lambda",
                "0.7",
            ],
        ),
        (
            "ties_negative_weight",
            vec![
                "--method",
                "ties",
                "--base",
                &base,
                "--weights",
                "0.3,-0.3,0.4",
                "--density",
                "0.7",
                "--lambda",
                "1.2",
            ],
        ),
    ];
    for (name, flags) in cases {
        let out = dir.path().join(format!("{name}.safetensors"));
        let mut a = args(&flags);
        a.extend(["--out".into(), path_str(&out)]);
        a.extend(models());
        let run = orrery(&a);
        assert!(
            run.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert_close(&out, &fixture(&format!("expected_{name}.safetensors")));
    }
    // ties with no --density and no --weights: the paper's 0.2 and 1 each.
    let out = dir.path().join("ties_default.safetensors");
    let mut a = args(&[
        "--method",
        "ties",
        "--base",
        &base,
        "--out",
        &path_str(&out),
    ]);
    a.extend(models());
    assert!(orrery(&a).status.success());
    assert_close(&out, &fixture("expected_ties_default.safetensors"));
}

#[test]
fn dare_with_the_same_seed_writes_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let base = path_str(&fixture("base.safetensors"));
    let run = |seed: &str, out: &str| -> Vec<u8> {
        let out = dir.path().join(out);
        let mut a = args(&[
            "--method",
            "dare-ties",
            "--base",
            &base,
            "--density",
            "0.3",
            "--seed",
            seed,
        ]);
        a.extend(["--out".into(), path_str(&out)]);
        a.extend(models());
        let run = orrery(&a);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        std::fs::read(out).unwrap()
    };
    let first = run("5", "a.safetensors");
    assert_eq!(first, run("5", "b.safetensors"));
    assert_ne!(first, run("6", "c.safetensors"));
}

/// model0 with `Q` replaced by `q` (None: left out).
fn with_q(dir: &Path, name: &str, q: Option<Tensor>) -> String {
    const Q: &str = "blocks.0.attn.to_q.weight";
    let c = Checkpoint::open(fixture("model0.safetensors")).unwrap();
    let mut tensors: Vec<(String, Tensor)> = c
        .tensors()
        .iter()
        .filter(|t| t.name != Q)
        .map(|t| (t.name.clone(), c.load(&t.name, &Device::Cpu).unwrap()))
        .collect();
    if let Some(q) = q {
        tensors.push((Q.into(), q));
    }
    let path = dir.join(name);
    save_tensors(&path, tensors).unwrap();
    path_str(&path)
}

#[test]
fn bad_inputs_and_flags_fail_clearly_and_leave_no_output() {
    let inputs = tempfile::tempdir().unwrap();
    let d = inputs.path();
    let q = Tensor::zeros((16, 12), candle_core::DType::F32, &Device::Cpu).unwrap();
    let reshaped = with_q(
        d,
        "reshaped.safetensors",
        Some(q.reshape((12, 16)).unwrap()),
    );
    let missing = with_q(d, "missing.safetensors", None);
    let integer = with_q(
        d,
        "integer.safetensors",
        Some(q.to_dtype(candle_core::DType::I64).unwrap()),
    );
    let truncated = d.join("truncated.safetensors");
    let bytes = std::fs::read(fixture("model1.safetensors")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let truncated = path_str(&truncated);
    let text = d.join("notes.txt");
    std::fs::write(&text, "not weights").unwrap();
    let text = path_str(&text);
    let [m0, m1, m2] = <[String; 3]>::try_from(models()).unwrap();
    let base = path_str(&fixture("base.safetensors"));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--method", "soup", &m0, &reshaped], "shape [16, 12]"),
        (vec!["--method", "soup", &m0, &missing], "not in"),
        (
            vec!["--method", "soup", &m0, &integer],
            "int64, not a float tensor",
        ),
        (
            vec!["--method", "soup", &m0, &truncated],
            "truncated.safetensors",
        ),
        (vec!["--method", "ties", &m0, &m1], "needs a base model"),
        (
            vec!["--method", "soup", "--base", &base, &m0, &m1],
            "takes no base",
        ),
        (
            vec!["--method", "soup", "--weights", "1,2,3", &m0, &m1],
            "3 weights for 2 models",
        ),
        (
            vec![
                "--method",
                "ties",
                "--base",
                &base,
                "--density",
                "0",
                &m0,
                &m1,
            ],
            "(0, 1]",
        ),
        (
            vec![
                "--method",
                "dare-linear",
                "--base",
                &base,
                "--density",
                "1.5",
                &m0,
                &m1,
            ],
            "(0, 1]",
        ),
        (
            vec!["--method", "ties", "--base", &base, "--seed", "1", &m0, &m1],
            "--seed does not apply",
        ),
        (
            vec!["--method", "soup", "--lambda", "2", &m0, &m1],
            "--lambda does not apply",
        ),
        (
            vec!["--method", "soup", "--weights", "1,x", &m0, &m1],
            "invalid value",
        ),
        (
            vec!["--method", "soup", &m0, &m1, &m2, &text],
            "not a checkpoint",
        ),
    ];
    for (flags, message) in cases {
        let out_dir = tempfile::tempdir().unwrap();
        for out in [
            out_dir.path().join("out.safetensors"),
            out_dir.path().join("merged"),
        ] {
            let mut a = args(&flags);
            a.extend(["--out".into(), path_str(&out)]);
            let run = orrery(&a);
            let stderr = String::from_utf8_lossy(&run.stderr);
            // 1 for orrery's errors, 2 for clap's; never a panic (101).
            assert!(
                matches!(run.status.code(), Some(1 | 2)),
                "{flags:?}: {:?} {stderr}",
                run.status
            );
            assert!(
                stderr.contains(message),
                "{flags:?}: expected `{message}` in: {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
            assert_eq!(
                std::fs::read_dir(out_dir.path()).unwrap().count(),
                0,
                "{flags:?} left a file"
            );
        }
    }
    let out_dir = tempfile::tempdir().unwrap();
    let run = orrery(&[
        "--method".into(),
        "soup".into(),
        "--out".into(),
        path_str(&out_dir.path().join("out.pt")),
        m0,
        m1,
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("name it .safetensors"));
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 0);
}

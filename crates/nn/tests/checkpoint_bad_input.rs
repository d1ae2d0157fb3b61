//! Truncated, corrupted and mislabelled checkpoints give errors, never panics; a deterministic mutation fuzz
//! over every fixture runs in the test suite.

use std::path::{Path, PathBuf};

use candle_core::Device;
use orrery_nn::Checkpoint;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

/// Opens a checkpoint and reads every tensor; any error is fine, a panic is not.
fn open_and_read_all(path: &Path) -> Result<(), String> {
    let ckpt = Checkpoint::open(path).map_err(|e| e.to_string())?;
    for t in ckpt.tensors() {
        ckpt.bytes(&t.name).map_err(|e| e.to_string())?;
        if t.dtype.to_candle().is_some() {
            ckpt.load(&t.name, &Device::Cpu)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn single_files() -> Vec<PathBuf> {
    ["f32_extras.pt", "bf16_nested.pt", "plain.safetensors"]
        .iter()
        .map(|n| testdata(&format!("checkpoint/{n}")))
        .collect()
}

#[test]
fn every_truncation_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for src in single_files() {
        let bytes = std::fs::read(&src).unwrap();
        let path = dir.path().join(src.file_name().unwrap());
        for cut in (0..bytes.len()).step_by(7) {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let result = std::panic::catch_unwind(|| open_and_read_all(&path));
            match result {
                Ok(Err(msg)) => assert!(!msg.is_empty()),
                Ok(Ok(())) => panic!(
                    "{} truncated to {cut} of {} bytes was accepted",
                    src.display(),
                    bytes.len()
                ),
                Err(_) => panic!("{} truncated to {cut} bytes panicked", src.display()),
            }
        }
    }
}

#[test]
fn wrong_content_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("image.pt", b"\x89PNG\r\n\x1a\n0000", "PNG image"),
        (
            "video.safetensors",
            b"\x00\x00\x00\x18ftypisom0000",
            "MP4 video",
        ),
        ("empty.pt", b"", "empty file"),
        (
            "legacy.pt",
            b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8",
            "legacy",
        ),
    ];
    for (name, bytes, want) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = Checkpoint::open(&path).unwrap_err().to_string();
        assert!(err.contains(want) && err.contains(name), "{name}: {err}");
    }
    let err = Checkpoint::open(dir.path().join("absent.pt"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.pt"), "{err}");
}

#[test]
fn shard_index_naming_a_missing_tensor_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = testdata("checkpoint/sharded");
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let index_path = dir.path().join("model.safetensors.index.json");
    let index = std::fs::read_to_string(&index_path).unwrap();
    let broken = index.replace("model.norm.weight", "model.final_norm.weight");
    std::fs::write(&index_path, broken).unwrap();
    let err = Checkpoint::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("model.final_norm.weight") && err.contains("model-00002-of-00002"),
        "{err}"
    );
    std::fs::write(&index_path, "{not json").unwrap();
    let err = Checkpoint::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("shard index JSON"), "{err}");
}

/// xorshift64*: a tiny deterministic generator so the fuzz run is reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Mutates fixtures (byte flips, overwrites with boundary values, chunk deletions and duplications) and opens
/// them: any outcome but a panic passes.
#[test]
fn mutation_fuzz_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut executions = 0;
    for src in single_files() {
        let original = std::fs::read(&src).unwrap();
        let path = dir.path().join(src.file_name().unwrap());
        for _ in 0..300 {
            let mut bytes = original.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                match rng.below(4) {
                    0 => bytes[at] ^= 1 << rng.below(8),
                    1 => bytes[at] = [0x00, 0xff, 0x7f, 0x80][rng.below(4)],
                    2 => {
                        let end = (at + rng.below(64)).min(bytes.len());
                        bytes.drain(at..end);
                    }
                    _ => {
                        let end = (at + rng.below(64)).min(bytes.len());
                        let chunk = bytes[at..end].to_vec();
                        bytes.splice(at..at, chunk);
                    }
                }
                if bytes.is_empty() {
                    break;
                }
            }
            std::fs::write(&path, &bytes).unwrap();
            let result = std::panic::catch_unwind(|| open_and_read_all(&path));
            assert!(
                result.is_ok(),
                "{} mutated panicked; input kept at {}",
                src.display(),
                path.display()
            );
            executions += 1;
        }
    }
    assert_eq!(executions, 900);
}

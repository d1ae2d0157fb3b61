#![no_main]
//! Opening a checkpoint file (zip or safetensors, recognised by content) and reading every tensor.

use std::io::Write;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write");
    if let Ok(ckpt) = orrery_nn::Checkpoint::open(file.path()) {
        for t in ckpt.tensors() {
            let _ = ckpt.bytes(&t.name);
        }
    }
});

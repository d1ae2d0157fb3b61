//! The embedded default model, orrery-physics-nano: its files are compiled into the binary and written once to
//! a cache folder (`$ORRERY_CACHE`, else `$XDG_CACHE_HOME/orrery`, else `~/.cache/orrery`), named by a hash of
//! their bytes, so `orrery generate` works offline with nothing but the binary.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// The model's name.
pub const NAME: &str = "orrery-physics-nano";

macro_rules! model_file {
    ($path:literal) => {
        (
            $path,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../models/orrery-physics-nano/",
                $path
            ))
            .as_slice(),
        )
    };
}

const FILES: &[(&str, &[u8])] = &[
    model_file!("orrery_sampling.json"),
    model_file!("train_config.json"),
    model_file!("transformer/config.json"),
    model_file!("transformer/diffusion_pytorch_model.safetensors"),
    model_file!("vae/config.json"),
    model_file!("vae/diffusion_pytorch_model.safetensors"),
    model_file!("text_encoder/config.json"),
    model_file!("text_encoder/model.safetensors"),
];

fn content_hash() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, bytes) in FILES {
        for b in name.bytes().chain(bytes.iter().copied()) {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The default model's bundle folder, unpacked on first use (a folder appears only complete).
pub fn bundle_dir() -> Result<PathBuf> {
    let root = crate::cache::cache_root()?;
    let dir = root.join(format!("{NAME}-{:016x}", content_hash()));
    if dir.is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let tmp = root.join(format!(".{NAME}-{}.partial", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    for (name, bytes) in FILES {
        let path = tmp.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        // Another process unpacked it first.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => Err(e).with_context(|| format!("moving the default model to {}", dir.display())),
    }
}

//! A prompt-embedding cache on disk, keyed by (encoder fingerprint, prompt): repeated prompts and training
//! captions are encoded once. One safetensors file per entry, written atomically; each file also stores its full
//! key, so a hash collision or a foreign file is a miss, never a wrong embedding.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use orrery_nn::checkpoint::save_tensors;
use orrery_nn::Checkpoint;

use crate::encoder::Fnv64;
use crate::error::{Result, TextError};

#[derive(Debug, Clone)]
pub struct PromptCache {
    dir: PathBuf,
}

impl PromptCache {
    /// A cache in `dir` (created if missing).
    pub fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| TextError::Cache {
            path: dir.to_owned(),
            detail: e.to_string(),
        })?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn key(encoder: &str, prompt: &str) -> String {
        format!("{encoder}\n{prompt}")
    }

    fn path(&self, key: &str) -> PathBuf {
        let mut h = Fnv64::default();
        h.write(key.as_bytes());
        self.dir.join(format!("{:016x}.safetensors", h.finish()))
    }

    /// The cached embedding of `prompt` by `encoder` (a fingerprint), if present and intact.
    pub fn get(&self, encoder: &str, prompt: &str, device: &Device) -> Option<Tensor> {
        let key = Self::key(encoder, prompt);
        let file = Checkpoint::open(self.path(&key)).ok()?;
        let stored = file.load("key", &Device::Cpu).ok()?.to_vec1::<u8>().ok()?;
        if stored != key.as_bytes() {
            return None;
        }
        file.load("prompt_embeds", device).ok()
    }

    /// Whether an intact entry for `prompt` by `encoder` is present (reads only its key).
    pub fn contains(&self, encoder: &str, prompt: &str) -> bool {
        let key = Self::key(encoder, prompt);
        let Ok(file) = Checkpoint::open(self.path(&key)) else {
            return false;
        };
        file.load("key", &Device::Cpu)
            .ok()
            .and_then(|k| k.to_vec1::<u8>().ok())
            .is_some_and(|k| k == key.as_bytes())
    }

    pub fn put(&self, encoder: &str, prompt: &str, embeds: &Tensor) -> Result<()> {
        let key = Self::key(encoder, prompt);
        let path = self.path(&key);
        let key_bytes = Tensor::from_vec(
            key.into_bytes(),
            (encoder.len() + 1 + prompt.len(),),
            &Device::Cpu,
        )?;
        save_tensors(
            &path,
            vec![
                ("prompt_embeds".into(), embeds.clone()),
                ("key".into(), key_bytes.to_dtype(DType::U8)?),
            ],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_there_only_for_its_encoder_and_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PromptCache::new(dir.path()).unwrap();
        let e = Tensor::ones((1, 2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(!cache.contains("enc", "a ball"));
        cache.put("enc", "a ball", &e).unwrap();
        assert!(cache.contains("enc", "a ball"));
        assert!(!cache.contains("other", "a ball"));
        assert!(!cache.contains("enc", "a box"));
        let back = cache.get("enc", "a ball", &Device::Cpu).unwrap();
        assert_eq!(back.dims(), &[1, 2, 3]);
    }
}

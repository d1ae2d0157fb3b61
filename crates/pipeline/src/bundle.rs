//! Model bundles: everything `orrery generate` needs in one folder.
//!
//! Layouts recognised:
//! - diffusers-style: `transformer/` (config.json + weights), `vae/` (AutoencoderKLWan folder), `text_encoder/`
//!   (Hugging Face Qwen2.5-VL / Cosmos-Reason1 folder) with `tokenizer.json` in it or in `tokenizer/`;
//! - official: a DiT `.pt` (the 2B or 14B preset, told apart by the stored width; with action embedders, the
//!   action-conditioned network), `tokenizer.pth` (the Wan2.1 VAE) and a Reason1 folder (any subfolder whose
//!   config.json is a Qwen2.5-VL). A diffusers transformer `config.json` beside the `.pt` gives its shape
//!   instead (a network of another size in the official layout, such as the tests' tiny one), and a `vae/`
//!   folder may stand for `tokenizer.pth`.
//!
//! `orrery_sampling.json` beside them, if present, holds the sampling defaults (`schedule`: "karras" or a shift
//! number, `steps`, `guidance`, `cond_timestep` (negative = none), `frames`, `width`, `height`, `fps`, and per
//! mode `"text2world"`, `"image2world"`, `"video2world"`: `{"steps", "guidance"}` where that mode samples
//! otherwise, and `keep_observed`: `{"threshold", "margin"}`, where Image2World and Video2World keep the observed
//! pixels); without it the 2B post-trained defaults apply.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use orrery_dit::{DitConfig, DitModelDir};
use orrery_nn::Checkpoint;
use orrery_text::word_encoder::WORD_ENCODER_TYPE;
use orrery_text::{Overflow, PromptCache, Reason1Embedder, TextWeights, WordEncoder};
use orrery_vae::VaeModelPath;
use serde_json::Value;

use crate::defaults::{BundleDefaults, SAMPLING_FILE};
use crate::error::{PipelineError, Result};

/// Which text encoder a bundle carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoderKind {
    /// Cosmos-Reason1 (Qwen2.5-VL) multi-layer embeddings: the released checkpoints.
    Reason1,
    /// orrery's small word encoder (`model_type` "orrery_word_encoder"): our own models.
    Words,
}

/// The text encoder's folder and where its tokenizer is.
#[derive(Debug, Clone)]
pub struct TextEncoderPaths {
    pub model: PathBuf,
    pub tokenizer: PathBuf,
    pub kind: TextEncoderKind,
}

#[derive(Debug, Clone)]
pub struct ModelBundle {
    pub root: PathBuf,
    pub dit: DitModelDir,
    /// The DiT of Text2World, Image2World and Video2World where the sampling defaults name another folder than
    /// `transformer/` for the mode; the same architecture as `dit`.
    pub mode_dits: [Option<DitModelDir>; 3],
    pub vae: VaeModelPath,
    pub text: Option<TextEncoderPaths>,
    pub defaults: BundleDefaults,
}

fn bundle_error(path: &Path, detail: impl Into<String>) -> PipelineError {
    PipelineError::Bundle {
        path: path.to_owned(),
        detail: detail.into(),
    }
}

fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.is_file() && p.extension().and_then(|e| e.to_str()) == Some(ext));
    v.sort();
    v
}

/// Whether `dir/config.json` is a diffusers DiT configuration (`_class_name` "CosmosTransformer3DModel").
fn has_dit_config(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .is_some_and(|v| {
            v.get("_class_name").and_then(Value::as_str) == Some("CosmosTransformer3DModel")
        })
}

/// The official DiT `.pt`: its preset from the stored model width, or the shape a diffusers `config.json` beside
/// it gives.
fn official_dit(root: &Path) -> Result<DitModelDir> {
    let pts: Vec<PathBuf> = files_with_ext(root, "pt");
    let [weights] = pts.as_slice() else {
        return Err(bundle_error(
            root,
            format!(
                "no transformer/ folder and not exactly one DiT .pt file (found {})",
                pts.len()
            ),
        ));
    };
    if has_dit_config(root) {
        return Ok(DitModelDir {
            config: DitConfig::from_diffusers_file(&root.join("config.json"))?,
            weights: weights.clone(),
        });
    }
    let ckpt = Checkpoint::open(weights).map_err(orrery_dit::DitError::from)?;
    let width = ckpt
        .get("net.x_embedder.proj.1.weight")
        .map(|t| t.shape[0])
        .map_err(|_| {
            bundle_error(
                weights,
                "not a Cosmos DiT checkpoint (no net.x_embedder.proj.1.weight)",
            )
        })?;
    let mut config = match width {
        2048 => DitConfig::cosmos_predict2_5_2b(),
        5120 => DitConfig::cosmos_predict2_5_14b(),
        w => {
            return Err(bundle_error(
                weights,
                format!("model width {w} is neither the 2B (2048) nor the 14B (5120)"),
            ))
        }
    };
    // The released action-conditioned checkpoint (`robot/action-cond`): its embedders give the action width
    // (4 actions per latent frame, the official ratio; a folder with config.json may say otherwise).
    if let Ok(fc1) = ckpt.get("net.action_embedder_B_D.fc1.weight") {
        let (hidden, group) = match fc1.shape[..] {
            [h, g] if g % 4 == 0 && g > 0 => (h, g),
            _ => {
                return Err(bundle_error(
                    weights,
                    format!(
                        "action_embedder_B_D.fc1.weight has shape {:?}, expected [hidden, 4 x action_dim]",
                        fc1.shape
                    ),
                ))
            }
        };
        config.action = Some(orrery_dit::ActionConfig {
            action_dim: group / 4,
            temporal_compression_ratio: 4,
            hidden_dim_in_action_embedder: hidden,
        });
    }
    Ok(DitModelDir {
        config,
        weights: weights.clone(),
    })
}

fn model_type(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| {
            v.get("model_type")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
}

fn is_qwen_folder(dir: &Path) -> bool {
    model_type(dir).is_some_and(|m| m.starts_with("qwen2"))
}

fn find_text_encoder(root: &Path) -> Option<TextEncoderPaths> {
    let te = root.join("text_encoder");
    if te.is_dir() && model_type(&te).as_deref() == Some(WORD_ENCODER_TYPE) {
        return Some(TextEncoderPaths {
            model: te.clone(),
            tokenizer: te,
            kind: TextEncoderKind::Words,
        });
    }
    if te.is_dir() {
        let tokenizer = if te.join("tokenizer.json").is_file() {
            te.clone()
        } else {
            root.join("tokenizer")
        };
        return Some(TextEncoderPaths {
            model: te,
            tokenizer,
            kind: TextEncoderKind::Reason1,
        });
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    dirs.sort();
    dirs.into_iter()
        .find(|d| d.is_dir() && is_qwen_folder(d))
        .map(|d| TextEncoderPaths {
            model: d.clone(),
            tokenizer: d,
            kind: TextEncoderKind::Reason1,
        })
}

/// The DiT folders `defaults` names per mode, each checked to hold the architecture of `dit`.
fn mode_dits(
    root: &Path,
    dit: &DitModelDir,
    defaults: &BundleDefaults,
) -> Result<[Option<DitModelDir>; 3]> {
    let mut dirs: [Option<DitModelDir>; 3] = Default::default();
    for (slot, name) in dirs.iter_mut().zip(&defaults.mode_transformers) {
        let Some(name) = name else { continue };
        let folder = root.join(name);
        if !folder.is_dir() {
            return Err(bundle_error(
                &root.join(SAMPLING_FILE),
                format!("names the DiT folder {name:?}, which the bundle does not have"),
            ));
        }
        let mode_dit = DitModelDir::open(&folder)?;
        if mode_dit.config != dit.config {
            return Err(bundle_error(
                &folder,
                "its config.json is another architecture than transformer/'s (a mode's own DiT may differ in \
                 weights only)",
            ));
        }
        *slot = Some(mode_dit);
    }
    Ok(dirs)
}

impl ModelBundle {
    pub fn open(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            return Err(bundle_error(
                root,
                "not a folder (a model bundle is a folder; see `orrery generate --help`)",
            ));
        }
        let dit = if root.join("transformer").is_dir() {
            DitModelDir::open(&root.join("transformer"))?
        } else {
            official_dit(root)?
        };
        let vae = if root.join("vae").exists() {
            VaeModelPath::open(&root.join("vae"))?
        } else if root.join("tokenizer.pth").is_file() {
            VaeModelPath::open(&root.join("tokenizer.pth"))?
        } else {
            return Err(bundle_error(root, "no vae/ folder and no tokenizer.pth"));
        };
        let defaults = BundleDefaults::read(&root.join(SAMPLING_FILE))?;
        let mode_dits = mode_dits(root, &dit, &defaults)?;
        Ok(Self {
            root: root.to_owned(),
            dit,
            mode_dits,
            vae,
            text: find_text_encoder(root),
            defaults,
        })
    }

    /// The negative prompt the bundle's model was trained to take as "unconditional": the empty prompt (the zero
    /// embedding of caption dropout) for word-encoder models, `None` (the caller's default) otherwise.
    pub fn unconditional_prompt(&self) -> Option<&'static str> {
        match &self.text {
            Some(t) if t.kind == TextEncoderKind::Words => Some(""),
            _ => None,
        }
    }

    /// The key under which a [`PromptCache`] holds this bundle's Reason1 embeddings made in `dtype` with
    /// `weights` and `overflow` (a cut prompt's embedding is not the whole prompt's: cached under its own key).
    pub fn prompt_fingerprint(
        &self,
        dtype: DType,
        weights: TextWeights,
        overflow: Overflow,
    ) -> Result<String> {
        let text = self.reason1_paths()?;
        let mut fingerprint = Reason1Embedder::fingerprint_with_tokenizer(
            &text.model,
            &text.tokenizer,
            dtype,
            weights,
        )?;
        if overflow == Overflow::Truncate {
            fingerprint.push_str("+truncate");
        }
        Ok(fingerprint)
    }

    pub(crate) fn reason1_paths(&self) -> Result<&TextEncoderPaths> {
        match &self.text {
            Some(t) if t.kind == TextEncoderKind::Reason1 => Ok(t),
            Some(_) => Err(bundle_error(
                &self.root,
                "the bundle's text encoder is orrery's word encoder, not Reason1",
            )),
            None => Err(bundle_error(
                &self.root,
                "no text encoder in the bundle: pass --prompt-embeds",
            )),
        }
    }

    /// Makes sure `cache` holds the Reason1 embedding of every prompt of `prompts`: the text encoder is loaded
    /// once, only when some are missing, and each embedding is written as it is made (none is kept in memory).
    /// Returns how many were computed.
    pub fn cache_prompts(
        &self,
        prompts: &[&str],
        cache: &PromptCache,
        dtype: DType,
        overflow: Overflow,
    ) -> Result<usize> {
        let text = self.reason1_paths()?;
        let fingerprint = self.prompt_fingerprint(dtype, TextWeights::Full, overflow)?;
        let device = Device::Cpu;
        let mut missing: Vec<&str> = prompts
            .iter()
            .copied()
            .filter(|p| !cache.contains(&fingerprint, p))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(0);
        }
        let embedder = Reason1Embedder::open_with_tokenizer(
            &text.model,
            &text.tokenizer,
            dtype,
            TextWeights::Full,
            &device,
        )?;
        for prompt in &missing {
            let e = embedder.embed(prompt, overflow)?.to_dtype(DType::F32)?;
            cache.put(&fingerprint, prompt, &e)?;
        }
        Ok(missing.len())
    }

    /// Prompt embeddings (1, 512, width) of `prompts`, read from `cache` where present; the text encoder is loaded
    /// only for the others and dropped before returning, so the DiT can be loaded after it within the same memory.
    pub fn encode_prompts(
        &self,
        prompts: &[&str],
        cache: Option<&PromptCache>,
        dtype: DType,
        overflow: Overflow,
    ) -> Result<Vec<Tensor>> {
        let precision = (dtype, TextWeights::Full);
        self.encode_prompts_on(prompts, cache, precision, overflow, &Device::Cpu)
    }

    /// [`Self::encode_prompts`] with the text encoder on `device`, computing in `precision` (type and weight
    /// storage); the embeddings come back on the CPU, so that nothing of the encoder's stays on the device once it
    /// is dropped.
    pub fn encode_prompts_on(
        &self,
        prompts: &[&str],
        cache: Option<&PromptCache>,
        (dtype, weights): (DType, TextWeights),
        overflow: Overflow,
        device: &Device,
    ) -> Result<Vec<Tensor>> {
        let text = self.text.as_ref().ok_or_else(|| {
            bundle_error(
                &self.root,
                "no text encoder in the bundle: pass --prompt-embeds",
            )
        })?;
        let cpu = Device::Cpu;
        if text.kind == TextEncoderKind::Words {
            // Small and fast: no cache.
            let encoder = WordEncoder::open(&text.model, device)?;
            return prompts
                .iter()
                .map(|p| Ok(encoder.embed(p, overflow)?.to_device(&cpu)?))
                .collect();
        }
        let fingerprint = self.prompt_fingerprint(dtype, weights, overflow)?;
        let mut out: Vec<Option<Tensor>> = prompts
            .iter()
            .map(|p| cache.and_then(|c| c.get(&fingerprint, p, &cpu)))
            .collect();
        if out.iter().any(Option::is_none) {
            let embedder = Reason1Embedder::open_with_tokenizer(
                &text.model,
                &text.tokenizer,
                dtype,
                weights,
                device,
            )?;
            for (slot, prompt) in out.iter_mut().zip(prompts) {
                if slot.is_none() {
                    let e = embedder
                        .embed(prompt, overflow)?
                        .to_dtype(DType::F32)?
                        .to_device(&cpu)?;
                    if let Some(c) = cache {
                        c.put(&fingerprint, prompt, &e)?;
                    }
                    *slot = Some(e);
                }
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditioning::Mode;

    /// A folder with one `.pt` (safetensors content: the loader goes by content) holding `tensors` of zeros.
    fn official_folder(tensors: &[(&str, &[usize])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let tensors = tensors
            .iter()
            .map(|(name, shape)| {
                let t = Tensor::zeros(*shape, DType::BF16, &Device::Cpu).unwrap();
                (name.to_string(), t)
            })
            .collect();
        orrery_nn::checkpoint::save_tensors(&dir.path().join("dit.pt"), tensors).unwrap();
        dir
    }

    #[test]
    fn an_official_pt_with_action_embedders_is_the_action_network() {
        let x = ("net.x_embedder.proj.1.weight", &[2048, 72][..]);
        let plain = official_folder(&[x]);
        assert_eq!(official_dit(plain.path()).unwrap().config.action, None);
        let action = official_folder(&[x, ("net.action_embedder_B_D.fc1.weight", &[8192, 28])]);
        assert_eq!(
            official_dit(action.path()).unwrap().config,
            DitConfig::cosmos_predict2_5_2b_action_cond()
        );
        let odd = official_folder(&[x, ("net.action_embedder_B_D.fc1.weight", &[8192, 30])]);
        let err = official_dit(odd.path()).unwrap_err().to_string();
        assert!(err.contains("4 x action_dim"), "{err}");
    }

    #[test]
    fn a_mode_s_own_dit_must_be_in_the_bundle_and_of_the_same_architecture() {
        let models =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/orrery-physics-nano-palette");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for folder in ["transformer", "vae"] {
            std::os::unix::fs::symlink(models.join(folder), root.join(folder)).unwrap();
        }
        std::fs::write(
            root.join(SAMPLING_FILE),
            r#"{"video2world": {"steps": 1, "transformer": "teacher_transformer"}}"#,
        )
        .unwrap();
        let err = ModelBundle::open(root).unwrap_err().to_string();
        assert!(err.contains("\"teacher_transformer\""), "{err}");
        let own = root.join("teacher_transformer");
        std::fs::create_dir(&own).unwrap();
        let weights = "diffusion_pytorch_model.safetensors";
        std::os::unix::fs::symlink(models.join("transformer").join(weights), own.join(weights))
            .unwrap();
        let mut config =
            DitConfig::from_diffusers_file(&models.join("transformer/config.json")).unwrap();
        config.num_blocks += 1;
        std::fs::write(own.join("config.json"), config.to_diffusers_json()).unwrap();
        let err = ModelBundle::open(root).unwrap_err().to_string();
        assert!(err.contains("another architecture"), "{err}");
        config.num_blocks -= 1;
        std::fs::write(own.join("config.json"), config.to_diffusers_json()).unwrap();
        let bundle = ModelBundle::open(root).unwrap();
        assert_eq!(
            bundle.mode_dits[Mode::Video2World as usize]
                .as_ref()
                .map(|d| &d.config),
            Some(&bundle.dit.config)
        );
        assert!(bundle.mode_dits[Mode::Text2World as usize].is_none());
    }

    #[test]
    fn a_dit_config_beside_an_official_pt_gives_its_shape() {
        let x = ("net.x_embedder.proj.1.weight", &[2048, 72][..]);
        let dir = official_folder(&[x]);
        let mut config = DitConfig::cosmos_predict2_5_2b();
        config.num_blocks = 2;
        std::fs::write(dir.path().join("config.json"), config.to_diffusers_json()).unwrap();
        assert_eq!(official_dit(dir.path()).unwrap().config, config);
        // Another config.json (a Reason1 one, say) is no DiT's.
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"model_type": "qwen2_5_vl"}"#,
        )
        .unwrap();
        assert_eq!(
            official_dit(dir.path()).unwrap().config,
            DitConfig::cosmos_predict2_5_2b()
        );
    }
}

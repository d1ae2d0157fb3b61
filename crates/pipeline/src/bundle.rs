//! Model bundles: everything `orrery generate` needs in one folder.
//!
//! Layouts recognised:
//! - diffusers-style: `transformer/` (config.json + weights), `vae/` (AutoencoderKLWan folder), `text_encoder/`
//!   (Hugging Face Qwen2.5-VL / Cosmos-Reason1 folder) with `tokenizer.json` in it or in `tokenizer/`;
//! - official: a DiT `.pt` (the 2B or 14B preset, told apart by the stored width), `tokenizer.pth` (the Wan2.1 VAE)
//!   and a Reason1 folder (any subfolder whose config.json is a Qwen2.5-VL).
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
use orrery_text::{Overflow, PromptCache, Reason1Embedder, WordEncoder};
use orrery_vae::VaeModelPath;
use serde_json::Value;

use crate::conditioning::Mode;
use crate::error::{PipelineError, Result};
use crate::observed::KeepObserved;
use crate::sample::{SamplingSettings, ScheduleKind};
use orrery_flow::noise::NoiseKind;

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

/// Sampling and output defaults of a bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleDefaults {
    pub schedule: ScheduleKind,
    pub steps: usize,
    pub guidance: f64,
    pub cond_timestep: Option<f64>,
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    pub fps: f64,
    /// Steps and guidance of Text2World, Image2World and Video2World where they differ from the above.
    pub per_mode: [ModeSampling; 3],
    /// Where Image2World and Video2World keep the observed pixels ([`SamplingSettings::keep_observed`]); `None`
    /// for the released models.
    pub keep_observed: Option<KeepObserved>,
}

/// A mode's own sampling steps and guidance (`None`: the bundle's), and for Video2World its conditional latent
/// frames (`None`: 2).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ModeSampling {
    pub steps: Option<usize>,
    pub guidance: Option<f64>,
    pub conditional_frames: Option<usize>,
}

impl Default for BundleDefaults {
    /// Cosmos-Predict2.5-2B post-trained: Karras 35 steps, guidance 7, conditioning frames at 0.1, 93 frames of
    /// 1280x704 at 16 fps.
    fn default() -> Self {
        Self {
            schedule: ScheduleKind::Karras,
            steps: 35,
            guidance: 7.0,
            cond_timestep: Some(0.1),
            frames: 93,
            width: 1280,
            height: 704,
            fps: 16.0,
            per_mode: Default::default(),
            keep_observed: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ModelBundle {
    pub root: PathBuf,
    pub dit: DitModelDir,
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

/// The official DiT `.pt`: its preset from the stored model width.
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
    let config = match width {
        2048 => DitConfig::cosmos_predict2_5_2b(),
        5120 => DitConfig::cosmos_predict2_5_14b(),
        w => {
            return Err(bundle_error(
                weights,
                format!("model width {w} is neither the 2B (2048) nor the 14B (5120)"),
            ))
        }
    };
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

impl BundleDefaults {
    /// Sampling settings from these defaults (network timestep = scheduler timestep x 0.001, as every Cosmos
    /// model).
    pub fn sampling_settings(&self, seed: u64, noise: NoiseKind) -> SamplingSettings {
        SamplingSettings {
            steps: self.steps,
            schedule: self.schedule,
            guidance: self.guidance,
            cond_timestep: self.cond_timestep,
            timestep_scale: 0.001,
            seed,
            noise,
            conditional_frames: None,
            keep_observed: self.keep_observed,
        }
    }

    /// Sampling settings of `mode`: the steps, guidance and Video2World conditional frames of `overrides` (a
    /// caller's, for every mode) where set, else the mode's own where the bundle sets them, else the bundle's.
    pub fn mode_settings(
        &self,
        mode: Mode,
        overrides: ModeSampling,
        seed: u64,
        noise: NoiseKind,
    ) -> SamplingSettings {
        let own = self.per_mode[mode as usize];
        SamplingSettings {
            steps: overrides.steps.or(own.steps).unwrap_or(self.steps),
            guidance: overrides.guidance.or(own.guidance).unwrap_or(self.guidance),
            conditional_frames: overrides.conditional_frames.or(own.conditional_frames),
            ..self.sampling_settings(seed, noise)
        }
    }

    /// `orrery_sampling.json` as [`ModelBundle::open`] reads it back.
    pub fn to_json(&self) -> String {
        let mut v = serde_json::json!({
            "schedule": self.schedule.to_json(),
            "steps": self.steps,
            "guidance": self.guidance,
            "cond_timestep": self.cond_timestep.unwrap_or(-1.0),
            "frames": self.frames,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
        });
        if let Some(keep) = self.keep_observed {
            v["keep_observed"] = keep.to_json();
        }
        for mode in Mode::ALL {
            let own = self.per_mode[mode as usize];
            if own != ModeSampling::default() {
                v[mode.name()] = serde_json::json!({"steps": own.steps, "guidance": own.guidance});
                if let Some(n) = own.conditional_frames {
                    v[mode.name()]["conditional_frames"] = n.into();
                }
            }
        }
        serde_json::to_string_pretty(&v).expect("plain values")
    }
}

/// `{"steps": N, "guidance": G}` and for Video2World `"conditional_frames": N`, each left out or null; `None` for
/// anything else.
fn read_mode_sampling(v: &Value, mode: Mode) -> Option<ModeSampling> {
    let o = v.as_object()?;
    let known = |k: &str| {
        k == "steps" || k == "guidance" || (mode == Mode::Video2World && k == "conditional_frames")
    };
    if o.keys().any(|k| !known(k)) {
        return None;
    }
    let positive = |key: &str| match o.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(x) => x.as_u64().filter(|n| *n > 0).map(|n| Some(n as usize)),
    };
    let guidance = match o.get("guidance") {
        None | Some(Value::Null) => None,
        Some(x) => Some(x.as_f64()?),
    };
    Some(ModeSampling {
        steps: positive("steps")?,
        guidance,
        conditional_frames: positive("conditional_frames")?,
    })
}

fn read_defaults(path: &Path) -> Result<BundleDefaults> {
    let mut d = BundleDefaults::default();
    if !path.is_file() {
        return Ok(d);
    }
    let text = std::fs::read_to_string(path).map_err(|e| bundle_error(path, e.to_string()))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| bundle_error(path, format!("bad JSON: {e}")))?;
    let num = |k: &str| v.get(k).and_then(Value::as_f64);
    match v.get("schedule") {
        Some(Value::String(s)) if s == "karras" => d.schedule = ScheduleKind::Karras,
        Some(Value::Number(n)) => d.schedule = ScheduleKind::Shift(n.as_f64().unwrap_or(5.0)),
        Some(other) => {
            return Err(bundle_error(
                path,
                format!("schedule {other}: expected \"karras\" or a shift"),
            ))
        }
        None => {}
    }
    if let Some(x) = num("steps") {
        d.steps = x as usize;
    }
    if let Some(x) = num("guidance") {
        d.guidance = x;
    }
    if let Some(x) = num("cond_timestep") {
        d.cond_timestep = (x >= 0.0).then_some(x);
    }
    if let Some(x) = num("frames") {
        d.frames = x as usize;
    }
    if let Some(x) = num("width") {
        d.width = x as usize;
    }
    if let Some(x) = num("height") {
        d.height = x as usize;
    }
    if let Some(x) = num("fps") {
        d.fps = x;
    }
    match v.get("keep_observed") {
        None | Some(Value::Null) => {}
        Some(x) => match KeepObserved::from_json(x) {
            Some(keep) => d.keep_observed = Some(keep),
            None => {
                return Err(bundle_error(
                    path,
                    format!(
                        "keep_observed {x}: expected {{\"threshold\": T, \"margin\": M}} (T in [0, {}], M at \
                         most {} pixels) or null",
                        KeepObserved::MAX_THRESHOLD,
                        KeepObserved::MAX_MARGIN
                    ),
                ))
            }
        },
    }
    for mode in Mode::ALL {
        if let Some(own) = v.get(mode.name()) {
            d.per_mode[mode as usize] = read_mode_sampling(own, mode).ok_or_else(|| {
                let extra = if mode == Mode::Video2World {
                    ", \"conditional_frames\": N"
                } else {
                    ""
                };
                bundle_error(
                    path,
                    format!(
                        "{}: {own}: expected {{\"steps\": N, \"guidance\": G{extra}}} (each may be left out)",
                        mode.name()
                    ),
                )
            })?;
        }
    }
    Ok(d)
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
        Ok(Self {
            root: root.to_owned(),
            dit,
            vae,
            text: find_text_encoder(root),
            defaults: read_defaults(&root.join("orrery_sampling.json"))?,
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

    /// Prompt embeddings (1, 512, width) of `prompts`, read from `cache` where present; the text encoder is loaded
    /// only for the others and dropped before returning, so the DiT can be loaded after it within the same memory.
    pub fn encode_prompts(
        &self,
        prompts: &[&str],
        cache: Option<&PromptCache>,
        dtype: DType,
    ) -> Result<Vec<Tensor>> {
        let text = self.text.as_ref().ok_or_else(|| {
            bundle_error(
                &self.root,
                "no text encoder in the bundle: pass --prompt-embeds",
            )
        })?;
        let device = Device::Cpu;
        if text.kind == TextEncoderKind::Words {
            // Small and fast: no cache.
            let encoder = WordEncoder::open(&text.model, &device)?;
            return prompts
                .iter()
                .map(|p| Ok(encoder.embed(p, Overflow::Error)?))
                .collect();
        }
        let fingerprint =
            Reason1Embedder::fingerprint_with_tokenizer(&text.model, &text.tokenizer, dtype)?;
        let mut out: Vec<Option<Tensor>> = prompts
            .iter()
            .map(|p| cache.and_then(|c| c.get(&fingerprint, p, &device)))
            .collect();
        if out.iter().any(Option::is_none) {
            let embedder =
                Reason1Embedder::open_with_tokenizer(&text.model, &text.tokenizer, dtype, &device)?;
            for (slot, prompt) in out.iter_mut().zip(prompts) {
                if slot.is_none() {
                    let e = embedder
                        .embed(prompt, Overflow::Error)?
                        .to_dtype(DType::F32)?;
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

    #[test]
    fn sampling_defaults_round_trip_through_json() {
        let path =
            std::env::temp_dir().join(format!("orrery_sampling_{}.json", std::process::id()));
        for d in [
            BundleDefaults::default(),
            BundleDefaults {
                schedule: ScheduleKind::Shift(1.5),
                steps: 20,
                guidance: 2.0,
                cond_timestep: None,
                frames: 33,
                width: 64,
                height: 48,
                fps: 16.0,
                per_mode: [
                    ModeSampling {
                        steps: Some(30),
                        ..ModeSampling::default()
                    },
                    ModeSampling::default(),
                    ModeSampling {
                        steps: Some(1),
                        guidance: Some(1.0),
                        conditional_frames: Some(3),
                    },
                ],
                keep_observed: Some(KeepObserved {
                    threshold: 0.125,
                    margin: 2,
                }),
            },
        ] {
            std::fs::write(&path, d.to_json()).unwrap();
            assert_eq!(read_defaults(&path).unwrap(), d);
        }
        std::fs::remove_file(&path).unwrap();
        let s = BundleDefaults::default().sampling_settings(3, NoiseKind::Numpy);
        assert_eq!(s, SamplingSettings::cosmos_2b_post_trained(3));
        let d = BundleDefaults {
            per_mode: [
                ModeSampling::default(),
                ModeSampling::default(),
                ModeSampling {
                    steps: Some(1),
                    guidance: Some(1.5),
                    conditional_frames: Some(3),
                },
            ],
            ..BundleDefaults::default()
        };
        let none = ModeSampling::default();
        let v2w = d.mode_settings(Mode::Video2World, none, 3, NoiseKind::Numpy);
        assert_eq!((v2w.steps, v2w.guidance), (1, 1.5));
        assert_eq!(v2w.conditional_latent_frames(Mode::Video2World), 3);
        assert_eq!(v2w.conditional_latent_frames(Mode::Image2World), 1);
        assert_eq!(
            d.mode_settings(Mode::Image2World, none, 3, NoiseKind::Numpy),
            SamplingSettings::cosmos_2b_post_trained(3)
        );
        let caller = ModeSampling {
            steps: Some(4),
            conditional_frames: Some(2),
            ..ModeSampling::default()
        };
        let v2w = d.mode_settings(Mode::Video2World, caller, 3, NoiseKind::Numpy);
        assert_eq!((v2w.steps, v2w.guidance), (4, 1.5));
        assert_eq!(v2w.conditional_latent_frames(Mode::Video2World), 2);
        for (bad, mode) in [
            (r#"{"video2world": {"steps": "many"}}"#, "video2world"),
            (
                r#"{"video2world": {"conditional_frames": 0}}"#,
                "video2world",
            ),
            (
                r#"{"image2world": {"conditional_frames": 2}}"#,
                "image2world",
            ),
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = read_defaults(&path).unwrap_err().to_string();
            assert!(err.contains(mode), "{bad}: {err}");
        }
        for bad in [
            r#"{"keep_observed": 0.3}"#,
            r#"{"keep_observed": {"threshold": -1}}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = read_defaults(&path).unwrap_err().to_string();
            assert!(err.contains("keep_observed"), "{bad}: {err}");
        }
        std::fs::remove_file(&path).unwrap();
    }
}

//! A bundle's sampling and output defaults, and `orrery_sampling.json`, the file that holds them.
//!
//! The file is read through a serde mirror ([`SamplingFile`]) that refuses unknown keys and wrong types, with
//! the key named in the message (`video2world.steps: invalid type: floating point 2.7, expected usize`); the
//! values are then checked (positive counts, finite numbers) before they become [`BundleDefaults`].

use std::path::Path;

use orrery_flow::noise::NoiseKind;
use serde::{Deserialize, Serialize};

use crate::conditioning::Mode;
use crate::error::{PipelineError, Result};
use crate::observed::KeepObserved;
use crate::sample::{SamplerKind, SamplingSettings, ScheduleKind};

/// The file name of a bundle's sampling defaults.
pub const SAMPLING_FILE: &str = "orrery_sampling.json";

/// Sampling and output defaults of a bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleDefaults {
    /// UniPC for the base and post-trained models, the distilled sampler for distilled ones.
    pub sampler: SamplerKind,
    pub schedule: ScheduleKind,
    pub steps: usize,
    pub guidance: f64,
    pub cond_timestep: Option<f64>,
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    pub fps: f64,
    /// Sampler, steps and guidance of Text2World, Image2World and Video2World where they differ from the above.
    pub per_mode: [ModeSampling; 3],
    /// The bundle's subfolder whose DiT samples Text2World, Image2World and Video2World where it is not
    /// `transformer/` (a distilled bundle keeps its teacher for the modes it samples in one step): the same
    /// architecture, other weights.
    pub mode_transformers: [Option<String>; 3],
    /// Where Image2World and Video2World keep the observed pixels ([`SamplingSettings::keep_observed`]); `None`
    /// for the released models.
    pub keep_observed: Option<KeepObserved>,
}

/// A mode's own sampler, steps and guidance (`None`: the bundle's), and for Video2World its conditional latent
/// frames (`None`: 2).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ModeSampling {
    pub sampler: Option<SamplerKind>,
    pub steps: Option<usize>,
    pub guidance: Option<f64>,
    pub conditional_frames: Option<usize>,
}

impl Default for BundleDefaults {
    /// Cosmos-Predict2.5-2B post-trained: Karras 35 steps, guidance 7, conditioning frames at 0.1, 93 frames of
    /// 1280x704 at 16 fps.
    fn default() -> Self {
        Self {
            sampler: SamplerKind::UniPc,
            schedule: ScheduleKind::Karras,
            steps: 35,
            guidance: 7.0,
            cond_timestep: Some(0.1),
            frames: 93,
            width: 1280,
            height: 704,
            fps: 16.0,
            per_mode: Default::default(),
            mode_transformers: Default::default(),
            keep_observed: None,
        }
    }
}

impl BundleDefaults {
    /// Sampling settings from these defaults (network timestep = scheduler timestep x 0.001, as every Cosmos
    /// model).
    pub fn sampling_settings(&self, seed: u64, noise: NoiseKind) -> SamplingSettings {
        SamplingSettings {
            sampler: self.sampler,
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

    /// Sampling settings of `mode`: the sampler, steps, guidance and Video2World conditional frames of `overrides`
    /// (a caller's, for every mode) where set, else the mode's own where the bundle sets them, else the bundle's.
    pub fn mode_settings(
        &self,
        mode: Mode,
        overrides: ModeSampling,
        seed: u64,
        noise: NoiseKind,
    ) -> SamplingSettings {
        let own = self.per_mode[mode as usize];
        SamplingSettings {
            sampler: overrides.sampler.or(own.sampler).unwrap_or(self.sampler),
            steps: overrides.steps.or(own.steps).unwrap_or(self.steps),
            guidance: overrides.guidance.or(own.guidance).unwrap_or(self.guidance),
            conditional_frames: overrides.conditional_frames.or(own.conditional_frames),
            ..self.sampling_settings(seed, noise)
        }
    }

    /// `mode`'s sampler, steps and guidance as it samples them, written out (where the bundle leaves them to its
    /// own defaults), with its conditioning frames: the same sampling in a bundle of other defaults.
    pub fn resolved_mode(&self, mode: Mode) -> ModeSampling {
        let s = self.mode_settings(mode, ModeSampling::default(), 0, NoiseKind::Numpy);
        ModeSampling {
            sampler: Some(s.sampler),
            steps: Some(s.steps),
            guidance: Some(s.guidance),
            conditional_frames: self.per_mode[mode as usize].conditional_frames,
        }
    }

    /// These defaults for a bundle whose `transformer/` samples every mode (what a trainer exports from a bundle's
    /// `transformer/` alone): a mode that had its own DiT keeps its steps and conditioning frames and takes the
    /// bundle's sampler and guidance.
    pub fn one_transformer(&self) -> BundleDefaults {
        let mut d = self.clone();
        for (name, own) in d.mode_transformers.iter_mut().zip(&mut d.per_mode) {
            if name.take().is_some() {
                own.sampler = None;
                own.guidance = None;
            }
        }
        d
    }

    /// `orrery_sampling.json` as [`Self::read`] reads it back.
    pub fn to_json(&self) -> String {
        let mode = |m: Mode| {
            let own = self.per_mode[m as usize];
            let transformer = self.mode_transformers[m as usize].clone();
            (own != ModeSampling::default() || transformer.is_some()).then_some(ModeFile {
                sampler: own.sampler.map(|s| s.name().to_owned()),
                transformer,
                steps: own.steps,
                guidance: own.guidance,
                conditional_frames: own.conditional_frames,
            })
        };
        let file = SamplingFile {
            sampler: (self.sampler != SamplerKind::UniPc).then(|| self.sampler.name().to_owned()),
            schedule: Some(match self.schedule {
                ScheduleKind::Karras => ScheduleFile::Name(KarrasName::Karras),
                ScheduleKind::Shift(s) => ScheduleFile::Shift(s),
            }),
            steps: Some(self.steps),
            guidance: Some(self.guidance),
            cond_timestep: Some(self.cond_timestep.unwrap_or(-1.0)),
            frames: Some(self.frames),
            width: Some(self.width),
            height: Some(self.height),
            fps: Some(self.fps),
            keep_observed: self.keep_observed.map(|k| KeepObservedFile {
                threshold: k.threshold,
                margin: Some(k.margin as u64),
            }),
            text2world: mode(Mode::Text2World),
            image2world: mode(Mode::Image2World),
            video2world: mode(Mode::Video2World),
        };
        serde_json::to_string_pretty(&file).expect("plain values")
    }

    /// Reads `orrery_sampling.json` at `path`; a missing file gives the 2B post-trained defaults.
    pub fn read(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e.to_string()))?;
        Self::from_json(&text).map_err(|detail| file_error(path, detail))
    }

    /// Parses the text of `orrery_sampling.json`; the error names the key at fault.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let file: SamplingFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            }
        })?;
        file.into_defaults()
    }
}

fn file_error(path: &Path, detail: String) -> PipelineError {
    PipelineError::Bundle {
        path: path.to_owned(),
        detail,
    }
}

/// `orrery_sampling.json`, key for key. Every key may be left out (the 2B post-trained default applies).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SamplingFile {
    /// "unipc" (the default) or "distilled".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sampler: Option<String>,
    /// "karras" or the shift of a linear schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schedule: Option<ScheduleFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    steps: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    guidance: Option<f64>,
    /// Timestep of the conditioning frames; negative: none (they get the noisy frames' timestep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cond_timestep: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    frames: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    width: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    height: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keep_observed: Option<KeepObservedFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text2world: Option<ModeFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image2world: Option<ModeFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    video2world: Option<ModeFile>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum ScheduleFile {
    Name(KarrasName),
    Shift(f64),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum KarrasName {
    Karras,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeepObservedFile {
    threshold: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    margin: Option<u64>,
}

/// A mode's own sampler, DiT folder, steps and guidance; `conditional_frames` only for Video2World.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sampler: Option<String>,
    /// A subfolder of the bundle holding a DiT (config.json and weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transformer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    steps: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    guidance: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conditional_frames: Option<usize>,
}

fn positive(key: &str, n: Option<usize>) -> std::result::Result<Option<usize>, String> {
    match n {
        Some(0) => Err(format!("{key}: 0, expected a positive integer")),
        n => Ok(n),
    }
}

fn finite(key: &str, x: Option<f64>) -> std::result::Result<Option<f64>, String> {
    match x {
        Some(v) if !v.is_finite() => Err(format!("{key}: {v}, expected a finite number")),
        x => Ok(x),
    }
}

/// Whether `name` is one plain path component (no separator, no `.` or `..`), so that it stays inside the bundle.
fn is_subfolder_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(_)), None)
    ) && !name.contains(['/', '\\'])
}

impl SamplingFile {
    fn into_defaults(self) -> std::result::Result<BundleDefaults, String> {
        let mut d = BundleDefaults::default();
        if let Some(name) = &self.sampler {
            d.sampler = name.parse().map_err(|e| format!("sampler: {e}"))?;
        }
        match self.schedule {
            Some(ScheduleFile::Name(KarrasName::Karras)) => d.schedule = ScheduleKind::Karras,
            Some(ScheduleFile::Shift(s)) if s.is_finite() && s > 0.0 => {
                d.schedule = ScheduleKind::Shift(s)
            }
            Some(ScheduleFile::Shift(s)) => {
                return Err(format!(
                    "schedule: {s}, expected \"karras\" or a positive shift"
                ))
            }
            None => {}
        }
        d.steps = positive("steps", self.steps)?.unwrap_or(d.steps);
        d.guidance = finite("guidance", self.guidance)?.unwrap_or(d.guidance);
        if let Some(c) = finite("cond_timestep", self.cond_timestep)? {
            d.cond_timestep = (c >= 0.0).then_some(c);
        }
        d.frames = positive("frames", self.frames)?.unwrap_or(d.frames);
        d.width = positive("width", self.width)?.unwrap_or(d.width);
        d.height = positive("height", self.height)?.unwrap_or(d.height);
        match finite("fps", self.fps)? {
            Some(f) if f <= 0.0 => return Err(format!("fps: {f}, expected a positive number")),
            Some(f) => d.fps = f,
            None => {}
        }
        if let Some(k) = self.keep_observed {
            d.keep_observed = Some(
                KeepObserved::checked(k.threshold, k.margin.unwrap_or(0)).ok_or_else(|| {
                    format!(
                        "keep_observed: threshold {} margin {}: expected a threshold in [0, {}] and a margin of \
                         at most {} pixels",
                        k.threshold,
                        k.margin.unwrap_or(0),
                        KeepObserved::MAX_THRESHOLD,
                        KeepObserved::MAX_MARGIN
                    )
                })?,
            );
        }
        for (mode, own) in [
            (Mode::Text2World, self.text2world),
            (Mode::Image2World, self.image2world),
            (Mode::Video2World, self.video2world),
        ] {
            let Some(own) = own else { continue };
            let key = |k: &str| format!("{}.{k}", mode.name());
            if own.conditional_frames.is_some() && mode != Mode::Video2World {
                return Err(format!(
                    "{}: only video2world takes conditional_frames",
                    key("conditional_frames")
                ));
            }
            if let Some(name) = &own.transformer {
                if !is_subfolder_name(name) {
                    return Err(format!(
                        "{}: {name:?}, expected the name of a folder inside the bundle",
                        key("transformer")
                    ));
                }
            }
            d.mode_transformers[mode as usize] = own.transformer;
            d.per_mode[mode as usize] = ModeSampling {
                sampler: own
                    .sampler
                    .map(|name| name.parse().map_err(|e| format!("{}: {e}", key("sampler"))))
                    .transpose()?,
                steps: positive(&key("steps"), own.steps)?,
                guidance: finite(&key("guidance"), own.guidance)?,
                conditional_frames: positive(&key("conditional_frames"), own.conditional_frames)?,
            };
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        BundleDefaults::from_json(text).unwrap_err()
    }

    #[test]
    fn sampling_defaults_round_trip_through_json() {
        for d in [
            BundleDefaults::default(),
            BundleDefaults {
                sampler: SamplerKind::Distilled,
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
                        sampler: Some(SamplerKind::UniPc),
                        steps: Some(1),
                        guidance: Some(1.0),
                        conditional_frames: Some(3),
                    },
                ],
                mode_transformers: [None, Some("teacher_transformer".into()), None],
                keep_observed: Some(KeepObserved {
                    threshold: 0.125,
                    margin: 2,
                }),
            },
        ] {
            assert_eq!(BundleDefaults::from_json(&d.to_json()).unwrap(), d);
        }
        assert_eq!(
            BundleDefaults::default().sampling_settings(3, NoiseKind::Numpy),
            SamplingSettings::cosmos_2b_post_trained(3)
        );
    }

    #[test]
    fn the_embedded_bundle_file_reads() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/orrery-physics-nano/orrery_sampling.json"
        );
        let d = BundleDefaults::read(Path::new(path)).unwrap();
        assert_eq!((d.frames, d.width, d.height), (33, 64, 64));
        assert_eq!(d.per_mode[Mode::Video2World as usize].steps, Some(1));
    }

    #[test]
    fn mode_settings_take_the_caller_then_the_mode_then_the_bundle() {
        let d = BundleDefaults {
            per_mode: [
                ModeSampling::default(),
                ModeSampling::default(),
                ModeSampling {
                    sampler: Some(SamplerKind::Distilled),
                    steps: Some(1),
                    guidance: Some(1.5),
                    conditional_frames: Some(3),
                },
            ],
            ..BundleDefaults::default()
        };
        let none = ModeSampling::default();
        let v2w = d.mode_settings(Mode::Video2World, none, 3, NoiseKind::Numpy);
        assert_eq!(
            (v2w.sampler, v2w.steps, v2w.guidance),
            (SamplerKind::Distilled, 1, 1.5)
        );
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
        assert_eq!(
            (v2w.sampler, v2w.steps, v2w.guidance),
            (SamplerKind::Distilled, 4, 1.5)
        );
        assert_eq!(v2w.conditional_latent_frames(Mode::Video2World), 2);
        let caller = ModeSampling {
            sampler: Some(SamplerKind::UniPc),
            ..ModeSampling::default()
        };
        let v2w = d.mode_settings(Mode::Video2World, caller, 3, NoiseKind::Numpy);
        assert_eq!(v2w.sampler, SamplerKind::UniPc);
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        for (bad, key) in [
            (r#"{"steps": 2.7}"#, "steps"),
            (r#"{"steps": -3}"#, "steps"),
            (r#"{"steps": 0}"#, "steps"),
            (r#"{"steps": "many"}"#, "steps"),
            (r#"{"frames": 33, "stepz": 3}"#, "stepz"),
            (r#"{"schedule": "linear"}"#, "schedule"),
            (r#"{"sampler": "euler"}"#, "sampler"),
            (r#"{"schedule": -1}"#, "schedule"),
            (r#"{"fps": 0}"#, "fps"),
            (r#"{"video2world": {"steps": 1.5}}"#, "video2world.steps"),
            (
                r#"{"video2world": {"conditional_frames": 0}}"#,
                "video2world.conditional_frames",
            ),
            (
                r#"{"image2world": {"conditional_frames": 2}}"#,
                "image2world.conditional_frames",
            ),
            (r#"{"video2world": {"step": 2}}"#, "step"),
            (
                r#"{"video2world": {"sampler": "euler"}}"#,
                "video2world.sampler",
            ),
            (
                r#"{"video2world": {"transformer": "../other/transformer"}}"#,
                "video2world.transformer",
            ),
            (
                r#"{"image2world": {"transformer": ".."}}"#,
                "image2world.transformer",
            ),
            (
                r#"{"image2world": {"transformer": ""}}"#,
                "image2world.transformer",
            ),
            (
                r#"{"image2world": {"transformer": "/abs"}}"#,
                "image2world.transformer",
            ),
            (r#"{"keep_observed": 0.3}"#, "keep_observed"),
            (r#"{"keep_observed": {"threshold": -1}}"#, "keep_observed"),
            (
                r#"{"keep_observed": {"threshold": 0.3, "margins": 1}}"#,
                "margins",
            ),
        ] {
            let err = error_of(bad);
            assert!(err.contains(key), "{bad}: {err}");
        }
        assert!(error_of("{").contains("EOF"), "{}", error_of("{"));
    }

    #[test]
    fn a_bad_file_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SAMPLING_FILE);
        std::fs::write(&path, r#"{"steps": 2.7}"#).unwrap();
        let err = BundleDefaults::read(&path).unwrap_err().to_string();
        assert!(
            err.contains(SAMPLING_FILE) && err.contains("steps"),
            "{err}"
        );
    }
}

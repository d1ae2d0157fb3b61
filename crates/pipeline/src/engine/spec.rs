//! The official batch spec (`inference_type`, `samples` with `prompt` or `prompt_path`, `input_path`), read
//! through a serde mirror; relative paths are relative to the spec's folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::conditioning::Mode;
use crate::error::{PipelineError, Result};

/// One clip of a spec: its name (the output's file stem), prompt and conditioning input.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecSample {
    pub name: String,
    pub prompt: String,
    pub mode: Mode,
    /// The image (Image2World) or video (Video2World); `None` for Text2World.
    pub input: Option<PathBuf>,
    /// Per-sample negative prompt, if the spec gives one.
    pub negative_prompt: Option<String>,
}

/// A whole spec.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSpec {
    pub mode: Mode,
    /// `"truncate": true`: cut over-long prompts as the reference does.
    pub truncate: bool,
    pub samples: Vec<SpecSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    inference_type: String,
    samples: BTreeMap<String, SampleFile>,
    #[serde(default)]
    truncate: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleFile {
    prompt: Option<String>,
    prompt_path: Option<PathBuf>,
    input_path: Option<PathBuf>,
    negative_prompt: Option<String>,
}

fn spec_error(path: &Path, detail: String) -> PipelineError {
    PipelineError::Input(format!("{}: {detail}", path.display()))
}

impl BatchSpec {
    /// Reads a spec, its prompt files included; inputs are checked to exist (not read).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| spec_error(path, e.to_string()))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let file: SpecFile = serde_path_to_error::deserialize(de)
            .map_err(|e| spec_error(path, format!("{}: {}", e.path(), e.inner())))?;
        let mode = Mode::ALL
            .into_iter()
            .find(|m| m.name() == file.inference_type)
            .ok_or_else(|| {
                spec_error(
                    path,
                    format!(
                        "inference_type {:?}: expected text2world, image2world or video2world",
                        file.inference_type
                    ),
                )
            })?;
        if file.samples.is_empty() {
            return Err(spec_error(path, "no samples".into()));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut samples = Vec::new();
        for (name, s) in file.samples {
            let fail = |detail: String| spec_error(path, format!("sample {name}: {detail}"));
            if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                return Err(fail("a sample name must be a plain file stem".into()));
            }
            let prompt = match (s.prompt, s.prompt_path) {
                (Some(p), _) => p,
                (None, Some(p)) => std::fs::read_to_string(base.join(&p))
                    .map_err(|e| fail(format!("reading {}: {e}", p.display())))?
                    .trim()
                    .to_owned(),
                (None, None) => return Err(fail("neither prompt nor prompt_path".into())),
            };
            let input = s.input_path.map(|p| base.join(p));
            match (&input, mode) {
                (None, Mode::Image2World | Mode::Video2World) => {
                    return Err(fail(format!("{} needs input_path", mode.name())))
                }
                (Some(p), Mode::Image2World | Mode::Video2World) if !p.is_file() => {
                    return Err(fail(format!("input {} does not exist", p.display())))
                }
                _ => {}
            }
            samples.push(SpecSample {
                name,
                prompt,
                mode,
                input: input.filter(|_| mode != Mode::Text2World),
                negative_prompt: s.negative_prompt,
            });
        }
        Ok(Self {
            mode,
            truncate: file.truncate,
            samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<BatchSpec> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.txt"), "  a red ball\n").unwrap();
        std::fs::write(dir.path().join("in.png"), b"x").unwrap();
        let path = dir.path().join("spec.json");
        std::fs::write(&path, json).unwrap();
        BatchSpec::read(&path)
    }

    #[test]
    fn a_spec_reads_prompts_from_files_and_resolves_inputs() {
        let spec = read(
            r#"{"inference_type": "image2world", "truncate": true,
                "samples": {"b": {"prompt_path": "p.txt", "input_path": "in.png"},
                            "a": {"prompt": "x", "input_path": "in.png", "negative_prompt": "n"}}}"#,
        )
        .unwrap();
        assert!(spec.truncate);
        assert_eq!(spec.mode, Mode::Image2World);
        let names: Vec<&str> = spec.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(spec.samples[1].prompt, "a red ball");
        assert!(spec.samples[1].input.as_ref().unwrap().ends_with("in.png"));
        assert_eq!(spec.samples[0].negative_prompt.as_deref(), Some("n"));
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (json, says) in [
            (
                r#"{"inference_type": "world", "samples": {"a": {"prompt": "x"}}}"#,
                "inference_type",
            ),
            (
                r#"{"inference_type": "text2world", "samples": {}}"#,
                "no samples",
            ),
            (
                r#"{"inference_type": "text2world", "samples": {"a": {"promt": "x"}}}"#,
                "promt",
            ),
            (
                r#"{"inference_type": "text2world", "samples": {"a": {}}}"#,
                "neither prompt",
            ),
            (
                r#"{"inference_type": "video2world", "samples": {"a": {"prompt": "x"}}}"#,
                "input_path",
            ),
            (
                r#"{"inference_type": "video2world", "samples": {"a": {"prompt": "x", "input_path": "no.mp4"}}}"#,
                "does not exist",
            ),
            (
                r#"{"inference_type": "text2world", "samples": {"../a": {"prompt": "x"}}}"#,
                "file stem",
            ),
            (
                r#"{"inference_type": "text2world", "truncate": 1, "samples": {}}"#,
                "truncate",
            ),
            ("[1, 2", "spec.json"),
        ] {
            let err = read(json).unwrap_err().to_string();
            assert!(err.contains(says), "{json}: {err}");
        }
    }
}

//! A job's request as clients send it ([`JobRequest`], strict JSON) and the settings it resolves to against the
//! model ([`JobSettings`], stored with the job, so a queued job runs as it was accepted).

use serde::{Deserialize, Serialize};

use crate::error::{Result, ServerError};

/// The body of `POST /v1/jobs` (or its multipart `settings` part). Everything but `prompt` defaults to the
/// model's settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    pub prompt: String,
    pub seed: Option<u64>,
    pub frames: Option<usize>,
    pub steps: Option<usize>,
    pub guidance: Option<f64>,
    /// `WxH`.
    pub size: Option<String>,
    pub negative_prompt: Option<String>,
    pub truncate: Option<bool>,
}

/// What conditions a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobMode {
    Text2World,
    Image2World,
    Video2World,
}

impl JobMode {
    pub fn pipeline(self) -> orrery_pipeline::Mode {
        match self {
            JobMode::Text2World => orrery_pipeline::Mode::Text2World,
            JobMode::Image2World => orrery_pipeline::Mode::Image2World,
            JobMode::Video2World => orrery_pipeline::Mode::Video2World,
        }
    }
}

/// A job's settings as accepted: the caller's choices with the seed, size, frames and frame rate fixed, and
/// what the model's defaults make of the rest (`sampling`). A queued job runs with exactly these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    pub mode: JobMode,
    pub prompt: String,
    /// The caller's negative prompt (`None`: the model's).
    pub negative_prompt: Option<String>,
    pub seed: u64,
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    pub fps: f64,
    /// The caller's steps and guidance (`None`: the model's for each chunk's mode).
    pub steps: Option<usize>,
    pub guidance: Option<f64>,
    pub truncate: bool,
    /// What the clip's first chunk samples with.
    pub sampling: ResolvedSampling,
}

/// Sampling settings after the model's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolvedSampling {
    pub steps: usize,
    pub guidance: f64,
    /// `None` where no chunk is guided.
    pub negative_prompt: Option<String>,
    /// Model calls of the whole clip (all chunks, guidance included).
    pub calls: usize,
}

/// Bounds on what one job may ask for, beyond what the model accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_prompt_chars: usize,
    pub max_frames: usize,
    pub max_steps: usize,
    /// Width times height.
    pub max_pixels: usize,
    pub max_guidance: f64,
    /// RGB bytes of all the frames of an uploaded video, decoded.
    pub max_input_video_bytes: u64,
}

impl Default for Limits {
    /// A released model's full clip (93 frames of 1280x704) with room for two chunks; 200 steps.
    fn default() -> Self {
        Self {
            max_prompt_chars: 10_000,
            max_frames: 181,
            max_steps: 200,
            max_pixels: 1280 * 720,
            max_guidance: 100.0,
            max_input_video_bytes: 1 << 30,
        }
    }
}

/// `WxH` with both sides positive.
pub fn parse_size(s: &str) -> Result<(usize, usize)> {
    let size: orrery_pipeline::Size = s.parse().map_err(ServerError::BadRequest)?;
    Ok((size.width, size.height))
}

impl JobRequest {
    /// Parses a JSON body; the error names the field at fault.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path.is_empty() {
                ServerError::BadRequest(format!("request body: {inner}"))
            } else {
                ServerError::BadRequest(format!("request body: {path}: {inner}"))
            }
        })
    }

    /// Checks the request against `limits` (the model checks the rest when it resolves the settings).
    pub fn check(&self, limits: &Limits) -> Result<()> {
        let bad = |m: String| Err(ServerError::BadRequest(m));
        if self.prompt.trim().is_empty() {
            return bad("prompt: must not be empty".into());
        }
        let chars = self.prompt.chars().count();
        if chars > limits.max_prompt_chars {
            return bad(format!(
                "prompt: {chars} characters, at most {} accepted",
                limits.max_prompt_chars
            ));
        }
        if let Some(n) = &self.negative_prompt {
            if n.chars().count() > limits.max_prompt_chars {
                return bad(format!(
                    "negative_prompt: more than {} characters",
                    limits.max_prompt_chars
                ));
            }
        }
        if let Some(frames) = self.frames {
            if frames == 0 || frames > limits.max_frames {
                return bad(format!(
                    "frames: {frames}, expected 1 to {}",
                    limits.max_frames
                ));
            }
        }
        if let Some(steps) = self.steps {
            if steps == 0 || steps > limits.max_steps {
                return bad(format!(
                    "steps: {steps}, expected 1 to {}",
                    limits.max_steps
                ));
            }
        }
        if let Some(g) = self.guidance {
            if !(g.is_finite() && (0.0..=limits.max_guidance).contains(&g)) {
                return bad(format!(
                    "guidance: {g}, expected 0 to {}",
                    limits.max_guidance
                ));
            }
        }
        if let Some(size) = &self.size {
            let (w, h) = parse_size(size)?;
            if w.saturating_mul(h) > limits.max_pixels {
                return bad(format!(
                    "size {w}x{h}: more than {} pixels",
                    limits.max_pixels
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<impl std::fmt::Debug>) -> String {
        match r {
            Err(ServerError::BadRequest(m)) => m,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn requests_are_strict_and_bounded() {
        let ok =
            JobRequest::from_json(br#"{"prompt": "a ball", "size": "64x64", "steps": 2}"#).unwrap();
        assert_eq!(ok.size.as_deref(), Some("64x64"));
        ok.check(&Limits::default()).unwrap();
        assert!(
            message(JobRequest::from_json(br#"{"prompt": "a", "colour": 1}"#))
                .contains("unknown field `colour`")
        );
        assert!(
            message(JobRequest::from_json(br#"{"prompt": "a", "steps": -1}"#)).contains("steps")
        );
        assert!(message(JobRequest::from_json(br#"{"seed": 1}"#)).contains("prompt"));
        assert!(message(JobRequest::from_json(b"{\"prompt\": ")).contains("request body"));
        let limits = Limits::default();
        for (body, expect) in [
            (r#"{"prompt": "  "}"#, "prompt"),
            (r#"{"prompt": "a", "frames": 100000}"#, "frames"),
            (r#"{"prompt": "a", "steps": 0}"#, "steps"),
            (r#"{"prompt": "a", "guidance": 1e308}"#, "guidance"),
            (r#"{"prompt": "a", "size": "100000x100000"}"#, "pixels"),
            (r#"{"prompt": "a", "size": "big"}"#, "WxH"),
        ] {
            let req = JobRequest::from_json(body.as_bytes()).unwrap();
            assert!(message(req.check(&limits)).contains(expect), "{body}");
        }
    }
}

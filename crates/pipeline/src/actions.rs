//! Robot actions for an action-conditioned model, as `orrery generate --actions ACTIONS.json` reads them.
//!
//! ACTIONS.json is `{"actions": [[a_1, ..., a_A], ...]}`: one row per video frame after the start frame (row k
//! moves the video from frame k to frame k + 1), every row as wide as the model's `action_dim`, already scaled as
//! the official data pipeline scales them (for the released model: relative xyz and relative roll-pitch-yaw of
//! the end effector in the previous frame's pose, times 20, then the gripper state, times 1).

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Deserialize;

use crate::error::{PipelineError, Result};

/// The serde mirror of ACTIONS.json.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionsFile {
    actions: Vec<Vec<f64>>,
}

/// A checked action sequence: `len()` rows of `width()` finite values.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionSequence {
    width: usize,
    /// Row-major (len, width).
    values: Vec<f32>,
}

impl ActionSequence {
    /// Reads and checks ACTIONS.json; errors name the file.
    pub fn read(path: &Path) -> Result<Self> {
        let fail = |detail: String| PipelineError::Input(format!("{}: {detail}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        Self::parse(&text).map_err(fail)
    }

    /// Parses and checks the text of ACTIONS.json.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let file: ActionsFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let at = e.path().to_string();
            let inner = e.into_inner();
            let expected = r#"expected {"actions": [[a_1, ..., a_A], ...]}"#;
            if at == "." {
                format!("{inner} ({expected})")
            } else {
                format!("`{at}`: {inner} ({expected})")
            }
        })?;
        Self::from_rows(&file.actions)
    }

    /// Checks rows: at least one, all of one non-zero width, every value finite in float32.
    pub fn from_rows(rows: &[Vec<f64>]) -> std::result::Result<Self, String> {
        let first = rows
            .first()
            .ok_or("`actions` is empty: give at least one action (one per generated frame)")?;
        let width = first.len();
        if width == 0 {
            return Err("action 0 is empty: each action has the model's action_dim values".into());
        }
        let mut values = Vec::with_capacity(rows.len() * width);
        for (i, row) in rows.iter().enumerate() {
            if row.len() != width {
                return Err(format!(
                    "action {i} has {} values, action 0 has {width}: every action has the same width",
                    row.len()
                ));
            }
            for (j, &v) in row.iter().enumerate() {
                let v32 = v as f32;
                if !v32.is_finite() {
                    return Err(format!(
                        "action {i} value {j} ({v}) is not a finite float32"
                    ));
                }
                values.push(v32);
            }
        }
        Ok(Self { width, values })
    }

    /// Number of actions (= generated frames after the start frame).
    pub fn len(&self) -> usize {
        self.values.len() / self.width
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Values per action.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Checks the width against the model's `action_dim`.
    pub fn check_width(&self, action_dim: usize) -> Result<()> {
        if self.width != action_dim {
            return Err(PipelineError::Input(format!(
                "actions are {} wide, the model takes action_dim = {action_dim}",
                self.width
            )));
        }
        Ok(())
    }

    /// Actions `start .. start + len` as (1, len, width) float32, zero-padded past the end (as the official
    /// rollout pads its last chunk).
    pub fn chunk(&self, start: usize, len: usize) -> Result<Tensor> {
        let mut out = vec![0f32; len * self.width];
        let end = (start + len).min(self.len());
        if start < end {
            let from = &self.values[start * self.width..end * self.width];
            out[..from.len()].copy_from_slice(from);
        }
        Ok(Tensor::from_vec(out, (1, len, self.width), &Device::Cpu)?)
    }
}

/// How a rollout of `actions` actions splits into chunks of `chunk_actions` (the official loop
/// `for i in range(0, len(actions), chunk_size)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutPlan {
    pub actions: usize,
    /// Actions per chunk: ratio x (latent frames - 1) of the model's chunk (12 for the released 13-frame model).
    pub chunk_actions: usize,
}

impl RolloutPlan {
    pub fn chunks(&self) -> usize {
        self.actions.div_ceil(self.chunk_actions)
    }

    /// First action of each chunk; the official code seeds chunk k's noise with it.
    pub fn chunk_starts(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.actions).step_by(self.chunk_actions)
    }

    /// Pixel frames of the output: the start frame and one per action.
    pub fn frames(&self) -> usize {
        1 + self.actions
    }

    /// Pixel frames each chunk generates (the conditioning frame and one per action of a full chunk).
    pub fn chunk_frames(&self) -> usize {
        1 + self.chunk_actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_and_chunk_with_zero_padding() {
        let a = ActionSequence::parse(r#"{"actions": [[1, 2], [3, 4], [5, 6]]}"#).unwrap();
        assert_eq!((a.len(), a.width()), (3, 2));
        let c = a.chunk(2, 2).unwrap();
        assert_eq!(c.dims(), [1, 2, 2]);
        assert_eq!(
            c.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [5.0, 6.0, 0.0, 0.0]
        );
        assert!(a.check_width(2).is_ok());
        assert!(a
            .check_width(7)
            .unwrap_err()
            .to_string()
            .contains("action_dim = 7"));
    }

    #[test]
    fn bad_actions_say_what_is_wrong() {
        for (text, says) in [
            ("{not json", "key must be a string"),
            (r#"{"actions": []}"#, "empty"),
            (r#"{"actions": [[]]}"#, "action 0 is empty"),
            (r#"{"actions": [[1, 2], [3]]}"#, "action 1 has 1 values"),
            (r#"{"actions": [[1, "x"]]}"#, "actions[0][1]"),
            (r#"{"action": [[1]]}"#, "unknown field `action`"),
            (r#"[[1, 2]]"#, "expected {\"actions\""),
            (r#"{"actions": [[1e300]]}"#, "not a finite float32"),
        ] {
            let err = ActionSequence::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn plans_follow_the_official_chunk_loop() {
        let p = RolloutPlan {
            actions: 30,
            chunk_actions: 12,
        };
        assert_eq!(p.chunks(), 3);
        assert_eq!(p.chunk_starts().collect::<Vec<_>>(), [0, 12, 24]);
        assert_eq!((p.frames(), p.chunk_frames()), (31, 13));
        let one = RolloutPlan {
            actions: 1,
            chunk_actions: 12,
        };
        assert_eq!(one.chunks(), 1);
    }
}

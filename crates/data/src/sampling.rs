//! Which source frames make a clip: resample the video to the model's frame rate, then take a window of
//! `frames` consecutive resampled frames.
//!
//! The reference's post-training loader (`VideoDataset._load_video`) takes `num_frames` consecutive frames at
//! the file's own rate from a start drawn afresh (`np.random.randint`) on every read, and refuses videos with
//! fewer frames. We differ on purpose in two ways: frames are first resampled to the model's rate
//! (`orrery_media::fps::resample_indices`) so clips of 30 fps and 16 fps footage show the same motion per frame,
//! and the start is a pure function of a seed and the video's key, so a clip can be encoded once into the latent
//! cache and a run resumes bit for bit. `ClipStart::First` reads the first frames.

use orrery_media::fps::resample_indices;

use crate::error::{DataError, Result};
use crate::report::SkipReason;

/// Where a clip's window starts among the resampled frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClipStart {
    /// At the first frame.
    #[default]
    First,
    /// Uniformly over every start that fits, drawn from the seed and the video's key (the same clip every time).
    Seeded { seed: u64 },
}

/// The clips a dataset yields: `frames` frames (1 + 4k, what the causal VAE encodes) of `width` x `height` at
/// `fps`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipSpec {
    pub frames: usize,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub start: ClipStart,
}

impl ClipSpec {
    pub fn validate(&self) -> Result<()> {
        if self.frames == 0 || !(self.frames - 1).is_multiple_of(4) {
            return Err(DataError::invalid(
                "clip length",
                format!("{} frames (need 1 + 4k)", self.frames),
            ));
        }
        if self.width == 0 || self.height == 0 {
            return Err(DataError::invalid(
                "clip size",
                format!("{}x{}", self.width, self.height),
            ));
        }
        if !(self.fps.is_finite() && self.fps > 0.0) {
            return Err(DataError::invalid(
                "frame rate",
                format!("{} fps", self.fps),
            ));
        }
        Ok(())
    }
}

/// The source frame indices of `key`'s clip, from a video of `frame_count` frames at `src_fps`
/// (`spec.frames` indices, non-decreasing), or why it has none. `spec` must be valid.
pub fn source_indices(
    frame_count: usize,
    src_fps: f64,
    spec: &ClipSpec,
    key: &str,
) -> std::result::Result<Vec<usize>, SkipReason> {
    let resampled =
        resample_indices(frame_count, src_fps, spec.fps).map_err(|e| SkipReason::Unreadable {
            detail: e.to_string(),
        })?;
    if resampled.len() < spec.frames {
        return Err(SkipReason::TooShort {
            frames_at_fps: resampled.len(),
            needed: spec.frames,
            fps: spec.fps,
        });
    }
    let starts = (resampled.len() - spec.frames + 1) as u64;
    let start = match spec.start {
        ClipStart::First => 0,
        ClipStart::Seeded { seed } => (splitmix64(seed ^ fnv1a(key.as_bytes())) % starts) as usize,
    };
    Ok(resampled[start..start + spec.frames].to_vec())
}

/// How many frames a video of `frame_count` at `src_fps` has at `dst_fps` (0 for an unusable rate).
pub(crate) fn frames_at_fps(frame_count: usize, src_fps: f64, dst_fps: f64) -> usize {
    resample_indices(frame_count, src_fps, dst_fps).map_or(0, |v| v.len())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(frames: usize, fps: f64, start: ClipStart) -> ClipSpec {
        ClipSpec {
            frames,
            width: 32,
            height: 16,
            fps,
            start,
        }
    }

    #[test]
    fn thirty_fps_to_sixteen_picks_the_latest_frame_at_each_tick() {
        let idx = source_indices(128, 30.0, &spec(9, 16.0, ClipStart::First), "k").unwrap();
        assert_eq!(idx, [0, 1, 3, 5, 7, 9, 11, 13, 15]);
    }

    #[test]
    fn the_same_rate_takes_consecutive_frames() {
        let idx = source_indices(93, 16.0, &spec(93, 16.0, ClipStart::First), "k").unwrap();
        assert_eq!(idx, (0..93).collect::<Vec<_>>());
    }

    #[test]
    fn too_short_videos_are_named_with_their_length() {
        let err = source_indices(93, 16.0, &spec(97, 16.0, ClipStart::First), "k").unwrap_err();
        assert_eq!(
            err,
            SkipReason::TooShort {
                frames_at_fps: 93,
                needed: 97,
                fps: 16.0
            }
        );
    }

    #[test]
    fn seeded_starts_are_deterministic_fit_and_vary_with_key_and_seed() {
        let s = |seed| spec(17, 16.0, ClipStart::Seeded { seed });
        let a = source_indices(300, 16.0, &s(1), "a").unwrap();
        assert_eq!(a, source_indices(300, 16.0, &s(1), "a").unwrap());
        assert_eq!(a.len(), 17);
        assert!(*a.last().unwrap() < 300);
        assert!(a.windows(2).all(|w| w[1] == w[0] + 1));
        let starts: std::collections::BTreeSet<usize> = (0..20)
            .map(|seed| source_indices(300, 16.0, &s(seed), "a").unwrap()[0])
            .chain((0..20).map(|k| source_indices(300, 16.0, &s(1), &k.to_string()).unwrap()[0]))
            .collect();
        assert!(starts.len() > 10, "starts barely vary: {starts:?}");
        // A video exactly one clip long has one start whatever the seed.
        assert_eq!(source_indices(17, 16.0, &s(9), "a").unwrap()[0], 0);
    }

    #[test]
    fn invalid_specs_are_refused() {
        assert!(spec(8, 16.0, ClipStart::First).validate().is_err());
        assert!(spec(0, 16.0, ClipStart::First).validate().is_err());
        assert!(spec(9, 0.0, ClipStart::First).validate().is_err());
        assert!(spec(9, f64::NAN, ClipStart::First).validate().is_err());
        assert!(spec(1, 16.0, ClipStart::First).validate().is_ok());
    }
}

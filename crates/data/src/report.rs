//! The typed account of a scanned dataset: what is used and what is left out and why, so a user can fix their
//! folder instead of guessing from a log.

use std::fmt;
use std::path::PathBuf;

/// Why a video gives no clip.
#[derive(Debug, Clone, PartialEq)]
pub enum SkipReason {
    /// The file is not an MP4 (e.g. an image with an `.mp4` name); `found` says what it looks like.
    NotAVideo {
        found: String,
    },
    /// An MP4 that cannot be decoded: truncated, corrupt, another codec, zero frames.
    Unreadable {
        detail: String,
    },
    MissingCaption {
        looked_in: Vec<PathBuf>,
    },
    CaptionUnreadable {
        path: PathBuf,
        detail: String,
    },
    EmptyCaption {
        path: PathBuf,
    },
    /// Fewer frames at the target rate than a clip needs.
    TooShort {
        frames_at_fps: usize,
        needed: usize,
        fps: f64,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAVideo { found } => write!(f, "not an MP4 video: {found}"),
            Self::Unreadable { detail } => write!(f, "unreadable video: {detail}"),
            Self::MissingCaption { looked_in } => {
                let list: Vec<String> = looked_in.iter().map(|p| p.display().to_string()).collect();
                write!(f, "no caption (looked for {})", list.join(", "))
            }
            Self::CaptionUnreadable { path, detail } => {
                write!(f, "caption {} unreadable: {detail}", path.display())
            }
            Self::EmptyCaption { path } => write!(f, "caption {} is empty", path.display()),
            Self::TooShort {
                frames_at_fps,
                needed,
                fps,
            } => write!(
                f,
                "too short: {frames_at_fps} frames at {fps} fps, a clip needs {needed}"
            ),
        }
    }
}

impl SkipReason {
    /// Whether the video is merely too short (policy `too_short`) rather than bad (policy `bad_file`).
    pub fn is_too_short(&self) -> bool {
        matches!(self, Self::TooShort { .. })
    }
}

/// A video that gives a clip.
#[derive(Debug, Clone, PartialEq)]
pub struct UsedFile {
    pub key: String,
    pub video: PathBuf,
    pub caption_path: PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    /// Frames in the file, at its own rate.
    pub frame_count: usize,
    /// Frames after resampling to the target rate (a clip is a window of these).
    pub frames_at_fps: usize,
}

/// A video left out, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedFile {
    pub video: PathBuf,
    pub reason: SkipReason,
}

/// Files used and skipped, each in sorted path order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatasetReport {
    pub used: Vec<UsedFile>,
    pub skipped: Vec<SkippedFile>,
}

impl fmt::Display for DatasetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} videos used, {} skipped",
            self.used.len(),
            self.skipped.len()
        )?;
        for s in &self.skipped {
            writeln!(f, "  skipped {}: {}", s.video.display(), s.reason)?;
        }
        Ok(())
    }
}

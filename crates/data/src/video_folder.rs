//! A folder of a user's videos as a dataset: scanned once (container headers and captions, no decoding), so
//! every problem is known and reported before training starts; clips are decoded on demand.

use std::path::{Path, PathBuf};

use orrery_media::{MediaError, VideoReader};

use crate::error::{DataError, Result};
use crate::layout::{find_videos, CaptionSource, VideoEntry};
use crate::policy::{OnProblem, Policy};
use crate::report::{DatasetReport, SkipReason, SkippedFile, UsedFile};
use crate::sampling::{frames_at_fps, source_indices, ClipSpec};
use crate::video_clip::{decode_frames, VideoClip};

/// A scanned video folder: one clip per usable video, in file-name order.
#[derive(Debug, Clone)]
pub struct VideoFolder {
    dir: PathBuf,
    spec: ClipSpec,
    items: Vec<Item>,
    report: DatasetReport,
}

#[derive(Debug, Clone)]
struct Item {
    key: String,
    video: PathBuf,
    caption: String,
    indices: Vec<usize>,
}

impl VideoFolder {
    /// Scans `dir` (layout in [`crate::find_videos`]): reads every caption and every video's container header,
    /// and picks each clip's source frames. Problems are skipped with a warning or refused as `policy` says;
    /// a folder with no usable video is an error carrying the report.
    ///
    /// Scanning does not decode pictures: a file whose container is sound but whose pictures are corrupt is
    /// found by [`VideoFolder::clip`], which names it in its error.
    pub fn scan(dir: &Path, spec: ClipSpec, policy: Policy) -> Result<Self> {
        spec.validate()?;
        let mut items = Vec::new();
        let mut report = DatasetReport::default();
        for entry in find_videos(dir)? {
            match check(&entry, &spec) {
                Ok((item, used)) => {
                    items.push(item);
                    report.used.push(used);
                }
                Err(reason) => {
                    let on = if reason.is_too_short() {
                        policy.too_short
                    } else {
                        policy.bad_file
                    };
                    match on {
                        OnProblem::Refuse => {
                            return Err(DataError::Refused {
                                path: entry.video,
                                reason,
                            })
                        }
                        OnProblem::Skip => {
                            tracing::warn!("skipping {}: {reason}", entry.video.display());
                            report.skipped.push(SkippedFile {
                                video: entry.video,
                                reason,
                            });
                        }
                    }
                }
            }
        }
        if items.is_empty() {
            return Err(DataError::Empty {
                dir: dir.to_owned(),
                report,
            });
        }
        Ok(Self {
            dir: dir.to_owned(),
            spec,
            items,
            report,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn spec(&self) -> &ClipSpec {
        &self.spec
    }

    pub fn report(&self) -> &DatasetReport {
        &self.report
    }

    /// Number of clips (one per usable video).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Clip `index`: `spec.frames` frames of `spec.width` x `spec.height`, with its caption.
    pub fn clip(&self, index: usize) -> Result<VideoClip> {
        let item = self.items.get(index).ok_or(DataError::OutOfRange {
            index,
            len: self.items.len(),
        })?;
        let frames = decode_frames(
            &item.video,
            &item.indices,
            self.spec.width,
            self.spec.height,
        )?;
        Ok(VideoClip {
            key: item.key.clone(),
            caption: item.caption.clone(),
            video: item.video.clone(),
            source_indices: item.indices.clone(),
            frames,
        })
    }
}

/// The usable item of `entry`, or why there is none.
fn check(entry: &VideoEntry, spec: &ClipSpec) -> std::result::Result<(Item, UsedFile), SkipReason> {
    let info = match VideoReader::open(&entry.video) {
        Ok(reader) => reader.info().clone(),
        Err(MediaError::WrongFormat { found, .. }) => return Err(SkipReason::NotAVideo { found }),
        Err(e) => {
            return Err(SkipReason::Unreadable {
                detail: e.to_string(),
            })
        }
    };
    let caption_path = match &entry.caption {
        CaptionSource::Found(p) => p.clone(),
        CaptionSource::Missing { looked_in } => {
            return Err(SkipReason::MissingCaption {
                looked_in: looked_in.clone(),
            })
        }
    };
    // Trimmed as the reference does (`read_text().strip()`).
    let caption = std::fs::read_to_string(&caption_path)
        .map_err(|e| SkipReason::CaptionUnreadable {
            path: caption_path.clone(),
            detail: e.to_string(),
        })?
        .trim()
        .to_owned();
    if caption.is_empty() {
        return Err(SkipReason::EmptyCaption { path: caption_path });
    }
    let indices = source_indices(info.frame_count, info.fps, spec, &entry.key)?;
    let used = UsedFile {
        key: entry.key.clone(),
        video: entry.video.clone(),
        caption_path,
        width: info.width,
        height: info.height,
        fps: info.fps,
        frame_count: info.frame_count,
        frames_at_fps: frames_at_fps(info.frame_count, info.fps, spec.fps),
    };
    let item = Item {
        key: entry.key.clone(),
        video: entry.video.clone(),
        caption,
        indices,
    };
    Ok((item, used))
}

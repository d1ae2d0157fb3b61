//! orrery-data: training datasets from files on disk. Today: a folder of a user's videos with captions in the
//! official post-training layout (`videos/*.mp4` + `metas/*.txt`, or webdataset shards unpacked into it),
//! checked once up front into a typed report (which files are used, which are skipped and why) and cut into
//! fixed-size clips at the model's frame rate, resized and centre-cropped as the reference prepares its inputs.
//!
//! ```text
//! find_videos(dir) -> [VideoEntry]            layout.rs: videos and their caption files
//! VideoFolder::scan(dir, ClipSpec, Policy)    video_folder.rs: headers + captions -> DatasetReport
//!   source_indices(..)                        sampling.rs: resample to spec.fps, pick the window
//! VideoFolder::clip(i) -> VideoClip           video_clip.rs: decode only those frames, resize + centre crop
//! unpack_shards(tars, dir)                    shards.rs: KEY.mp4 + KEY.txt -> dir/videos, dir/metas
//! ```
//!
//! No tensor library here: clips are 8-bit RGB frames; turning them into tensors is the trainer's business.

mod error;
mod layout;
mod policy;
mod report;
mod sampling;
mod shards;
mod video_clip;
mod video_folder;

pub use error::{DataError, Result};
pub use layout::{find_videos, CaptionSource, VideoEntry};
pub use policy::{OnProblem, Policy};
pub use report::{DatasetReport, SkipReason, SkippedFile, UsedFile};
pub use sampling::{source_indices, ClipSpec, ClipStart};
pub use shards::unpack_shards;
pub use video_clip::VideoClip;
pub use video_folder::VideoFolder;

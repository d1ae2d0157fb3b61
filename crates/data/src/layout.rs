//! Where videos and captions live. The official post-training layout (the reference's `VideoDataset`,
//! `cosmos_predict2/_src/predict2/datasets/local_datasets/dataset_video.py`) is
//!
//! ```text
//! DIR/videos/KEY.mp4
//! DIR/metas/KEY.txt      the caption of KEY.mp4
//! ```
//!
//! We also accept a caption beside its video (`DIR/videos/KEY.txt`), and a flat folder without `videos/`
//! (`DIR/KEY.mp4` + `DIR/KEY.txt` or `DIR/metas/KEY.txt`), because that is how people keep clips.
//!
//! Precedence: `metas/KEY.txt` first, then `KEY.txt` beside the video. The official file wins so a folder
//! prepared for the reference trains on the same captions here; a beside-file is only a fallback and never
//! merged with it. Only the `.mp4` extension (any case) names a video; other files are ignored.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// Where a video's caption was found, or every place that was looked at.
#[derive(Debug, Clone, PartialEq)]
pub enum CaptionSource {
    Found(PathBuf),
    Missing { looked_in: Vec<PathBuf> },
}

/// One video of a folder and its caption file.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoEntry {
    /// The file stem, which pairs video and caption.
    pub key: String,
    pub video: PathBuf,
    pub caption: CaptionSource,
}

/// The videos of `dir` in file-name order, each with its caption source (see the module docs for the layout).
pub fn find_videos(dir: &Path) -> Result<Vec<VideoEntry>> {
    if !dir.is_dir() {
        return Err(DataError::invalid(
            "dataset folder",
            format!("{} is not a folder", dir.display()),
        ));
    }
    let videos_dir = dir.join("videos");
    let video_dir = if videos_dir.is_dir() {
        videos_dir
    } else {
        dir.to_owned()
    };
    let metas_dir = dir.join("metas");
    let mut videos: Vec<PathBuf> = read_dir(&video_dir)?
        .into_iter()
        .filter(|p| p.is_file() && is_mp4_name(p))
        .collect();
    videos.sort();
    Ok(videos
        .into_iter()
        .filter_map(|video| {
            // A stem that is not UTF-8 cannot name a caption portably; such files are ignored like non-videos.
            let key = video.file_stem()?.to_str()?.to_owned();
            let candidates = [
                metas_dir.join(format!("{key}.txt")),
                video_dir.join(format!("{key}.txt")),
            ];
            let caption = match candidates.iter().find(|p| p.is_file()) {
                Some(p) => CaptionSource::Found(p.clone()),
                None => CaptionSource::Missing {
                    looked_in: candidates.to_vec(),
                },
            };
            Some(VideoEntry {
                key,
                video,
                caption,
            })
        })
        .collect())
}

fn is_mp4_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("mp4"))
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |cause| DataError::Io {
        path: dir.to_owned(),
        cause,
    };
    std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()).map_err(io))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metas_caption_wins_over_one_beside_the_video() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("videos")).unwrap();
        std::fs::create_dir_all(d.join("metas")).unwrap();
        for f in [
            "videos/a.mp4",
            "videos/b.MP4",
            "videos/c.mp4",
            "videos/notes.md",
        ] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        std::fs::write(d.join("metas/a.txt"), "official").unwrap();
        std::fs::write(d.join("videos/a.txt"), "beside").unwrap();
        std::fs::write(d.join("videos/b.txt"), "beside").unwrap();
        let found = find_videos(d).unwrap();
        let keys: Vec<&str> = found.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(
            found[0].caption,
            CaptionSource::Found(d.join("metas/a.txt"))
        );
        assert_eq!(
            found[1].caption,
            CaptionSource::Found(d.join("videos/b.txt"))
        );
        assert_eq!(
            found[2].caption,
            CaptionSource::Missing {
                looked_in: vec![d.join("metas/c.txt"), d.join("videos/c.txt")]
            }
        );
    }

    #[test]
    fn a_flat_folder_works_and_a_missing_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.mp4"), b"x").unwrap();
        std::fs::write(dir.path().join("x.txt"), "cap").unwrap();
        let found = find_videos(dir.path()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].caption,
            CaptionSource::Found(dir.path().join("x.txt"))
        );
        assert!(find_videos(&dir.path().join("nope")).is_err());
    }
}

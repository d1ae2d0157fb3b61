//! Webdataset tar shards (`KEY.mp4` + `KEY.txt` entries, as `orrery physics generate` and the reference's
//! webdataset loaders write them) unpacked into the official folder layout, so one scanner
//! ([`crate::VideoFolder`]) checks and reports both. The decoder reads files, not byte slices, and a shard is
//! read once, so unpacking costs one copy on disk and keeps memory at one entry.
//!
//! Keys follow webdataset: the key is an entry's path up to the first dot of its file name, the rest is its
//! extension (`a/b/0001.seg.mp4` is key `a/b/0001`, extension `seg.mp4`). Only `mp4` and `txt` entries are
//! used; other entries (ground truth `.json`, ...) are ignored. Unpacked files are named
//! `SHARD.KEY` with `/` in the key turned into `_`, so keys of different shards never collide.
//! A shard that is not a readable tar is an error naming it; a bad entry (a broken video, a missing caption)
//! is found by the scan and handled by its policy like any other file.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// Unpacks `shards` into `into` as `into/videos/SHARD.KEY.mp4` and `into/metas/SHARD.KEY.txt`; returns the
/// number of videos written. `into` is then a folder for [`crate::VideoFolder::scan`].
pub fn unpack_shards(shards: &[PathBuf], into: &Path) -> Result<usize> {
    let (videos, metas) = (into.join("videos"), into.join("metas"));
    for d in [&videos, &metas] {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let mut written = 0;
    for shard in shards {
        let stem = shard
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| DataError::invalid("shard name", shard.display().to_string()))?;
        let file = std::fs::File::open(shard).map_err(io(shard))?;
        let mut archive = tar::Archive::new(file);
        for entry in archive.entries().map_err(io(shard))? {
            let mut entry = entry.map_err(io(shard))?;
            let name = entry
                .path()
                .map_err(io(shard))?
                .to_string_lossy()
                .into_owned();
            let Some((key, ext)) = split_key(&name) else {
                continue;
            };
            let target = match ext {
                "mp4" => videos.join(format!("{stem}.{key}.mp4")),
                "txt" => metas.join(format!("{stem}.{key}.txt")),
                _ => continue,
            };
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(io(shard))?;
            std::fs::write(&target, bytes).map_err(io(&target))?;
            written += usize::from(ext == "mp4");
        }
    }
    Ok(written)
}

/// (`key` with `/` as `_`, extension) of a webdataset entry name, or `None` for directories, names without an
/// extension and names that could leave the folder.
fn split_key(name: &str) -> Option<(String, &str)> {
    let (dir, file) = name.rsplit_once('/').unwrap_or(("", name));
    let (stem, ext) = file.split_once('.')?;
    if stem.is_empty() || dir.split('/').any(|p| p == "..") {
        return None;
    }
    let key = if dir.is_empty() {
        stem.to_owned()
    } else {
        format!("{dir}/{stem}")
    };
    Some((key.replace('/', "_"), ext))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> DataError + '_ {
    move |cause| DataError::Io {
        path: path.to_owned(),
        cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_at_the_first_dot_of_the_file_name() {
        assert_eq!(split_key("0001.mp4"), Some(("0001".into(), "mp4")));
        assert_eq!(
            split_key("a/b/0001.seg.mp4"),
            Some(("a_b_0001".into(), "seg.mp4"))
        );
        assert_eq!(split_key("dir/"), None);
        assert_eq!(split_key("README"), None);
        assert_eq!(split_key("../x.mp4"), None);
        assert_eq!(split_key(".hidden"), None);
    }
}

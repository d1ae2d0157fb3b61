use std::io::Read;
use std::path::Path;

use super::error::{CheckpointError, Result};

/// The on-disk layouts orrery reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One `.safetensors` file.
    Safetensors,
    /// A Hugging Face folder with `*.safetensors.index.json` and its shards (or the index file itself).
    ShardedSafetensors,
    /// A folder of `.safetensors` files without an index.
    SafetensorsFolder,
    /// A PyTorch checkpoint written by `torch.save` (a zip of `data.pkl` and raw storages).
    TorchZip,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Safetensors => "safetensors",
            Format::ShardedSafetensors => "sharded safetensors",
            Format::SafetensorsFolder => "safetensors folder",
            Format::TorchZip => "PyTorch zip checkpoint",
        })
    }
}

/// Recognises a checkpoint by its content: zip magic, a safetensors header, or a folder layout.
pub fn detect(path: &Path) -> Result<Format> {
    let meta = std::fs::metadata(path).map_err(|e| CheckpointError::io(path, e))?;
    if meta.is_dir() {
        let mut has_index = false;
        let mut has_safetensors = false;
        for entry in std::fs::read_dir(path).map_err(|e| CheckpointError::io(path, e))? {
            let name = entry.map_err(|e| CheckpointError::io(path, e))?.file_name();
            let name = name.to_string_lossy();
            has_index |= name.ends_with(".safetensors.index.json");
            has_safetensors |= name.ends_with(".safetensors");
        }
        return match (has_index, has_safetensors) {
            (true, _) => Ok(Format::ShardedSafetensors),
            (false, true) => Ok(Format::SafetensorsFolder),
            _ => Err(CheckpointError::UnknownFormat {
                path: path.to_owned(),
                found: "a folder with no .safetensors files and no .safetensors.index.json".into(),
            }),
        };
    }
    if path.to_string_lossy().ends_with(".safetensors.index.json") {
        return Ok(Format::ShardedSafetensors);
    }
    let mut head = [0u8; 16];
    let n = std::fs::File::open(path)
        .and_then(|mut f| read_up_to(&mut f, &mut head))
        .map_err(|e| CheckpointError::io(path, e))?;
    let head = &head[..n];
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Ok(Format::TorchZip);
    }
    if n >= 9 && head[8] == b'{' {
        return Ok(Format::Safetensors);
    }
    Err(CheckpointError::UnknownFormat {
        path: path.to_owned(),
        found: describe_magic(head),
    })
}

fn read_up_to(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Names what a file that is not a checkpoint seems to be, from its first bytes.
fn describe_magic(head: &[u8]) -> String {
    let kind = if head.is_empty() {
        "an empty file"
    } else if head.starts_with(&[0x80]) && head.len() > 1 && head[1] <= 5 {
        "a legacy (pre-zip) PyTorch pickle; re-save it with a current torch.save"
    } else if head.starts_with(b"\x89PNG") {
        "a PNG image"
    } else if head.starts_with(&[0xff, 0xd8, 0xff]) {
        "a JPEG image"
    } else if head.len() >= 8 && &head[4..8] == b"ftyp" {
        "an MP4 video"
    } else if head.starts_with(b"\x1f\x8b") {
        "a gzip archive"
    } else if head.starts_with(b"{") {
        "JSON text"
    } else {
        "unrecognised content"
    };
    let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{kind} (first bytes {})", hex.join(" "))
}

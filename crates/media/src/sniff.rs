//! Recognises files by their first bytes, so that a file whose extension lies gets a clear message.

use std::io::Read;
use std::path::Path;

use crate::error::{MediaError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Png,
    Jpeg,
    Gif,
    Webp,
    Bmp,
    Mp4,
    Unknown,
}

pub fn kind_of(head: &[u8]) -> Kind {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Kind::Png
    } else if head.starts_with(&[0xff, 0xd8, 0xff]) {
        Kind::Jpeg
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Kind::Gif
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Kind::Webp
    } else if head.starts_with(b"BM") {
        Kind::Bmp
    } else if head.len() >= 8 && &head[4..8] == b"ftyp" {
        Kind::Mp4
    } else {
        Kind::Unknown
    }
}

/// A short human description of what the bytes look like, with the first bytes in hex.
pub fn describe(head: &[u8]) -> String {
    let kind = match kind_of(head) {
        Kind::Png => "a PNG image",
        Kind::Jpeg => "a JPEG image",
        Kind::Gif => "a GIF image",
        Kind::Webp => "a WebP image",
        Kind::Bmp => "a BMP image",
        Kind::Mp4 => "an MP4/ISO media file",
        Kind::Unknown if head.is_empty() => "an empty file",
        Kind::Unknown if head.starts_with(b"PK\x03\x04") => "a zip archive (a PyTorch checkpoint?)",
        Kind::Unknown => "unrecognised content",
    };
    let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{kind} (first bytes {})", hex.join(" "))
}

pub fn read_head(path: &Path) -> Result<Vec<u8>> {
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path)
        .and_then(|f| f.take(16).read_to_end(&mut head))
        .map_err(|e| MediaError::io(path, e))?;
    Ok(head)
}

//! Still images: PNG, JPEG (and GIF, WebP, BMP first frames where the codec is built in) in, PNG out.

use std::path::Path;

use image::RgbImage;

use crate::atomic::write_atomically;
use crate::error::{MediaError, Result};
use crate::sniff::{self, Kind};

/// Largest image side accepted, far beyond any model resolution; guards against decompression bombs.
pub const MAX_IMAGE_SIDE: u32 = 16384;

/// Reads an image as 8-bit RGB, recognising the format by content (alpha is dropped, greyscale expanded).
pub fn read_image(path: &Path) -> Result<RgbImage> {
    let head = sniff::read_head(path)?;
    let format = match sniff::kind_of(&head) {
        Kind::Png => image::ImageFormat::Png,
        Kind::Jpeg => image::ImageFormat::Jpeg,
        Kind::Gif => image::ImageFormat::Gif,
        _ => {
            return Err(MediaError::WrongFormat {
                path: path.to_owned(),
                expected: "PNG, JPEG or GIF image",
                found: sniff::describe(&head),
            })
        }
    };
    let bytes = std::fs::read(path).map_err(|e| MediaError::io(path, e))?;
    // Decoders fill a cut-off image with grey instead of failing; check that the file ends properly first.
    if let Some(problem) = truncation(format, &bytes) {
        return Err(MediaError::Decode {
            path: path.to_owned(),
            format: "image",
            detail: format!("truncated file: {problem}"),
        });
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| MediaError::Decode {
        path: path.to_owned(),
        format: "image",
        detail: e.to_string(),
    })?;
    Ok(decoded.to_rgb8())
}

/// Why an image file is incomplete, if it is: a PNG must end with its IEND chunk, a JPEG's last scan must be
/// followed by an end-of-image marker (scan data cannot contain one: 0xFF is byte-stuffed there), a GIF must end
/// with its trailer byte.
fn truncation(format: image::ImageFormat, bytes: &[u8]) -> Option<&'static str> {
    let find_last = |needle: &[u8]| bytes.windows(needle.len()).rposition(|w| w == needle);
    match format {
        image::ImageFormat::Png => {
            let tail = &bytes[bytes.len().saturating_sub(64)..];
            (!tail.windows(4).any(|w| w == b"IEND"))
                .then_some("no IEND chunk at the end of the PNG")
        }
        image::ImageFormat::Jpeg => {
            let last_scan = find_last(&[0xff, 0xda]).unwrap_or(0);
            let end = find_last(&[0xff, 0xd9]);
            (end.is_none_or(|e| e < last_scan))
                .then_some("no end-of-image marker after the last JPEG scan")
        }
        image::ImageFormat::Gif => {
            let trimmed = bytes.iter().rposition(|&b| b != 0).map(|i| bytes[i]);
            (trimmed != Some(0x3b)).then_some("no GIF trailer")
        }
        _ => None,
    }
}

/// Writes an RGB image as PNG, atomically.
pub fn write_png(path: &Path, image: &RgbImage) -> Result<()> {
    write_atomically(path, |out| {
        image
            .write_to(out, image::ImageFormat::Png)
            .map_err(|e| MediaError::Encode {
                path: path.to_owned(),
                format: "PNG",
                detail: e.to_string(),
            })
    })
}

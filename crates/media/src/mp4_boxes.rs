//! A structural check of an MP4's box tree before the `mp4` crate parses it.
//!
//! The crate trusts box sizes: a nested box of size 0 makes it loop forever, and a file cut inside its `moov`
//! can still parse. Here every top-level box must fit the file and together they must tile it exactly, and every
//! box inside the containers the crate descends into must have a sane size within its parent.

use std::io::{Read, Seek, SeekFrom};

/// Containers whose children are plain boxes.
const CONTAINERS: &[&[u8; 4]] = &[
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex", b"moof", b"traf",
    b"udta",
];
/// `moov` larger than this is not a video we make or read.
const MAX_MOOV: u64 = 256 << 20;
const MAX_DEPTH: usize = 16;

/// Checks the top-level layout of the file and the box tree inside `moov`.
pub fn validate(file: &mut (impl Read + Seek), file_len: u64) -> Result<(), String> {
    let mut at = 0u64;
    let mut saw_moov = false;
    while at < file_len {
        file.seek(SeekFrom::Start(at)).map_err(|e| e.to_string())?;
        let (kind, header, size) = read_header(file, file_len - at)?;
        let size = if size == 0 { file_len - at } else { size };
        if size < header || at + size > file_len {
            return Err(format!(
                "box `{}` at byte {at} claims {size} bytes but the file has {} left (truncated?)",
                show(&kind),
                file_len - at
            ));
        }
        if &kind == b"moov" {
            if size > MAX_MOOV {
                return Err(format!("`moov` box of {size} bytes is implausibly large"));
            }
            let mut moov = vec![0u8; (size - header) as usize];
            file.read_exact(&mut moov).map_err(|e| e.to_string())?;
            walk(&moov, 0)?;
            saw_moov = true;
        }
        at += size;
    }
    if !saw_moov {
        return Err("no `moov` box (the file is incomplete or not a finished recording)".into());
    }
    Ok(())
}

fn read_header(file: &mut impl Read, left: u64) -> Result<([u8; 4], u64, u64), String> {
    if left < 8 {
        return Err(format!(
            "{left} stray bytes at the end of the file (truncated?)"
        ));
    }
    let mut head = [0u8; 8];
    file.read_exact(&mut head).map_err(|e| e.to_string())?;
    let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as u64;
    let kind = [head[4], head[5], head[6], head[7]];
    if size32 == 1 {
        let mut large = [0u8; 8];
        file.read_exact(&mut large).map_err(|e| e.to_string())?;
        return Ok((kind, 16, u64::from_be_bytes(large)));
    }
    Ok((kind, 8, size32))
}

/// Walks the children of a container payload, recursing into containers and the video sample description.
fn walk(payload: &[u8], depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("boxes nested too deeply".into());
    }
    let mut at = 0usize;
    while at < payload.len() {
        let rest = &payload[at..];
        if rest.len() < 8 {
            return Err(format!("{} stray bytes inside a box", rest.len()));
        }
        let size32 = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as u64;
        let kind: [u8; 4] = [rest[4], rest[5], rest[6], rest[7]];
        let (header, size) = match size32 {
            0 => {
                return Err(format!(
                    "box `{}` inside a container has size 0",
                    show(&kind)
                ))
            }
            1 if rest.len() >= 16 => {
                let mut large = [0u8; 8];
                large.copy_from_slice(&rest[8..16]);
                (16, u64::from_be_bytes(large))
            }
            1 => return Err("truncated 64-bit box size".into()),
            s => (8, s),
        };
        if size < header || size > rest.len() as u64 {
            return Err(format!(
                "box `{}` claims {size} bytes, its parent has {} left",
                show(&kind),
                rest.len()
            ));
        }
        let body = &rest[header as usize..size as usize];
        if CONTAINERS.iter().any(|c| **c == kind) {
            walk(body, depth + 1)?;
        } else if &kind == b"stsd" || &kind == b"dref" {
            // version/flags (4) + entry count (4), then the entries as boxes.
            walk(
                body.get(8..)
                    .ok_or("truncated sample or data reference table")?,
                depth + 1,
            )?;
        } else if &kind == b"avc1" || &kind == b"avc3" {
            // 78 bytes of visual sample entry fields, then child boxes (avcC, pasp, colr, btrt ...).
            walk(body.get(78..).ok_or("truncated `avc1` box")?, depth + 1)?;
        }
        at += size as usize;
    }
    Ok(())
}

fn show(kind: &[u8; 4]) -> String {
    kind.iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    fn check(bytes: &[u8]) -> Result<(), String> {
        validate(&mut std::io::Cursor::new(bytes), bytes.len() as u64)
    }

    #[test]
    fn accepts_tiled_files_and_rejects_broken_trees() {
        let trak = mp4_box(b"trak", &mp4_box(b"tkhd", &[0; 12]));
        let good = [
            mp4_box(b"ftyp", b"isom"),
            mp4_box(b"moov", &trak),
            mp4_box(b"mdat", &[1, 2, 3]),
        ]
        .concat();
        check(&good).unwrap();
        assert!(check(&good[..good.len() - 1])
            .unwrap_err()
            .contains("truncated"));
        let no_moov = [mp4_box(b"ftyp", b"isom"), mp4_box(b"mdat", &[1])].concat();
        assert!(check(&no_moov).unwrap_err().contains("moov"));
        // A nested box of size zero (made `mp4` 0.14 loop forever) is an error.
        let zero = [0u8, 0, 0, 0, b'x', b'x', b'x', b'x'];
        let bad = [
            mp4_box(b"ftyp", b"isom"),
            mp4_box(b"moov", &mp4_box(b"trak", &zero)),
        ]
        .concat();
        assert!(check(&bad).unwrap_err().contains("size 0"));
    }
}

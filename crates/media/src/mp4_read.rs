//! MP4 (H.264) decoding: the `mp4` crate demuxes, the bundled OpenH264 decodes, frames come out as RGB in
//! presentation order, one at a time, so a long video never has to sit in memory whole.
//!
//! Presentation order comes from the container: every sample's time (decode time plus composition offset) is
//! known up front, decoded pictures carry their time, and a picture is released when it is the next one due.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufReader, Seek};
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::error::{MediaError, Result};
use crate::h264::{H264Decoder, Picture};
use crate::mp4_boxes;
use crate::sniff::{self, Kind};
use crate::Video;

const FORMAT: &str = "MP4/H.264";
/// Largest frame side we decode (8K); larger headers are treated as corrupt.
const MAX_SIDE: u32 = 8192;

/// What the container says about the video track.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    /// Frames per second, from the track's timescale and sample durations.
    pub fps: f64,
    pub frame_count: usize,
}

/// Streams the frames of the first H.264 track of an MP4 file.
pub struct VideoReader {
    path: PathBuf,
    mp4: mp4::Mp4Reader<BufReader<std::fs::File>>,
    track_id: u32,
    length_size: usize,
    info: VideoInfo,
    decoder: H264Decoder,
    next_sample: u32,
    /// Presentation times of all samples, in presentation order, not yet released.
    due: VecDeque<u64>,
    /// Decoded pictures waiting for their turn, by presentation time.
    ready: BTreeMap<u64, Picture>,
    flushed: bool,
    annexb: Vec<u8>,
    sample_times: Vec<u64>,
}

impl VideoReader {
    pub fn open(path: &Path) -> Result<Self> {
        let head = sniff::read_head(path)?;
        if sniff::kind_of(&head) != Kind::Mp4 {
            return Err(MediaError::WrongFormat {
                path: path.to_owned(),
                expected: "MP4 video",
                found: sniff::describe(&head),
            });
        }
        let corrupt = |detail: String| decode_error(path, detail);
        let mut file = std::fs::File::open(path).map_err(|e| MediaError::io(path, e))?;
        let size = file.metadata().map_err(|e| MediaError::io(path, e))?.len();
        mp4_boxes::validate(&mut file, size).map_err(corrupt)?;
        file.seek(std::io::SeekFrom::Start(0))
            .map_err(|e| MediaError::io(path, e))?;
        let mp4 = guard(|| mp4::Mp4Reader::read_header(BufReader::new(file), size))
            .map_err(corrupt)?
            .map_err(|e| corrupt(e.to_string()))?;

        let mut tracks: Vec<&mp4::Mp4Track> = mp4.tracks().values().collect();
        tracks.sort_by_key(|t| t.track_id());
        let track = tracks
            .into_iter()
            .find(|t| matches!(t.track_type(), Ok(mp4::TrackType::Video)))
            .ok_or_else(|| corrupt("no video track".into()))?;
        match track.media_type() {
            Ok(mp4::MediaType::H264) => {}
            Ok(other) => {
                return Err(corrupt(format!(
                    "video codec {other} is not supported (only H.264)"
                )))
            }
            Err(e) => return Err(corrupt(format!("unknown video codec: {e}"))),
        }
        let avcc = track
            .trak
            .mdia
            .minf
            .stbl
            .stsd
            .avc1
            .as_ref()
            .map(|avc1| &avc1.avcc)
            .ok_or_else(|| corrupt("H.264 track without an avcC box".into()))?;
        let length_size = avcc.length_size_minus_one as usize % 4 + 1;
        let mut parameter_sets = Vec::new();
        for nal in avcc
            .sequence_parameter_sets
            .iter()
            .chain(&avcc.picture_parameter_sets)
        {
            parameter_sets.extend_from_slice(&[0, 0, 0, 1]);
            parameter_sets.extend_from_slice(&nal.bytes);
        }
        if parameter_sets.is_empty() {
            return Err(corrupt("avcC box has no SPS/PPS".into()));
        }
        let (width, height) = (track.width() as u32, track.height() as u32);
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(corrupt(format!("implausible frame size {width}x{height}")));
        }
        let frame_count = track.sample_count() as usize;
        // Every sample takes at least one byte of the file.
        if frame_count == 0 || frame_count as u64 > size {
            return Err(corrupt(format!(
                "implausible sample count {frame_count} for a file of {size} bytes"
            )));
        }
        let fps = track_fps(track).map_err(corrupt)?;
        let track_id = track.track_id();

        check_chunk_table(track).map_err(corrupt)?;
        let sample_times = presentation_times(track).map_err(corrupt)?;
        let mut due = sample_times.clone();
        due.sort_unstable();
        due.dedup();
        if due.len() != frame_count {
            return Err(corrupt("two samples share one presentation time".into()));
        }
        let mut decoder = H264Decoder::new().map_err(corrupt)?;
        decoder
            .decode(&parameter_sets, 0)
            .map_err(|e| corrupt(format!("bad SPS/PPS: {e}")))?;
        Ok(Self {
            path: path.to_owned(),
            mp4,
            track_id,
            length_size,
            info: VideoInfo {
                width,
                height,
                fps,
                frame_count,
            },
            decoder,
            next_sample: 1,
            due: due.into(),
            ready: BTreeMap::new(),
            flushed: false,
            annexb: Vec::new(),
            sample_times,
        })
    }

    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    fn corrupt(&self, detail: String) -> MediaError {
        decode_error(&self.path, detail)
    }

    /// The next frame in presentation order, or `None` after the last.
    pub fn next_frame(&mut self) -> Result<Option<RgbImage>> {
        loop {
            let Some(&due) = self.due.front() else {
                return Ok(None);
            };
            if let Some(picture) = self.ready.remove(&due) {
                self.due.pop_front();
                return Ok(Some(picture.to_rgb()));
            }
            if self.flushed {
                return Err(self.corrupt(format!(
                    "the decoder never produced the frame shown at tick {due} ({} frames missing)",
                    self.due.len()
                )));
            }
            let pictures = if self.next_sample as usize > self.info.frame_count {
                self.flushed = true;
                self.decoder.finish().map_err(|e| self.corrupt(e))?
            } else {
                self.decode_next_sample()?
            };
            for picture in pictures {
                if (picture.width, picture.height)
                    != (self.info.width as usize, self.info.height as usize)
                {
                    return Err(self.corrupt(format!(
                        "a frame is {}x{}, the track says {}x{}",
                        picture.width, picture.height, self.info.width, self.info.height
                    )));
                }
                self.ready.insert(picture.pts, picture);
            }
        }
    }

    fn decode_next_sample(&mut self) -> Result<Vec<Picture>> {
        let id = self.next_sample;
        self.next_sample += 1;
        let sample = guard(|| self.mp4.read_sample(self.track_id, id))
            .map_err(|e| self.corrupt(e))?
            .map_err(|e| self.corrupt(format!("sample {id}: {e}")))?
            .ok_or_else(|| self.corrupt(format!("sample {id} is missing")))?;
        avcc_to_annexb(&sample.bytes, self.length_size, &mut self.annexb)
            .map_err(|e| self.corrupt(format!("sample {id}: {e}")))?;
        let pts = self.sample_times[id as usize - 1];
        self.decoder
            .decode(&self.annexb, pts)
            .map_err(|e| self.corrupt(format!("frame {id}: {e}")))
    }
}

/// The sample-to-chunk table the `mp4` crate divides by and indexes with, checked before any sample is read.
fn check_chunk_table(track: &mp4::Mp4Track) -> Result<(), String> {
    let stbl = &track.trak.mdia.minf.stbl;
    if stbl.stsc.entries.is_empty() {
        return Err("empty sample-to-chunk table".into());
    }
    let chunks = stbl
        .stco
        .as_ref()
        .map(|b| b.entries.len())
        .or(stbl.co64.as_ref().map(|b| b.entries.len()));
    let chunks = chunks.ok_or("no chunk offset table")? as u64;
    let mut previous = 0u32;
    for (i, e) in stbl.stsc.entries.iter().enumerate() {
        if e.samples_per_chunk == 0
            || e.first_chunk == 0
            || e.first_chunk <= previous
            || e.first_chunk as u64 > chunks
        {
            return Err(format!(
                "sample-to-chunk entry {i} is invalid (first chunk {}, {} samples per chunk, {chunks} chunks)",
                e.first_chunk, e.samples_per_chunk
            ));
        }
        previous = e.first_chunk;
    }
    Ok(())
}

/// Presentation time of every sample in decode order: decode times from `stts` plus offsets from `ctts`.
fn presentation_times(track: &mp4::Mp4Track) -> Result<Vec<u64>, String> {
    let stbl = &track.trak.mdia.minf.stbl;
    let n = track.sample_count() as usize;
    let mut times = Vec::with_capacity(n.min(1 << 20));
    let mut t: u64 = 0;
    for entry in &stbl.stts.entries {
        for _ in 0..entry.sample_count {
            if times.len() == n {
                break;
            }
            times.push(t);
            t = t.saturating_add(entry.sample_delta as u64);
        }
    }
    if times.len() != n {
        return Err(format!(
            "the time table covers {} of {n} samples",
            times.len()
        ));
    }
    if let Some(ctts) = &stbl.ctts {
        let mut i = 0usize;
        for entry in &ctts.entries {
            for _ in 0..entry.sample_count {
                if i == n {
                    break;
                }
                // Offsets may be negative (version 1 ctts); shift so the earliest stays at zero or above.
                times[i] = (times[i] as i64 + entry.sample_offset as i64 + i32::MAX as i64) as u64;
                i += 1;
            }
        }
    }
    Ok(times)
}

fn decode_error(path: &Path, detail: String) -> MediaError {
    MediaError::Decode {
        path: path.to_owned(),
        format: FORMAT,
        detail,
    }
}

/// Runs third-party parsing code and turns a panic inside it into an error, so a hostile file cannot abort
/// the program.
fn guard<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|_| "the MP4 demuxer rejected malformed data".to_string())
}

/// MP4 stores NAL units with big-endian length prefixes; the decoder wants Annex-B start codes.
fn avcc_to_annexb(sample: &[u8], length_size: usize, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    let mut rest = sample;
    while !rest.is_empty() {
        if rest.len() < length_size {
            return Err("truncated NAL length".into());
        }
        let len = rest[..length_size]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        rest = &rest[length_size..];
        if len > rest.len() {
            return Err(format!(
                "NAL unit of {len} bytes overruns the sample ({} left)",
                rest.len()
            ));
        }
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(&rest[..len]);
        rest = &rest[len..];
    }
    Ok(())
}

/// Frame rate from the media timescale and the most common sample duration (robust to an odd last sample).
/// Computed here rather than with `Mp4Track::frame_rate`, which divides by an unchecked timescale.
fn track_fps(track: &mp4::Mp4Track) -> Result<f64, String> {
    let timescale = track.timescale();
    let stts = &track.trak.mdia.minf.stbl.stts;
    let common = stts
        .entries
        .iter()
        .max_by_key(|e| e.sample_count)
        .map(|e| e.sample_delta);
    match common {
        Some(delta) if delta > 0 && timescale > 0 => Ok(timescale as f64 / delta as f64),
        _ => Err(format!(
            "no frame rate: time scale {timescale}, sample duration {common:?}"
        )),
    }
}

/// Reads every frame of an MP4 file. The frame count must match the container's sample count.
pub fn read_video(path: &Path) -> Result<Video> {
    let mut reader = VideoReader::open(path)?;
    let info = reader.info().clone();
    let mut frames = Vec::with_capacity(info.frame_count.min(4096));
    while let Some(frame) = reader.next_frame()? {
        frames.push(frame);
    }
    if frames.len() != info.frame_count {
        return Err(reader.corrupt(format!(
            "decoded {} frames, the container lists {}",
            frames.len(),
            info.frame_count
        )));
    }
    Ok(Video {
        frames,
        fps: info.fps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avcc_conversion() {
        let mut out = Vec::new();
        avcc_to_annexb(&[0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 1, 0x06], 4, &mut out).unwrap();
        assert_eq!(out, vec![0, 0, 0, 1, 0x65, 0x88, 0, 0, 0, 1, 0x06]);
        assert!(avcc_to_annexb(&[0, 0, 0, 9, 0x65], 4, &mut out).is_err());
        assert!(avcc_to_annexb(&[0, 0], 4, &mut out).is_err());
    }
}

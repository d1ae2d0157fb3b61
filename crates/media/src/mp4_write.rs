//! MP4 (H.264) encoding with the bundled OpenH264 encoder and the pure-Rust `mp4` muxer.
//!
//! Colour: RGB is converted to BT.601 limited-range YUV 4:2:0 with rounding (OpenH264's own converter
//! truncates), and the stream says so in its VUI, which is what ffmpeg assumes for untagged yuv420p too.

use std::path::Path;

use image::RgbImage;
use openh264::encoder::{
    BitRate, ColorPrimaries, Encoder, EncoderConfig, FrameRate, IntraFramePeriod,
    MatrixCoefficients, QpRange, RateControlMode, TransferCharacteristics, UsageType, VuiConfig,
};
use openh264::formats::YUVBuffer;
use openh264::OpenH264API;

use crate::atomic::write_atomically;
use crate::error::{MediaError, Result};

const FORMAT: &str = "MP4/H.264";
/// Track timescale: 1/90000 s ticks, the MPEG convention; exact for 16, 24, 25, 30 and 60 fps.
const TIMESCALE: u32 = 90_000;

/// Encoder settings.
#[derive(Debug, Clone, Copy)]
pub struct Mp4Options {
    /// Quantiser (0 best .. 51 worst); 16 keeps detailed footage above 40 dB PSNR.
    pub qp: u8,
    /// A key frame every this many frames.
    pub keyframe_interval: u32,
}

impl Default for Mp4Options {
    fn default() -> Self {
        Self {
            qp: 16,
            keyframe_interval: 32,
        }
    }
}

/// Writes frames as an H.264 MP4 at `fps`, atomically. Frames must share one size with even sides.
pub fn write_mp4(path: &Path, frames: &[RgbImage], fps: f64, options: Mp4Options) -> Result<()> {
    let (width, height) = check_frames(frames)?;
    let mut stream = Mp4Stream::new(path, width, height, fps, options)?;
    for frame in frames {
        stream.push(frame)?;
    }
    stream.finish()
}

/// An MP4 written frame by frame: each frame is encoded when pushed and only its compressed picture is kept, so
/// a long video needs no more memory than its H.264 stream. Nothing appears at the path until [`Mp4Stream::finish`]
/// (atomically); a stream dropped unfinished writes nothing.
pub struct Mp4Stream {
    path: std::path::PathBuf,
    encoder: Encoder,
    width: u32,
    height: u32,
    ticks_per_frame: u32,
    samples: Vec<mp4::Mp4Sample>,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
}

impl Mp4Stream {
    /// A stream of `width` x `height` frames (even sides, at most 4096) at `fps`.
    pub fn new(
        path: &Path,
        width: u32,
        height: u32,
        fps: f64,
        options: Mp4Options,
    ) -> Result<Self> {
        check_size(width, height)?;
        if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) {
            return Err(MediaError::invalid(
                "frame rate",
                format!("{fps} fps (expected 0 < fps <= 1000)"),
            ));
        }
        let qp = options.qp.min(51);
        let config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Quality)
            .qp(QpRange::new(qp, qp))
            .bitrate(BitRate::from_bps(50_000_000))
            .max_frame_rate(FrameRate::from_hz(fps as f32))
            .skip_frames(false)
            .intra_frame_period(IntraFramePeriod::from_num_frames(
                options.keyframe_interval.max(1),
            ))
            .vui(
                VuiConfig::new()
                    .color_primaries(ColorPrimaries::Smpte170M)
                    .transfer_characteristics(TransferCharacteristics::Smpte170M)
                    .matrix_coefficients(MatrixCoefficients::Smpte170M)
                    .full_range(false),
            );
        let mut encoder =
            Encoder::with_api_config(OpenH264API::from_source(), config).map_err(|e| {
                MediaError::Encode {
                    path: path.to_owned(),
                    format: FORMAT,
                    detail: format!("encoder init: {e}"),
                }
            })?;
        quiet(&mut encoder);
        Ok(Self {
            path: path.to_owned(),
            encoder,
            width,
            height,
            ticks_per_frame: (TIMESCALE as f64 / fps).round().max(1.0) as u32,
            samples: Vec::new(),
            sps: None,
            pps: None,
        })
    }

    fn encode_err(&self, detail: String) -> MediaError {
        MediaError::Encode {
            path: self.path.clone(),
            format: FORMAT,
            detail,
        }
    }

    /// Frames pushed so far.
    pub fn frames(&self) -> usize {
        self.samples.len()
    }

    /// Encodes the next frame, which must have the stream's size.
    pub fn push(&mut self, frame: &RgbImage) -> Result<()> {
        let i = self.samples.len();
        if frame.dimensions() != (self.width, self.height) {
            return Err(MediaError::invalid(
                "video",
                format!(
                    "frame {i} is {}x{}, the stream is {}x{}",
                    frame.width(),
                    frame.height(),
                    self.width,
                    self.height
                ),
            ));
        }
        let yuv = rgb_to_yuv420(frame);
        let annexb = match self.encoder.encode(&yuv) {
            Ok(stream) => stream.to_vec(),
            Err(e) => return Err(self.encode_err(format!("frame {i}: {e}"))),
        };
        let mut sample = Vec::with_capacity(annexb.len());
        let mut is_sync = false;
        for nal in split_annexb(&annexb) {
            match nal.first().map(|b| b & 0x1f) {
                Some(7) => self.sps = Some(nal.to_vec()),
                Some(8) => self.pps = Some(nal.to_vec()),
                Some(t) => {
                    is_sync |= t == 5;
                    sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    sample.extend_from_slice(nal);
                }
                None => {}
            }
        }
        if sample.is_empty() {
            return Err(self.encode_err(format!("the encoder produced no picture for frame {i}")));
        }
        self.samples.push(mp4::Mp4Sample {
            start_time: i as u64 * self.ticks_per_frame as u64,
            duration: self.ticks_per_frame,
            rendering_offset: 0,
            is_sync,
            bytes: bytes::Bytes::from(sample),
        });
        Ok(())
    }

    /// Muxes the pushed frames into the MP4, atomically.
    pub fn finish(self) -> Result<()> {
        if self.samples.is_empty() {
            return Err(MediaError::invalid("video", "no frames to write"));
        }
        let (sps, pps) = match (self.sps.clone(), self.pps.clone()) {
            (Some(s), Some(p)) => (s, p),
            _ => return Err(self.encode_err("the encoder produced no SPS/PPS".into())),
        };
        let (width, height) = (self.width, self.height);
        let path = self.path.clone();
        write_atomically(&path, |out| {
            let mux_err = |e: mp4::Error| self.encode_err(format!("muxing: {e}"));
            let config = mp4::Mp4Config {
                major_brand: "isom".parse().map_err(mux_err)?,
                minor_version: 512,
                compatible_brands: ["isom", "iso2", "avc1", "mp41"]
                    .iter()
                    .map(|b| b.parse())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(mux_err)?,
                timescale: 1000,
            };
            let mut writer = mp4::Mp4Writer::write_start(out, &config).map_err(mux_err)?;
            writer
                .add_track(&mp4::TrackConfig {
                    track_type: mp4::TrackType::Video,
                    timescale: TIMESCALE,
                    language: "und".to_string(),
                    media_conf: mp4::MediaConfig::AvcConfig(mp4::AvcConfig {
                        width: width as u16,
                        height: height as u16,
                        seq_param_set: sps,
                        pic_param_set: pps,
                    }),
                })
                .map_err(mux_err)?;
            for sample in &self.samples {
                writer.write_sample(1, sample).map_err(mux_err)?;
            }
            writer.write_end().map_err(mux_err)?;
            Ok(())
        })
    }
}

/// Checks that frames are non-empty, share one size, and have even sides within H.264's range.
fn check_frames(frames: &[RgbImage]) -> Result<(u32, u32)> {
    let first = frames
        .first()
        .ok_or_else(|| MediaError::invalid("video", "no frames to write"))?;
    let (w, h) = first.dimensions();
    check_size(w, h)?;
    if let Some((i, f)) = frames
        .iter()
        .enumerate()
        .find(|(_, f)| f.dimensions() != (w, h))
    {
        return Err(MediaError::invalid(
            "video",
            format!(
                "frame {i} is {}x{}, frame 0 is {w}x{h}",
                f.width(),
                f.height()
            ),
        ));
    }
    Ok((w, h))
}

fn check_size(w: u32, h: u32) -> Result<()> {
    if w == 0 || h == 0 || !w.is_multiple_of(2) || !h.is_multiple_of(2) || w > 4096 || h > 4096 {
        return Err(MediaError::invalid(
            "frame size",
            format!("{w}x{h}: H.264 4:2:0 needs even sides between 2 and 4096"),
        ));
    }
    Ok(())
}

/// BT.601 limited range, 4:2:0 with 2x2 box-averaged chroma, rounded.
fn rgb_to_yuv420(frame: &RgbImage) -> YUVBuffer {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let mut yuv = vec![0u8; w * h * 3 / 2];
    let (y_plane, chroma) = yuv.split_at_mut(w * h);
    let (u_plane, v_plane) = chroma.split_at_mut(w * h / 4);
    let px = frame.as_raw();
    let to_u8 = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) * 3;
            let (r, g, b) = (px[i] as f32, px[i + 1] as f32, px[i + 2] as f32);
            y_plane[y * w + x] = to_u8(16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0);
        }
    }
    for cy in 0..h / 2 {
        for cx in 0..w / 2 {
            let (mut r, mut g, mut b) = (0.0f32, 0.0f32, 0.0f32);
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let i = ((2 * cy + dy) * w + 2 * cx + dx) * 3;
                r += px[i] as f32;
                g += px[i + 1] as f32;
                b += px[i + 2] as f32;
            }
            let (r, g, b) = (r / 4.0, g / 4.0, b / 4.0);
            u_plane[cy * (w / 2) + cx] =
                to_u8(128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0);
            v_plane[cy * (w / 2) + cx] =
                to_u8(128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0);
        }
    }
    YUVBuffer::from_vec(yuv, w, h)
}

/// Splits an Annex-B byte stream at its 3- and 4-byte start codes.
fn split_annexb(stream: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &(_, body)) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(stream.len(), |&(code, _)| code);
        // A 4-byte start code leaves one zero byte at the end of the previous unit.
        while end > body && stream[end - 1] == 0 && k + 1 < starts.len() {
            end -= 1;
        }
        nals.push(&stream[body..end]);
    }
    nals
}

/// Silences OpenH264's own log before it initialises: its parameter check prints a warning to stderr for fixed-QP
/// quality mode without frame skipping (what we want: every frame, at one QP), and the crate sets the log level only
/// after that check.
fn quiet(encoder: &mut Encoder) {
    let mut level = openh264_sys2::WELS_LOG_QUIET;
    // SAFETY: the trace level is an int option that OpenH264 takes before initialisation; the pointer lives for
    // the call, which copies the value.
    unsafe {
        encoder.raw_api().set_option(
            openh264_sys2::ENCODER_OPTION_TRACE_LEVEL,
            std::ptr::addr_of_mut!(level).cast(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_start_codes() {
        let s = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4,
        ];
        let nals = split_annexb(&s);
        assert_eq!(
            nals,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4][..]]
        );
    }

    #[test]
    fn grey_maps_to_limited_range_grey() {
        let img = RgbImage::from_pixel(2, 2, image::Rgb([255, 255, 255]));
        let yuv = rgb_to_yuv420(&img);
        use openh264::formats::YUVSource;
        assert_eq!(yuv.y()[0], 235);
        assert_eq!(yuv.u()[0], 128);
        assert_eq!(yuv.v()[0], 128);
    }

    #[test]
    fn rejects_bad_frames() {
        let dir = std::env::temp_dir().join("orrery-never-written.mp4");
        assert!(write_mp4(&dir, &[], 16.0, Mp4Options::default()).is_err());
        let odd = RgbImage::new(5, 4);
        let err = write_mp4(&dir, &[odd], 16.0, Mp4Options::default()).unwrap_err();
        assert!(err.to_string().contains("5x4"));
        let a = RgbImage::new(4, 4);
        let b = RgbImage::new(6, 4);
        assert!(write_mp4(&dir, &[a.clone(), b], 16.0, Mp4Options::default()).is_err());
        assert!(write_mp4(&dir, &[a], 0.0, Mp4Options::default()).is_err());
        assert!(!dir.exists());
    }
}

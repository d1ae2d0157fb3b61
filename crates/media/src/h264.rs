//! H.264 decoding on the bundled OpenH264, through its `DecodeFrame2` call.
//!
//! The `openh264` crate's safe `decode` uses `DecodeFrameNoDelay`, which fails with `dsOutOfMemory` on streams
//! with B-frames (High profile files from x264, like the reference's sample videos; openh264-rs issue #50) and
//! may return frames out of presentation order (cisco/openh264 #3601). Here each access unit goes through
//! `DecodeFrame2` with its presentation timestamp, every picture is copied out as soon as the decoder offers it,
//! and the caller puts pictures back in presentation order by timestamp.

use std::ptr::null_mut;

use openh264::decoder::{Decoder, DecoderConfig};
use openh264::OpenH264API;
use openh264_sys2::{
    SBufferInfo, DECODER_OPTION_END_OF_STREAM, DECODER_OPTION_NUM_OF_FRAMES_REMAINING_IN_BUFFER,
};

/// One decoded 4:2:0 picture, copied out of the decoder's buffers.
pub struct Picture {
    pub pts: u64,
    pub width: usize,
    pub height: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

pub struct H264Decoder {
    decoder: Decoder,
}

/// `dsErrorFree` and `dsFramePending`, the two states that are not errors.
fn check(state: i32, what: &str) -> Result<(), String> {
    match state {
        0 | 1 => Ok(()),
        s => Err(format!(
            "{what}: OpenH264 decoding state {s:#x}{}",
            describe_state(s)
        )),
    }
}

fn describe_state(state: i32) -> &'static str {
    if state & 0x10 != 0 {
        " (no SPS/PPS)"
    } else if state & 0x04 != 0 {
        " (bitstream error)"
    } else if state & 0x02 != 0 {
        " (reference picture lost)"
    } else if state & 0x4000 != 0 {
        " (out of picture buffers)"
    } else {
        ""
    }
}

impl H264Decoder {
    pub fn new() -> Result<Self, String> {
        let decoder = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
            .map_err(|e| format!("decoder init: {e}"))?;
        Ok(Self { decoder })
    }

    /// Decodes one access unit (Annex-B NAL units) presented at `pts`; returns the pictures that became ready.
    pub fn decode(&mut self, annexb: &[u8], pts: u64) -> Result<Vec<Picture>, String> {
        let len =
            i32::try_from(annexb.len()).map_err(|_| "access unit larger than 2 GiB".to_string())?;
        let mut dst = [null_mut::<u8>(); 3];
        let mut info = SBufferInfo {
            uiInBsTimeStamp: pts,
            ..Default::default()
        };
        // SAFETY: the input slice outlives the call; `dst` and `info` are valid out-parameters; the pointers the
        // decoder writes are read (and copied) before the next call into it.
        let state = unsafe {
            self.decoder
                .raw_api()
                .decode_frame2(annexb.as_ptr(), len, dst.as_mut_ptr(), &mut info)
        };
        check(state as i32, "decoding")?;
        let mut out = Vec::new();
        if let Some(p) = unsafe { copy_picture(&dst, &info) }? {
            out.push(p);
        }
        Ok(out)
    }

    /// Signals the end of the stream and drains the pictures the decoder still holds (the reorder buffer),
    /// first with `FlushFrame`, then with empty `DecodeFrame2` calls, until neither yields a picture.
    pub fn finish(&mut self) -> Result<Vec<Picture>, String> {
        let mut out = Vec::new();
        let mut end: i32 = 1;
        // SAFETY: option and out-parameter pointers are valid for each call; pictures are copied before the next.
        unsafe {
            let api = self.decoder.raw_api();
            api.set_option(DECODER_OPTION_END_OF_STREAM, (&mut end as *mut i32).cast());
            for _ in 0..MAX_REORDER_DEPTH {
                let mut remaining: i32 = 0;
                api.get_option(
                    DECODER_OPTION_NUM_OF_FRAMES_REMAINING_IN_BUFFER,
                    (&mut remaining as *mut i32).cast(),
                );
                let mut dst = [null_mut::<u8>(); 3];
                let mut info = SBufferInfo::default();
                if remaining > 0 {
                    check(
                        api.flush_frame(dst.as_mut_ptr(), &mut info) as i32,
                        "flushing",
                    )?;
                } else {
                    check(
                        api.decode_frame2(std::ptr::null(), 0, dst.as_mut_ptr(), &mut info) as i32,
                        "flushing",
                    )?;
                }
                match copy_picture(&dst, &info)? {
                    Some(p) => out.push(p),
                    None if remaining <= 0 => break,
                    None => {}
                }
            }
        }
        Ok(out)
    }
}

/// H.264 allows at most 16 pictures in the decoded picture buffer.
const MAX_REORDER_DEPTH: usize = 17;

/// Copies the planes the decoder points at into owned buffers.
///
/// # Safety
/// `dst` and `info` must come from the decoder call just made.
unsafe fn copy_picture(dst: &[*mut u8; 3], info: &SBufferInfo) -> Result<Option<Picture>, String> {
    if info.iBufferStatus != 1 || dst.iter().any(|p| p.is_null()) {
        return Ok(None);
    }
    let buf = unsafe { info.UsrData.sSystemBuffer };
    let (w, h) = (buf.iWidth, buf.iHeight);
    let (stride_y, stride_c) = (buf.iStride[0], buf.iStride[1]);
    if w <= 0 || h <= 0 || w % 2 != 0 || h % 2 != 0 || stride_y < w || stride_c < w / 2 {
        return Err(format!(
            "decoder returned an implausible picture {w}x{h} (strides {stride_y}/{stride_c})"
        ));
    }
    let (w, h, stride_y, stride_c) = (w as usize, h as usize, stride_y as usize, stride_c as usize);
    let plane = |ptr: *mut u8, stride: usize, pw: usize, ph: usize| {
        let mut out = Vec::with_capacity(pw * ph);
        for row in 0..ph {
            // SAFETY: the decoder's plane holds `ph` rows of `stride` bytes, of which `pw` are picture.
            out.extend_from_slice(unsafe { std::slice::from_raw_parts(ptr.add(row * stride), pw) });
        }
        out
    };
    Ok(Some(Picture {
        pts: info.uiOutYuvTimeStamp,
        width: w,
        height: h,
        y: plane(dst[0], stride_y, w, h),
        u: plane(dst[1], stride_c, w / 2, h / 2),
        v: plane(dst[2], stride_c, w / 2, h / 2),
    }))
}

impl Picture {
    /// BT.601 limited-range YUV 4:2:0 to RGB, rounded, each chroma sample shared by its 2x2 block (what ffmpeg
    /// does for untagged yuv420p without scaling).
    pub fn to_rgb(&self) -> image::RgbImage {
        let (w, h) = (self.width, self.height);
        let mut rgb = vec![0u8; w * h * 3];
        // Fixed point with 16 fractional bits: within 1e-4 of the exact coefficients, so a result can differ from
        // float arithmetic only where the exact value sits on a rounding boundary.
        const ONE: i32 = 1 << 16;
        const LUMA: i32 = 76_309; // 255/219
        const R_CR: i32 = 104_597; // 1.596027
        const G_CB: i32 = 25_675; // 0.391762
        const G_CR: i32 = 53_279; // 0.812968
        const B_CB: i32 = 132_201; // 2.017232
        let to_u8 = |v: i32| ((v + ONE / 2) >> 16).clamp(0, 255) as u8;
        // Row by row with zipped iterators, so the inner loop has no bounds checks.
        for ((rgb_row, y_row), row) in rgb
            .chunks_exact_mut(w * 3)
            .zip(self.y.chunks_exact(w))
            .zip(0..h)
        {
            let c0 = (row / 2) * (w / 2);
            let (u_row, v_row) = (&self.u[c0..c0 + w / 2], &self.v[c0..c0 + w / 2]);
            for (((px2, y2), &cb), &cr) in rgb_row
                .chunks_exact_mut(6)
                .zip(y_row.chunks_exact(2))
                .zip(u_row)
                .zip(v_row)
            {
                let (cb, cr) = (cb as i32 - 128, cr as i32 - 128);
                let (dr, dg, db) = (R_CR * cr, -G_CB * cb - G_CR * cr, B_CB * cb);
                for (px, &luma) in px2.chunks_exact_mut(3).zip(y2) {
                    let l = LUMA * (luma as i32 - 16);
                    px[0] = to_u8(l + dr);
                    px[1] = to_u8(l + dg);
                    px[2] = to_u8(l + db);
                }
            }
        }
        image::RgbImage::from_raw(w as u32, h as u32, rgb).expect("buffer sized for the picture")
    }
}

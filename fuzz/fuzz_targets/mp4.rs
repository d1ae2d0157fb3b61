#![no_main]
//! Demuxing and decoding an MP4 file.

use std::io::Write;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write");
    let _ = orrery_media::read_video(file.path());
});

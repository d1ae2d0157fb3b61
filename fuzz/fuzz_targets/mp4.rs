#![no_main]
//! Demuxing and decoding an MP4 file.

use std::io::Write;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The reader turns panics inside the third-party demuxer into errors (its last line of defence); a silent hook
    // lets fuzzing go on past those, while a panic that escapes the reader still aborts the run.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write");
    let _ = orrery_media::read_video(file.path());
});

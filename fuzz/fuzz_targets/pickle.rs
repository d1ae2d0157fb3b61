#![no_main]
//! The pickle interpreter on arbitrary bytes: any result but a crash or a hang.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = orrery_nn::checkpoint::pickle::parse(data);
});

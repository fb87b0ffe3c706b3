//! libFuzzer target: arbitrary bytes, cut into arbitrary reads under an arbitrary reply limit,
//! through the guarded RESP codec (the property is in `fuzz/codec_check.rs`).

#![no_main]

// Only part of the codec's API is used here.
#[allow(dead_code)]
#[path = "../../src/redis/codec.rs"]
mod codec;
#[path = "../codec_check.rs"]
mod codec_check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| codec_check::check(data));

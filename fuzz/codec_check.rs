//! The codec property checked by the fuzz target (`fuzz/fuzz_targets/codec.rs`, libFuzzer on
//! nightly) and by `tests/codec_fuzz.rs` (random inputs on stable, in `cargo test`).
//!
//! The includer provides a `codec` module: the crate's `redis::codec` in the test, the same
//! source file compiled on its own in the fuzz crate (so the fuzz build stays small).

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::decode::decode_bytes;
use redis_protocol::resp2::types::BytesFrame;
use tokio_util::codec::Decoder;

use super::codec::GuardedResp2;

/// Frames decoded in order, and whether decoding stopped on an error.
type Outcome = (Vec<BytesFrame>, bool);

/// Feeds `wire` to a fresh codec in pieces whose sizes cycle through `sizes`, decoding after
/// each piece as `Framed` does. Panics if, while waiting for more, the buffer holds more than
/// `limit` bytes: the memory bound.
fn feed(wire: &[u8], sizes: &[usize], limit: usize) -> Outcome {
    let mut codec = GuardedResp2::with_max_reply(limit);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= wire.len() {
            break;
        }
        let end = (at + size.max(&1)).min(wire.len());
        buf.extend_from_slice(&wire[at..end]);
        at = end;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => {
                    assert!(
                        buf.len() <= limit,
                        "{} bytes held, limit {limit}",
                        buf.len()
                    );
                    break;
                }
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

/// The property: whatever the bytes and however they are cut into reads, the codec does not
/// panic, never holds more than the limit while waiting, decodes the same frames as when all
/// bytes arrive at once, and each of them is what the crate's decoder gives one-shot.
/// A failure is reported by panicking, as fuzzers and property tests expect.
///
/// `data`: the first byte picks the reply limit (64 B to 16 KiB, so fuzz-sized inputs reach
/// it), the next seven the read sizes, the rest is the wire.
#[allow(clippy::panic)]
pub fn check(data: &[u8]) {
    let Some((&limit_byte, rest)) = data.split_first() else {
        return;
    };
    let limit = 64 * (usize::from(limit_byte) + 1);
    let (head, wire) = rest.split_at(rest.len().min(7));
    let sizes: Vec<usize> = head.iter().map(|&b| usize::from(b) + 1).collect();
    let whole = feed(wire, &[wire.len()], limit);
    let pieces = feed(wire, if sizes.is_empty() { &[1] } else { &sizes }, limit);
    let bytewise = feed(wire, &[1], limit);
    assert_eq!(pieces, whole, "cut into {sizes:?}");
    assert_eq!(bytewise, whole, "one byte at a time");
    // Each frame is the crate decoder's one-shot answer at that offset.
    let wire = Bytes::copy_from_slice(wire);
    let mut offset = 0;
    for frame in &whole.0 {
        let (expected, used) = match decode_bytes(&wire.slice(offset..)) {
            Ok(Some(found)) => found,
            other => panic!("the codec decoded {frame:?}, one-shot gave {other:?}"),
        };
        assert_eq!(frame, &expected);
        assert!(
            used <= limit,
            "a {used}-byte frame passed the {limit}-byte limit"
        );
        offset += used;
    }
}

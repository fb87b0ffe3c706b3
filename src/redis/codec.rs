//! The RESP2 codec of the redis-protocol crate behind a bounds check.
//!
//! The crate's decoder is recursive and re-parses the whole buffer on every read. A peer that
//! sends deeply nested arrays (`*1\r\n` ten thousand times, 40 KB) overflows the stack, which
//! aborts the whole operator instead of failing one call. This wrapper walks the buffer
//! iteratively first: it rejects nesting deeper than any admin reply needs and absurd
//! lengths, and it hands the buffer to the crate's decoder only once a whole frame has
//! arrived, so a large reply arriving in many reads is parsed once instead of once per read.

use bytes::BytesMut;
use redis_protocol::codec::Resp2;
use redis_protocol::error::{RedisProtocolError, RedisProtocolErrorKind};
use redis_protocol::resp2::types::BytesFrame;
use tokio_util::codec::{Decoder, Encoder};

/// Deepest array nesting accepted. CLUSTER SHARDS, the deepest admin reply, nests 4 levels.
pub const MAX_DEPTH: usize = 32;
/// Largest bulk string accepted (Redis's own `proto-max-bulk-len` default).
pub const MAX_BULK_LEN: i64 = 512 * 1024 * 1024;
/// Largest array length accepted.
pub const MAX_ARRAY_LEN: i64 = 64 * 1024 * 1024;
/// Longest simple-string, error or integer line accepted.
pub const MAX_LINE_LEN: usize = 1024 * 1024;

/// RESP2 codec with the checks described in the module docs.
#[derive(Clone, Debug, Default)]
pub struct GuardedResp2 {
    inner: Resp2,
}

fn decode_error(msg: &'static str) -> RedisProtocolError {
    RedisProtocolError::new(RedisProtocolErrorKind::DecodeError, msg)
}

/// Where the line starting at `from` ends (index of its `\r`), if it is complete.
fn line_end(buf: &[u8], from: usize) -> Result<Option<usize>, RedisProtocolError> {
    let rest = buf.get(from..).unwrap_or_default();
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(i) if i > MAX_LINE_LEN => Err(decode_error("line too long")),
        Some(i) => Ok(Some(from + i)),
        None if rest.len() > MAX_LINE_LEN + 1 => Err(decode_error("line too long")),
        None => Ok(None),
    }
}

fn parse_len(line: &[u8]) -> Result<i64, RedisProtocolError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| decode_error("invalid length"))
}

/// Length in bytes of the first complete frame in `buf`, `None` if it has not fully arrived.
pub fn complete_frame_len(buf: &[u8]) -> Result<Option<usize>, RedisProtocolError> {
    let mut pos = 0usize;
    // Elements still expected by each open array, innermost last.
    let mut open: Vec<i64> = Vec::new();
    loop {
        let Some(&kind) = buf.get(pos) else {
            return Ok(None);
        };
        let Some(end) = line_end(buf, pos + 1)? else {
            return Ok(None);
        };
        let line = buf.get(pos + 1..end).unwrap_or_default();
        let mut next = end + 2;
        match kind {
            b'+' | b'-' => {}
            b':' => {
                parse_len(line)?;
            }
            b'$' => match parse_len(line)? {
                -1 => {}
                n if (0..=MAX_BULK_LEN).contains(&n) => {
                    let n = usize::try_from(n).map_err(|_| decode_error("bulk length"))?;
                    next = next.saturating_add(n).saturating_add(2);
                    if next > buf.len() {
                        return Ok(None);
                    }
                }
                _ => return Err(decode_error("bulk string length out of range")),
            },
            b'*' => match parse_len(line)? {
                -1 | 0 => {}
                n if (1..=MAX_ARRAY_LEN).contains(&n) => {
                    if open.len() >= MAX_DEPTH {
                        return Err(decode_error("arrays nested too deeply"));
                    }
                    open.push(n);
                    pos = next;
                    continue;
                }
                _ => return Err(decode_error("array length out of range")),
            },
            _ => return Err(decode_error("unknown RESP2 type byte")),
        }
        pos = next;
        // One element finished: close every array it completes.
        loop {
            match open.last_mut() {
                None => return Ok(Some(pos)),
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    open.pop();
                }
            }
        }
    }
}

impl Decoder for GuardedResp2 {
    type Item = BytesFrame;
    type Error = RedisProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        match complete_frame_len(src)? {
            None => Ok(None),
            Some(_) => self.inner.decode(src),
        }
    }
}

impl Encoder<BytesFrame> for GuardedResp2 {
    type Error = RedisProtocolError;

    fn encode(&mut self, item: BytesFrame, dst: &mut BytesMut) -> Result<(), Self::Error> {
        self.inner.encode(item, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_frame_boundaries() {
        assert_eq!(complete_frame_len(b"+OK\r\n").unwrap(), Some(5));
        assert_eq!(complete_frame_len(b"+OK\r").unwrap(), None);
        assert_eq!(complete_frame_len(b"$3\r\nabc\r\n+x").unwrap(), Some(9));
        assert_eq!(complete_frame_len(b"$3\r\nab").unwrap(), None);
        assert_eq!(
            complete_frame_len(b"*2\r\n:1\r\n$-1\r\n").unwrap(),
            Some(13)
        );
        assert_eq!(complete_frame_len(b"*2\r\n:1\r\n").unwrap(), None);
        assert_eq!(complete_frame_len(b"*0\r\n").unwrap(), Some(4));
        assert_eq!(complete_frame_len(b"*-1\r\n").unwrap(), Some(5));
        assert_eq!(
            complete_frame_len(b"*2\r\n*1\r\n+a\r\n*1\r\n+b\r\n").unwrap(),
            Some(20)
        );
    }

    #[test]
    fn rejects_hostile_input() {
        let mut deep = b"*1\r\n".repeat(100_000);
        deep.extend_from_slice(b":1\r\n");
        assert!(complete_frame_len(&deep).is_err());
        assert!(complete_frame_len(b"$-5\r\n").is_err());
        assert!(complete_frame_len(b"$99999999999\r\n").is_err());
        assert!(complete_frame_len(b"*x\r\n").is_err());
        assert!(complete_frame_len(b"?\r\n").is_err());
        let mut codec = GuardedResp2::default();
        let mut buf = BytesMut::from(&deep[..]);
        assert!(codec.decode(&mut buf).is_err());
    }
}

//! The RESP2 codec of the redis-protocol crate behind a bounds check and a resumable scanner.
//!
//! `spec.image` is the user's, so a member may answer anything. Three things the crate's
//! decoder does not do on its own are done here:
//!
//! * **Depth.** The crate's decoder is recursive. A peer that sends deeply nested arrays
//!   (`*1\r\n` ten thousand times, 40 KB) would overflow the stack and abort the whole operator
//!   instead of failing one call, so nesting deeper than any admin reply needs is refused.
//! * **Size.** One reply may be at most [`GuardedResp2::max_reply`] bytes (default
//!   [`DEFAULT_MAX_REPLY_BYTES`]). A larger one is refused with [`CodecError::TooLarge`] as
//!   soon as its headers say so (a bulk length) or its bytes pass the limit (many elements),
//!   so a connection's read buffer never holds more than the limit plus one socket read.
//! * **Rescans.** The crate's decoder parses the whole buffer from byte 0 on every call, so a
//!   large reply arriving in many reads would be parsed once per read (quadratic). The scanner
//!   here walks each byte once: it keeps how far the frame at the front of the buffer is known
//!   ([`Scan`]) and resumes there on the next read; only a complete frame is handed to the
//!   crate's decoder, which then parses it once.

use bytes::BytesMut;
use redis_protocol::codec::Resp2;
use redis_protocol::error::{RedisProtocolError, RedisProtocolErrorKind};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;
use tokio_util::codec::{Decoder, Encoder};

/// Deepest array nesting accepted. CLUSTER SHARDS, the deepest admin reply, nests 4 levels.
pub const MAX_DEPTH: usize = 32;
/// Largest bulk string accepted (Redis's own `proto-max-bulk-len` default); the reply limit
/// below is usually the tighter bound.
pub const MAX_BULK_LEN: i64 = 512 * 1024 * 1024;
/// Largest array length accepted.
pub const MAX_ARRAY_LEN: i64 = 64 * 1024 * 1024;
/// Longest simple-string, error or integer line accepted.
pub const MAX_LINE_LEN: usize = 1024 * 1024;
/// Default limit on the size of one reply. The largest admin replies (CLUSTER NODES of a
/// 1,000-node cluster: ~200 KB; a GETKEYSINSLOT batch; a DUMP payload during a conflict check)
/// are far below it.
pub const DEFAULT_MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// Why a reply could not be decoded (or a command encoded).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The reply is larger than the limit; the connection must be dropped, as the rest of the
    /// reply is still on the wire.
    #[error("reply exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Malformed RESP, or a socket error.
    #[error(transparent)]
    Resp(#[from] RedisProtocolError),
}

impl From<std::io::Error> for CodecError {
    fn from(err: std::io::Error) -> Self {
        Self::Resp(err.into())
    }
}

fn decode_error(msg: &'static str) -> CodecError {
    CodecError::Resp(RedisProtocolError::new(
        RedisProtocolErrorKind::DecodeError,
        msg,
    ))
}

fn parse_len(line: &[u8]) -> Result<i64, CodecError> {
    // The same parse as the crate's decoder (`str::parse`), so both agree on what is valid.
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| decode_error("invalid length"))
}

/// How far the frame at the front of the buffer has been checked. Between reads the buffer
/// only grows at the back, so every position stays valid until the frame is taken off.
#[derive(Clone, Debug, Default)]
struct Scan {
    /// Bytes of the frame known complete: headers and whole elements.
    pos: usize,
    /// End (after its CRLF) of a bulk string whose body is still arriving; 0 if none.
    need: usize,
    /// Where the search for the current line's `\n` resumes, so a long line is searched once.
    searched: usize,
    /// Elements still expected by each open array, innermost last.
    open: Vec<i64>,
}

impl Scan {
    /// The end of the first frame if it is complete. Resumes where the last call stopped.
    fn advance(&mut self, buf: &[u8], limit: usize) -> Result<Option<usize>, CodecError> {
        loop {
            if self.need > 0 {
                if buf.len() < self.need {
                    return Ok(None);
                }
                self.pos = std::mem::take(&mut self.need);
            } else {
                let Some(&kind) = buf.get(self.pos) else {
                    return Ok(None);
                };
                let Some(end) = self.line_end(buf, limit)? else {
                    return Ok(None);
                };
                let line = buf.get(self.pos + 1..end).unwrap_or_default();
                let next = end + 2;
                self.searched = 0;
                match kind {
                    b'+' | b'-' => self.pos = next,
                    b':' => {
                        parse_len(line)?;
                        self.pos = next;
                    }
                    b'$' => self.bulk_header(parse_len(line)?, next, limit)?,
                    b'*' => {
                        let len = parse_len(line)?;
                        self.pos = next;
                        if self.array_header(len)? {
                            continue;
                        }
                    }
                    _ => return Err(decode_error("unknown RESP2 type byte")),
                }
                if self.need > 0 {
                    continue;
                }
            }
            if let Some(end) = self.element_done() {
                return Ok(Some(end));
            }
        }
    }

    /// Index of the `\r` ending the line that starts at `pos`, if it has arrived.
    fn line_end(&mut self, buf: &[u8], limit: usize) -> Result<Option<usize>, CodecError> {
        // The first "\r\n" after the type byte, as the crate's `take_until("\r\n")` finds it:
        // the first '\n' at pos + 2 or later that follows a '\r'.
        let from = self.searched.max(self.pos + 2);
        let found = buf
            .get(from..)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .map(|(i, _)| from + i)
            .find(|&i| buf.get(i - 1) == Some(&b'\r'));
        match found {
            Some(nl) => {
                let end = nl - 1;
                if end - (self.pos + 1) > MAX_LINE_LEN {
                    return Err(decode_error("line too long"));
                }
                if nl + 1 > limit {
                    return Err(CodecError::TooLarge { limit });
                }
                Ok(Some(end))
            }
            None => {
                if buf.len() - self.pos > MAX_LINE_LEN + 2 {
                    return Err(decode_error("line too long"));
                }
                // Every byte in the buffer belongs to this frame's unfinished line.
                if buf.len() > limit {
                    return Err(CodecError::TooLarge { limit });
                }
                // A '\r' last in the buffer may pair with the next read's '\n'.
                self.searched = buf.len().max(self.pos + 2);
                Ok(None)
            }
        }
    }

    fn bulk_header(&mut self, len: i64, next: usize, limit: usize) -> Result<(), CodecError> {
        match len {
            -1 => self.pos = next,
            n if (0..=MAX_BULK_LEN).contains(&n) => {
                let n = usize::try_from(n).map_err(|_| decode_error("bulk length"))?;
                let end = next.saturating_add(n).saturating_add(2);
                // Refused from the header alone: the body is never read into memory.
                if end > limit {
                    return Err(CodecError::TooLarge { limit });
                }
                self.need = end;
            }
            _ => return Err(decode_error("bulk string length out of range")),
        }
        Ok(())
    }

    /// Opens an array; `true` if it has elements to wait for, `false` if it is complete.
    fn array_header(&mut self, len: i64) -> Result<bool, CodecError> {
        match len {
            -1 | 0 => Ok(false),
            n if (1..=MAX_ARRAY_LEN).contains(&n) => {
                if self.open.len() >= MAX_DEPTH {
                    return Err(decode_error("arrays nested too deeply"));
                }
                self.open.push(n);
                Ok(true)
            }
            _ => Err(decode_error("array length out of range")),
        }
    }

    /// One element ended at `pos`: closes every array it completes. The frame's end if that
    /// was the last element of the outermost array (or the frame was not an array).
    fn element_done(&mut self) -> Option<usize> {
        loop {
            match self.open.last_mut() {
                None => return Some(self.pos),
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        return None;
                    }
                    self.open.pop();
                }
            }
        }
    }

    fn reset(&mut self) {
        self.pos = 0;
        self.need = 0;
        self.searched = 0;
        self.open.clear();
    }
}

/// Length in bytes of the first complete frame in `buf`, `None` if it has not fully arrived
/// (a one-shot scan with the default reply limit, for fakes and tests).
pub fn complete_frame_len(buf: &[u8]) -> Result<Option<usize>, CodecError> {
    Scan::default().advance(buf, DEFAULT_MAX_REPLY_BYTES)
}

/// RESP2 codec with the checks described in the module docs.
#[derive(Clone, Debug)]
pub struct GuardedResp2 {
    inner: Resp2,
    max_reply: usize,
    scan: Scan,
}

impl Default for GuardedResp2 {
    fn default() -> Self {
        Self::with_max_reply(DEFAULT_MAX_REPLY_BYTES)
    }
}

impl GuardedResp2 {
    /// A codec that refuses replies larger than `max_reply` bytes.
    pub fn with_max_reply(max_reply: usize) -> Self {
        Self {
            inner: Resp2::default(),
            max_reply,
            scan: Scan::default(),
        }
    }

    /// The largest reply accepted, in bytes.
    pub fn max_reply(&self) -> usize {
        self.max_reply
    }
}

impl Decoder for GuardedResp2 {
    type Item = BytesFrame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        if self.scan.pos > src.len() {
            // Not the buffer the scan was made on (a caller swapped it): start over.
            self.scan.reset();
        }
        let end = match self.scan.advance(src, self.max_reply) {
            Ok(Some(end)) => end,
            Ok(None) => {
                // A bulk body still arriving: make room for exactly the rest of it (at most the
                // reply limit), so the buffer does not grow by doubling and copying.
                if self.scan.need > src.len() {
                    src.reserve(self.scan.need - src.len());
                }
                return Ok(None);
            }
            Err(err) => {
                self.scan.reset();
                return Err(err);
            }
        };
        self.scan.reset();
        // The one full parse of this frame. The scanner and the crate's decoder must agree on
        // where it ends; if they ever did not, the stream could not be trusted any more.
        match decode_bytes_mut(src)? {
            Some((frame, amt, _)) if amt == end => Ok(Some(frame)),
            _ => Err(decode_error("frame boundary disagreement")),
        }
    }
}

impl Encoder<BytesFrame> for GuardedResp2 {
    type Error = CodecError;

    fn encode(&mut self, item: BytesFrame, dst: &mut BytesMut) -> Result<(), Self::Error> {
        Ok(self.inner.encode(item, dst)?)
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;

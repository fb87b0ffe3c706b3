//! The byte source under the RDB reader: a buffer over an `AsyncRead` that keeps the running
//! file checksum and, while a value is being walked, copies what it consumes into the `DUMP`
//! payload being built.
//!
//! Everything is consumed through [`Source::take`], so the checksum and the capture can never
//! miss a byte; the capture is bounded, so a corrupt or hostile length gives
//! [`RdbError::PayloadTooLarge`] instead of an allocation the size of the claim.

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::redis::rdb::crc64::crc64;
use crate::redis::rdb::error::RdbError;

/// Read buffer size: large enough that the socket or file is read in big chunks.
const BUF_SIZE: usize = 256 * 1024;

/// A buffered reader that checksums and optionally captures what it consumes.
pub(crate) struct Source<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// Bytes consumed so far (the offset errors report).
    offset: u64,
    /// CRC-64 of everything consumed.
    crc: u64,
    /// The payload being captured, if any, and the most it may grow to.
    capture: Option<Vec<u8>>,
    capture_limit: usize,
}

impl<R> Source<R> {
    /// Bytes consumed so far.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The checksum of everything consumed so far.
    pub(crate) fn crc(&self) -> u64 {
        self.crc
    }
}

impl<R: AsyncRead + Unpin> Source<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0u8; BUF_SIZE].into_boxed_slice(),
            pos: 0,
            end: 0,
            offset: 0,
            crc: 0,
            capture: None,
            capture_limit: 0,
        }
    }

    /// Starts copying consumed bytes into a payload that begins with `prefix` and may hold at
    /// most `limit` bytes.
    pub(crate) fn start_capture(&mut self, prefix: &[u8], limit: usize) {
        let mut payload = Vec::with_capacity(prefix.len().max(64).min(limit));
        payload.extend_from_slice(prefix);
        self.capture = Some(payload);
        self.capture_limit = limit;
    }

    /// Stops capturing and returns what was captured.
    pub(crate) fn finish_capture(&mut self) -> Vec<u8> {
        self.capture.take().unwrap_or_default()
    }

    /// Ensures at least one unconsumed byte is buffered.
    async fn fill(&mut self) -> Result<(), RdbError> {
        if self.pos < self.end {
            return Ok(());
        }
        self.pos = 0;
        self.end = 0;
        let n = self.inner.read(&mut self.buf).await.map_err(RdbError::Io)?;
        if n == 0 {
            return Err(RdbError::Truncated {
                offset: self.offset,
            });
        }
        self.end = n;
        Ok(())
    }

    /// Consumes the next `n` buffered bytes (at most what is buffered): checksum, capture.
    fn consume(&mut self, n: usize) -> Result<(), RdbError> {
        let chunk = &self.buf[self.pos..self.pos + n];
        self.crc = crc64(self.crc, chunk);
        if let Some(payload) = &mut self.capture {
            if payload.len() + n > self.capture_limit {
                return Err(RdbError::PayloadTooLarge {
                    limit: self.capture_limit,
                });
            }
            payload.extend_from_slice(chunk);
        }
        self.pos += n;
        self.offset += n as u64;
        Ok(())
    }

    /// Consumes `n` bytes, appending them to `out` when given. Reads as many chunks as needed,
    /// so `n` may be far larger than the buffer.
    pub(crate) async fn take(
        &mut self,
        mut n: usize,
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<(), RdbError> {
        while n > 0 {
            self.fill().await?;
            let step = n.min(self.end - self.pos);
            if let Some(out) = out.as_deref_mut() {
                out.extend_from_slice(&self.buf[self.pos..self.pos + step]);
            }
            self.consume(step)?;
            n -= step;
        }
        Ok(())
    }

    /// Consumes one byte.
    pub(crate) async fn u8(&mut self) -> Result<u8, RdbError> {
        self.fill().await?;
        let byte = self.buf[self.pos];
        self.consume(1)?;
        Ok(byte)
    }

    /// Consumes `N` bytes into an array.
    pub(crate) async fn array<const N: usize>(&mut self) -> Result<[u8; N], RdbError> {
        let mut out = [0u8; N];
        if self.end - self.pos >= N {
            // The common case: no Vec.
            out.copy_from_slice(&self.buf[self.pos..self.pos + N]);
            self.consume(N)?;
        } else {
            let mut bytes = Vec::with_capacity(N);
            self.take(N, Some(&mut bytes)).await?;
            out.copy_from_slice(&bytes);
        }
        Ok(out)
    }
}

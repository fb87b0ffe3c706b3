//! A node's RDB over the replication protocol, streamed into any `AsyncWrite` (an
//! object-storage upload), the way `redis-cli --rdb` takes it: nothing runs on the Pod and,
//! with diskless replication, nothing is written to its disk.
//!
//! The exchange: `INFO replication` first (the offsets the snapshot can be checked against),
//! then `REPLCONF rdb-only 1` (Redis 7.0+: the node sends only the RDB, not the command stream
//! after it), `REPLCONF capa eof` (we accept the diskless `$EOF:<mark>` transfer) and `SYNC`.
//! The node answers with newlines while it prepares (keep-alives), then either
//! `$EOF:<40-byte mark>\r\n` … data … mark (diskless) or `$<length>\r\n` and that many bytes
//! (disk-based: the node wrote the RDB to its disk first; [`Snapshot::diskless`] tells which).
//!
//! A diskless transfer starts only after the node's `repl-diskless-sync-delay` (default 5 s),
//! during which it sends a newline every second, so the idle timeout must be above a second.
//! The SHA-256 and byte count are computed as the bytes pass, so the caller can record them
//! beside the object without reading it back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use ring::digest;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::redis::client::{AdminOptions, Client};
use crate::redis::command::Cmd;
use crate::redis::error::RedisError;
use crate::redis::parse::info::{ReplicationInfo, parse_replication_info};
use crate::redis::reply;
use crate::redis::tls::Stream;

/// The EOF mark's length (`CONFIG_RUN_ID_SIZE`).
const EOF_MARK_LEN: usize = 40;
/// The longest transfer header accepted (`$EOF:` + mark, or `$` + a length, or an error line).
const MAX_HEADER: usize = 512;
/// Socket read size.
const READ_CHUNK: usize = 256 * 1024;

/// Time and size limits for one snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotLimits {
    /// The whole transfer, from connecting to the last byte.
    pub total: Duration,
    /// The longest silence (no byte from the node, or the sink not accepting any).
    pub idle: Duration,
    /// The largest RDB accepted.
    pub max_bytes: u64,
}

impl Default for SnapshotLimits {
    fn default() -> Self {
        Self {
            total: Duration::from_secs(3600),
            idle: Duration::from_secs(30),
            max_bytes: 256 * 1024 * 1024 * 1024,
        }
    }
}

/// What was taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The node.
    pub addr: SocketAddr,
    /// RDB bytes written to the sink.
    pub bytes: u64,
    /// Their SHA-256.
    pub sha256: [u8; 32],
    /// `INFO replication` just before `SYNC`.
    pub replication_before: ReplicationInfo,
    /// The node streamed the RDB without writing it to its disk (`$EOF:` form).
    pub diskless: bool,
    /// The node accepted `REPLCONF rdb-only` (7.0+).
    pub rdb_only: bool,
    /// How long it took.
    pub elapsed: Duration,
}

impl Snapshot {
    /// The SHA-256 in lower-case hex.
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The node's replication offset before the snapshot: `slave_repl_offset` on a replica,
    /// `master_repl_offset` on a master.
    pub fn repl_offset_before(&self) -> u64 {
        self.replication_before.data_offset()
    }
}

/// Why no snapshot was taken.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Connecting or a command before `SYNC` failed.
    #[error("{addr}: {source}")]
    Node {
        /// The node.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: RedisError,
    },
    /// The node answered `SYNC` with an error (e.g. `NOMASTERLINK` on a replica without a
    /// link to its master).
    #[error("{addr} refused SYNC: {reply}")]
    Refused {
        /// The node.
        addr: SocketAddr,
        /// The error line.
        reply: String,
    },
    /// The node sent something that is not a transfer.
    #[error("{addr}: unexpected replication stream: {what}")]
    Protocol {
        /// The node.
        addr: SocketAddr,
        /// What was wrong.
        what: String,
    },
    /// The whole transfer took longer than [`SnapshotLimits::total`].
    #[error("{addr}: snapshot not complete after {after:?}")]
    Timeout {
        /// The node.
        addr: SocketAddr,
        /// The limit.
        after: Duration,
    },
    /// Nothing moved for [`SnapshotLimits::idle`].
    #[error("{addr}: snapshot stalled for {after:?} after {received} bytes")]
    Idle {
        /// The node.
        addr: SocketAddr,
        /// The limit.
        after: Duration,
        /// RDB bytes received before the stall.
        received: u64,
    },
    /// The connection closed before the end of the RDB.
    #[error("{addr}: connection closed after {received} RDB bytes")]
    Closed {
        /// The node.
        addr: SocketAddr,
        /// RDB bytes received.
        received: u64,
    },
    /// Reading from the node failed.
    #[error("{addr}: reading the RDB failed: {source}")]
    Read {
        /// The node.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The RDB is larger than [`SnapshotLimits::max_bytes`].
    #[error("{addr}: RDB larger than the limit of {limit} bytes")]
    TooLarge {
        /// The node.
        addr: SocketAddr,
        /// The limit.
        limit: u64,
    },
    /// Writing to the sink failed.
    #[error("writing the snapshot failed: {0}")]
    Sink(#[source] std::io::Error),
}

/// The transfer header that follows the keep-alives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferHeader {
    /// Diskless: the data ends with this mark.
    EofMark([u8; EOF_MARK_LEN]),
    /// Disk-based: exactly this many bytes follow.
    Sized(u64),
    /// An error reply.
    Error(String),
}

/// Parses the header line (without its `\r\n`).
pub fn parse_transfer_header(line: &[u8]) -> Result<TransferHeader, String> {
    let shown = || String::from_utf8_lossy(line).into_owned();
    match line.first() {
        Some(b'-') => Ok(TransferHeader::Error(
            String::from_utf8_lossy(&line[1..]).into_owned(),
        )),
        Some(b'$') => {
            if let Some(mark) = line.strip_prefix(b"$EOF:") {
                let mark: [u8; EOF_MARK_LEN] = mark
                    .try_into()
                    .map_err(|_| format!("EOF mark of {} bytes, not 40", mark.len()))?;
                return Ok(TransferHeader::EofMark(mark));
            }
            std::str::from_utf8(&line[1..])
                .ok()
                .and_then(|n| n.parse::<u64>().ok())
                .map(TransferHeader::Sized)
                .ok_or_else(|| format!("bad bulk length in {:?}", shown()))
        }
        _ => Err(format!("expected a bulk transfer, got {:?}", shown())),
    }
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(i) = hay.get(from..)?.iter().position(|&b| b == first) {
        let at = from + i;
        if hay.get(at..at + needle.len())? == needle {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Takes `addr`'s RDB over `SYNC` and writes it to `sink` (flushed, not shut down).
pub async fn fetch_rdb<W: AsyncWrite + Unpin>(
    addr: SocketAddr,
    options: &AdminOptions,
    limits: &SnapshotLimits,
    sink: &mut W,
) -> Result<Snapshot, SnapshotError> {
    let started = Instant::now();
    let node = |source| SnapshotError::Node { addr, source };
    let mut client = Client::connect(addr, options).await.map_err(node)?;
    let info_cmd = Cmd::info("replication");
    let frame = client.call(&info_cmd).await.map_err(node)?;
    let text = reply::text(&info_cmd, frame).map_err(node)?;
    let replication_before =
        parse_replication_info(&text).map_err(|e| SnapshotError::Protocol {
            addr,
            what: e.to_string(),
        })?;
    let rdb_only = match client
        .call(&Cmd::new("REPLCONF").arg("rdb-only").arg("1"))
        .await
    {
        Ok(_) => true,
        // Before 7.0: the node streams its write commands after the RDB, which we never read
        // (the connection closes at the end of the RDB).
        Err(RedisError::Server { .. }) => false,
        Err(e) => return Err(node(e)),
    };
    let capa = Cmd::new("REPLCONF").arg("capa").arg("eof");
    client.call(&capa).await.map_err(node)?;
    let (stream, leftover) = client.into_stream().map_err(node)?;
    let mut transfer = Transfer {
        addr,
        stream,
        buf: leftover,
        sink,
        sha: digest::Context::new(&digest::SHA256),
        bytes: 0,
        deadline: started + limits.total,
        limits: *limits,
    };
    let diskless = transfer.run().await?;
    let sha = transfer.sha.finish();
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(sha.as_ref());
    Ok(Snapshot {
        addr,
        bytes: transfer.bytes,
        sha256,
        replication_before,
        diskless,
        rdb_only,
        elapsed: started.elapsed(),
    })
}

/// One transfer in progress.
struct Transfer<'a, W> {
    addr: SocketAddr,
    stream: Stream,
    /// Received, not yet written.
    buf: BytesMut,
    sink: &'a mut W,
    sha: digest::Context,
    bytes: u64,
    deadline: Instant,
    limits: SnapshotLimits,
}

impl<W: AsyncWrite + Unpin> Transfer<'_, W> {
    /// Sends `SYNC` and moves the RDB to the sink; returns whether it was diskless.
    async fn run(&mut self) -> Result<bool, SnapshotError> {
        let sync = b"*1\r\n$4\r\nSYNC\r\n";
        let limit = self.step_limit()?;
        match tokio::time::timeout(limit, self.stream.write_all(sync)).await {
            Err(_) => return Err(self.stall_error()),
            Ok(Err(source)) => return Err(self.read_error(source)),
            Ok(Ok(())) => {}
        }
        let diskless = match self.read_header().await? {
            TransferHeader::Error(reply) => {
                return Err(SnapshotError::Refused {
                    addr: self.addr,
                    reply,
                });
            }
            TransferHeader::Sized(len) => {
                if len > self.limits.max_bytes {
                    return Err(self.too_large());
                }
                self.copy_sized(len).await?;
                false
            }
            TransferHeader::EofMark(mark) => {
                self.copy_until_mark(&mark).await?;
                true
            }
        };
        let limit = self.step_limit()?;
        match tokio::time::timeout(limit, self.sink.flush()).await {
            Err(_) => Err(self.stall_error()),
            Ok(Err(e)) => Err(SnapshotError::Sink(e)),
            Ok(Ok(())) => Ok(diskless),
        }
    }

    /// Skips keep-alive newlines and reads the header line.
    async fn read_header(&mut self) -> Result<TransferHeader, SnapshotError> {
        loop {
            let newlines = self.buf.iter().take_while(|&&b| b == b'\n').count();
            self.buf.advance(newlines);
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line = self.buf.split_to(end + 2);
                return parse_transfer_header(&line[..end]).map_err(|what| {
                    SnapshotError::Protocol {
                        addr: self.addr,
                        what,
                    }
                });
            }
            if self.buf.len() > MAX_HEADER {
                return Err(SnapshotError::Protocol {
                    addr: self.addr,
                    what: format!("no header line within {MAX_HEADER} bytes"),
                });
            }
            self.fill().await?;
        }
    }

    /// Disk-based form: exactly `len` bytes.
    async fn copy_sized(&mut self, len: u64) -> Result<(), SnapshotError> {
        let mut left = len;
        while left > 0 {
            if self.buf.is_empty() {
                self.fill().await?;
            }
            let n = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            let chunk = self.buf.split_to(n);
            self.emit(&chunk).await?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Diskless form: everything up to the mark. The last 39 bytes are held back each round,
    /// as the mark may be split across reads.
    async fn copy_until_mark(&mut self, mark: &[u8; EOF_MARK_LEN]) -> Result<(), SnapshotError> {
        loop {
            if let Some(at) = find(&self.buf, mark) {
                let chunk = self.buf.split_to(at);
                return self.emit(&chunk).await;
            }
            if self.buf.len() >= EOF_MARK_LEN {
                let chunk = self.buf.split_to(self.buf.len() - (EOF_MARK_LEN - 1));
                self.emit(&chunk).await?;
            }
            self.fill().await?;
        }
    }

    /// Hashes, counts and writes RDB bytes.
    async fn emit(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.bytes += chunk.len() as u64;
        if self.bytes > self.limits.max_bytes {
            return Err(self.too_large());
        }
        self.sha.update(chunk);
        let limit = self.step_limit()?;
        match tokio::time::timeout(limit, self.sink.write_all(chunk)).await {
            Err(_) => Err(self.stall_error()),
            Ok(Err(e)) => Err(SnapshotError::Sink(e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Reads more from the node into the buffer.
    async fn fill(&mut self) -> Result<(), SnapshotError> {
        let limit = self.step_limit()?;
        self.buf.reserve(READ_CHUNK);
        match tokio::time::timeout(limit, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => Err(self.stall_error()),
            Ok(Err(source)) => Err(self.read_error(source)),
            Ok(Ok(0)) => Err(SnapshotError::Closed {
                addr: self.addr,
                received: self.bytes,
            }),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// The time one step may take: the idle limit, or what is left of the total.
    fn step_limit(&self) -> Result<Duration, SnapshotError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.total_error());
        }
        Ok(left.min(self.limits.idle))
    }

    /// A step timed out: the total limit if it is used up, else the idle limit.
    fn stall_error(&self) -> SnapshotError {
        if Instant::now() >= self.deadline {
            self.total_error()
        } else {
            SnapshotError::Idle {
                addr: self.addr,
                after: self.limits.idle,
                received: self.bytes,
            }
        }
    }

    fn total_error(&self) -> SnapshotError {
        SnapshotError::Timeout {
            addr: self.addr,
            after: self.limits.total,
        }
    }

    fn read_error(&self, source: std::io::Error) -> SnapshotError {
        SnapshotError::Read {
            addr: self.addr,
            source,
        }
    }

    fn too_large(&self) -> SnapshotError {
        SnapshotError::TooLarge {
            addr: self.addr,
            limit: self.limits.max_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_headers() {
        let mark = [b'a'; 40];
        let mut line = b"$EOF:".to_vec();
        line.extend_from_slice(&mark);
        assert_eq!(
            parse_transfer_header(&line),
            Ok(TransferHeader::EofMark(mark))
        );
        assert_eq!(
            parse_transfer_header(b"$12345"),
            Ok(TransferHeader::Sized(12345))
        );
        assert_eq!(
            parse_transfer_header(b"-NOMASTERLINK Can't SYNC while not connected with my master"),
            Ok(TransferHeader::Error(
                "NOMASTERLINK Can't SYNC while not connected with my master".into()
            ))
        );
        assert!(parse_transfer_header(b"$EOF:short").is_err());
        assert!(parse_transfer_header(b"$-1").is_err());
        assert!(parse_transfer_header(b"+FULLRESYNC abc 0").is_err());
        assert!(parse_transfer_header(b"").is_err());
    }

    #[test]
    fn find_needles() {
        assert_eq!(find(b"hello world", b"world"), Some(6));
        assert_eq!(find(b"aaab", b"aab"), Some(1));
        assert_eq!(find(b"abc", b"abcd"), None);
        assert_eq!(find(b"ab\r", b"\r\n"), None);
        assert_eq!(find(b"x\r\n", b"\r\n"), Some(1));
        assert_eq!(find(b"", b"x"), None);
    }
}

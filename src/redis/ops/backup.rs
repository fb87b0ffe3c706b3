//! One shard's backup: its RDB taken over `SYNC` ([`fetch_rdb`]) into any sink, parsed while
//! it passes, so the backup records how many keys it holds (with a TTL, per type) without
//! reading the object back, and a file the reader cannot walk fails the backup at once: a
//! backup we cannot restore is not a backup.
//!
//! The bytes go to the sink and, through a bounded in-memory pipe, to an [`RdbReader`] on its
//! own task. The pipe's capacity is the only buffer, so memory stays bounded whatever the RDB's
//! size; a slow parser holds the transfer back (counted against the snapshot's idle limit).
//!
//! [`wait_replica_offset`] is the consistency step before it: a replica's snapshot holds
//! every write the master acknowledged up to an offset once the replica reports it.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWrite, DuplexStream};

use crate::redis::client::{AdminOptions, Client};
use crate::redis::command::Cmd;
use crate::redis::error::RedisError;
use crate::redis::ops::snapshot::{Snapshot, SnapshotError, SnapshotLimits, fetch_rdb};
use crate::redis::parse::ParseError;
use crate::redis::parse::info::parse_replication_info;
use crate::redis::rdb::{RdbError, RdbReader, ReaderLimits};
use crate::redis::reply;

/// Capacity of the pipe between the transfer and the parser.
const PIPE_BYTES: usize = 1024 * 1024;
/// The most the tee copies from one write before passing it on.
const TEE_CHUNK: usize = 256 * 1024;
/// How often [`wait_replica_offset`] asks.
const OFFSET_POLL: Duration = Duration::from_millis(100);

/// A snapshot and what its RDB holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardSnapshot {
    /// The transfer: bytes, SHA-256, replication offsets before it.
    pub snapshot: Snapshot,
    /// Keys in the file (every database).
    pub keys: u64,
    /// Of those, keys with an expiry.
    pub keys_with_ttl: u64,
    /// Keys per value type ([`type_name`]).
    pub keys_by_type: BTreeMap<&'static str, u64>,
    /// The RDB format version (10 for Redis 7.0, 11 for 7.2).
    pub rdb_version: u16,
    /// The `redis-ver` AUX field: the version of the server that wrote it.
    pub redis_version: Option<String>,
    /// Function libraries in the file (not restored as keys).
    pub functions: u64,
    /// The file's CRC-64, verified; `None` when the server has `rdbchecksum no`.
    pub checksum: Option<u64>,
}

/// Why a shard backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The transfer failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The bytes received are not an RDB this reader can walk.
    #[error("{addr}: the snapshot cannot be read back: {source}")]
    Unreadable {
        /// The node.
        addr: SocketAddr,
        /// What the reader rejected.
        #[source]
        source: RdbError,
    },
    /// The parser and the transfer disagree on the length (bytes after the RDB's end).
    #[error("{addr}: the transfer has {sent} bytes but the RDB ends after {parsed}")]
    Length {
        /// The node.
        addr: SocketAddr,
        /// Bytes written to the sink.
        sent: u64,
        /// Bytes the RDB occupies.
        parsed: u64,
    },
    /// Asking a node failed.
    #[error("{addr}: {source}")]
    Node {
        /// The node.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: RedisError,
    },
    /// `INFO replication` did not parse.
    #[error("{addr}: {source}")]
    Parse {
        /// The node.
        addr: SocketAddr,
        /// What was wrong.
        #[source]
        source: ParseError,
    },
    /// The replica did not reach the offset in time.
    #[error("{addr}: replication offset {seen} did not reach {wanted} within {waited:?}")]
    OffsetNotReached {
        /// The replica.
        addr: SocketAddr,
        /// The offset waited for.
        wanted: u64,
        /// The last offset seen.
        seen: u64,
        /// The limit.
        waited: Duration,
    },
}

impl BackupError {
    /// True when trying again later may succeed (a node or the network, not the data).
    pub fn transient(&self) -> bool {
        match self {
            Self::Snapshot(e) => !matches!(
                e,
                SnapshotError::Refused { .. }
                    | SnapshotError::Protocol { .. }
                    | SnapshotError::TooLarge { .. }
            ),
            Self::Node { source, .. } => source.is_transient(),
            Self::OffsetNotReached { .. } => true,
            Self::Unreadable { source, .. } => matches!(source, RdbError::Io(_)),
            Self::Length { .. } | Self::Parse { .. } => false,
        }
    }
}

/// The value type of an RDB type byte, by the command family that reads it.
pub fn type_name(rdb_type: u8) -> &'static str {
    match rdb_type {
        0 => "string",
        1 | 10 | 14 | 18 => "list",
        2 | 11 | 20 => "set",
        3 | 5 | 12 | 17 => "zset",
        4 | 9 | 13 | 16 => "hash",
        15 | 19 | 21 => "stream",
        6 | 7 => "module",
        _ => "unknown",
    }
}

/// What the parser counted.
#[derive(Debug, Default)]
struct Counts {
    keys: u64,
    keys_with_ttl: u64,
    by_type: BTreeMap<&'static str, u64>,
    rdb_version: u16,
    redis_version: Option<String>,
    functions: u64,
    checksum: Option<u64>,
    bytes: u64,
}

/// Walks the RDB coming through `pipe` to its end and counts its keys.
async fn count_keys(pipe: DuplexStream, limits: ReaderLimits) -> Result<Counts, RdbError> {
    let mut reader = RdbReader::open(pipe, limits).await?;
    let mut counts = Counts::default();
    while let Some(key) = reader.next_key().await? {
        counts.keys += 1;
        counts.keys_with_ttl += u64::from(key.expire_at_ms.is_some());
        *counts.by_type.entry(type_name(key.rdb_type)).or_default() += 1;
    }
    let summary = reader.summary();
    counts.rdb_version = summary.version;
    counts.redis_version = summary.aux("redis-ver").map(str::to_owned);
    counts.functions = summary.functions_skipped;
    counts.checksum = summary.checksum;
    counts.bytes = summary.bytes_read;
    Ok(counts)
}

/// Aborts the parser task when the snapshot ends early (error or cancellation).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Takes `addr`'s RDB into `sink` (flushed, not shut down) and counts its keys as it passes.
/// Fails when the transfer fails, and when the bytes are not a complete RDB the reader can
/// walk (the reader's error, which then also ends the transfer).
pub async fn snapshot_shard<W: AsyncWrite + Unpin + Send>(
    addr: SocketAddr,
    options: &AdminOptions,
    mut sink: W,
    limits: SnapshotLimits,
    reader_limits: ReaderLimits,
) -> Result<ShardSnapshot, BackupError> {
    let (pipe_in, pipe_out) = tokio::io::duplex(PIPE_BYTES);
    // Its own task, so parsing runs beside the transfer on a multi-threaded runtime.
    let mut parser = AbortOnDrop(tokio::spawn(count_keys(pipe_out, reader_limits)));
    let unreadable = |source| BackupError::Unreadable { addr, source };
    let parse = async {
        // By reference: the guard stays, so an early end of the transfer aborts the parser.
        match (&mut parser.0).await {
            Ok(result) => result.map_err(unreadable),
            Err(join) => Err(unreadable(RdbError::Io(io::Error::other(join.to_string())))),
        }
    };
    let transfer = async {
        let mut tee = Tee::new(&mut sink, pipe_in);
        let result = fetch_rdb(addr, options, &limits, &mut tee).await;
        // Closing the pipe ends the parser's input: a short file is then a parse error.
        drop(tee);
        result.map_err(BackupError::from)
    };
    let (snapshot, counts) = tokio::try_join!(transfer, parse)?;
    if counts.bytes != snapshot.bytes {
        return Err(BackupError::Length {
            addr,
            sent: snapshot.bytes,
            parsed: counts.bytes,
        });
    }
    Ok(ShardSnapshot {
        snapshot,
        keys: counts.keys,
        keys_with_ttl: counts.keys_with_ttl,
        keys_by_type: counts.by_type,
        rdb_version: counts.rdb_version,
        redis_version: counts.redis_version,
        functions: counts.functions,
        checksum: counts.checksum,
    })
}

/// Writes everything to the sink and to the parser's pipe. What one `poll_write` accepted is
/// held until both took it, so neither ever sees a byte the other missed. Once the parser has
/// stopped reading (it reached the RDB's end, or failed and its error is reported instead),
/// the pipe is dropped and only the sink is written.
struct Tee<'a, W> {
    sink: &'a mut W,
    pipe: Option<DuplexStream>,
    chunk: Vec<u8>,
    to_sink: usize,
    to_pipe: usize,
}

impl<'a, W: AsyncWrite + Unpin> Tee<'a, W> {
    fn new(sink: &'a mut W, pipe: DuplexStream) -> Self {
        Self {
            sink,
            pipe: Some(pipe),
            chunk: Vec::with_capacity(TEE_CHUNK),
            to_sink: 0,
            to_pipe: 0,
        }
    }

    /// Passes the held chunk on to both.
    fn poll_pass(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.to_sink < self.chunk.len() {
            let rest = &self.chunk[self.to_sink..];
            let n = ready!(Pin::new(&mut *self.sink).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.to_sink += n;
        }
        while self.to_pipe < self.chunk.len() {
            let Some(pipe) = self.pipe.as_mut() else {
                break;
            };
            let rest = &self.chunk[self.to_pipe..];
            match ready!(Pin::new(pipe).poll_write(cx, rest)) {
                Ok(n) if n > 0 => self.to_pipe += n,
                // The reader is gone: see the type's comment.
                Ok(_) | Err(_) => self.pipe = None,
            }
        }
        self.chunk.clear();
        self.to_sink = 0;
        self.to_pipe = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Tee<'_, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pass(cx))?;
        let n = buf.len().min(TEE_CHUNK);
        self.chunk.extend_from_slice(&buf[..n]);
        // Start passing it on now; what is left is finished by the next call or the flush.
        if let Poll::Ready(Err(e)) = self.poll_pass(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pass(cx))?;
        ready!(Pin::new(&mut *self.sink).poll_flush(cx))?;
        if let Some(pipe) = self.pipe.as_mut()
            && ready!(Pin::new(pipe).poll_flush(cx)).is_err()
        {
            self.pipe = None;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        self.pipe = None;
        Pin::new(&mut *self.sink).poll_shutdown(cx)
    }
}

/// Polls `INFO replication` on `addr` every 100 ms until the offset of the data it holds
/// (`slave_repl_offset` on a replica, `master_repl_offset` on a master) is at least
/// `at_least`; returns the offset seen. Fails after `limit`.
pub async fn wait_replica_offset(
    addr: SocketAddr,
    options: &AdminOptions,
    at_least: u64,
    limit: Duration,
) -> Result<u64, BackupError> {
    let started = Instant::now();
    let node = |source| BackupError::Node { addr, source };
    let mut client: Option<Client> = None;
    let cmd = Cmd::info("replication");
    loop {
        let conn = match client.as_mut().filter(|c| !c.is_poisoned()) {
            Some(conn) => conn,
            None => client.insert(Client::connect(addr, options).await.map_err(node)?),
        };
        let text = reply::text(&cmd, conn.call(&cmd).await.map_err(node)?).map_err(node)?;
        let info =
            parse_replication_info(&text).map_err(|source| BackupError::Parse { addr, source })?;
        let seen = info.data_offset();
        if seen >= at_least {
            return Ok(seen);
        }
        if started.elapsed() >= limit {
            return Err(BackupError::OffsetNotReached {
                addr,
                wanted: at_least,
                seen,
                waited: limit,
            });
        }
        tokio::time::sleep(OFFSET_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::redis::rdb::crc64;

    /// A small RDB: `redis-ver`, 200 string keys (every other with an expiry), EOF, checksum.
    /// `bad_type` puts an unknown value type on key 100.
    fn rdb(bad_type: bool) -> Vec<u8> {
        let mut b = b"REDIS0010".to_vec();
        b.extend_from_slice(&[250, 9]);
        b.extend_from_slice(b"redis-ver");
        b.push(6);
        b.extend_from_slice(b"7.0.15");
        for i in 0..200u8 {
            if i % 2 == 0 {
                b.push(252);
                b.extend_from_slice(&4_000_000_000_000_i64.to_le_bytes());
            }
            let value_type = if bad_type && i == 100 { 99 } else { 0 };
            b.extend_from_slice(&[value_type, 2, b'k', i, 3, b'v', b'a', b'l']);
        }
        b.push(255);
        let crc = crc64(0, &b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Writes `input` in 7-byte pieces through a tee whose pipe holds 16 bytes, while the
    /// parser reads the other end; returns what the sink got and what the parser said.
    async fn tee_through(input: &[u8]) -> (Vec<u8>, Result<Counts, RdbError>) {
        let (pipe_in, pipe_out) = tokio::io::duplex(16);
        let parser = tokio::spawn(count_keys(pipe_out, ReaderLimits::default()));
        let mut sink = Vec::new();
        let mut tee = Tee::new(&mut sink, pipe_in);
        for piece in input.chunks(7) {
            tee.write_all(piece)
                .await
                .expect("the sink takes everything");
        }
        tee.flush().await.expect("flush");
        drop(tee);
        (sink, parser.await.expect("parser task"))
    }

    #[tokio::test]
    async fn the_tee_feeds_sink_and_parser_alike() {
        let input = rdb(false);
        let (sink, counts) = tee_through(&input).await;
        assert_eq!(sink, input);
        let counts = counts.expect("parses");
        assert_eq!((counts.keys, counts.keys_with_ttl), (200, 100));
        assert_eq!(counts.by_type, BTreeMap::from([("string", 200)]));
        assert_eq!(counts.redis_version.as_deref(), Some("7.0.15"));
        assert_eq!(counts.rdb_version, 10);
        assert_eq!(counts.bytes, input.len() as u64);
        assert!(counts.checksum.is_some());
    }

    #[tokio::test]
    async fn a_parse_error_is_reported_and_does_not_block_the_transfer() {
        let input = rdb(true);
        let (sink, counts) = tee_through(&input).await;
        assert_eq!(sink, input);
        assert!(matches!(
            counts,
            Err(RdbError::UnknownType { rdb_type: 99, .. })
        ));
        // A short transfer: the parser sees the end of its input.
        let input = rdb(false);
        let (_, counts) = tee_through(&input[..input.len() - 20]).await;
        assert!(
            matches!(counts, Err(RdbError::Truncated { .. })),
            "{counts:?}"
        );
    }

    #[test]
    fn type_names() {
        let names: Vec<&str> = [0, 14, 18, 11, 20, 5, 17, 4, 16, 15, 21, 7, 42]
            .into_iter()
            .map(type_name)
            .collect();
        assert_eq!(
            names,
            [
                "string", "list", "list", "set", "set", "zset", "zset", "hash", "hash", "stream",
                "stream", "module", "unknown"
            ]
        );
    }
}

//! The RDB walk: header, opcodes, and per key the value delimited into a `DUMP` payload.
//! Formats from Redis 7.0/7.2's `rdb.c` (`rdbLoadRioWithLoadingCtx`, `rdbLoadObject`).

use bytes::Bytes;
use tokio::io::AsyncRead;

use crate::redis::rdb::crc64::crc64;
use crate::redis::rdb::encoding::{read_len, read_string, skip_double_text, skip_string};
use crate::redis::rdb::error::{MAX_RDB_VERSION, RdbError, printable_key};
use crate::redis::rdb::source::Source;

const OP_FUNCTION2: u8 = 245;
const OP_FUNCTION_PRE_GA: u8 = 246;
const OP_MODULE_AUX: u8 = 247;
const OP_IDLE: u8 = 248;
const OP_FREQ: u8 = 249;
const OP_AUX: u8 = 250;
const OP_RESIZEDB: u8 = 251;
const OP_EXPIRETIME_MS: u8 = 252;
const OP_EXPIRETIME: u8 = 253;
const OP_SELECTDB: u8 = 254;
const OP_EOF: u8 = 255;

const TYPE_STRING: u8 = 0;
const TYPE_LIST: u8 = 1;
const TYPE_SET: u8 = 2;
const TYPE_ZSET: u8 = 3;
const TYPE_HASH: u8 = 4;
const TYPE_ZSET_2: u8 = 5;
const TYPE_MODULE_PRE_GA: u8 = 6;
const TYPE_MODULE_2: u8 = 7;
const TYPE_LIST_QUICKLIST: u8 = 14;
const TYPE_STREAM_LISTPACKS: u8 = 15;
const TYPE_LIST_QUICKLIST_2: u8 = 18;
const TYPE_STREAM_LISTPACKS_2: u8 = 19;
const TYPE_STREAM_LISTPACKS_3: u8 = 21;
/// Types stored as one string blob: zipmap (9), ziplist list/zset/hash (10, 12, 13), intset
/// (11), listpack hash/zset/set (16, 17, 20).
const BLOB_TYPES: [u8; 8] = [9, 10, 11, 12, 13, 16, 17, 20];

/// Limits on what one item may occupy in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaderLimits {
    /// The largest `DUMP` payload (and key, AUX field or function library) accepted. Default
    /// 512 MiB, Redis's default `proto-max-bulk-len`: a larger payload could not be sent with
    /// `RESTORE` anyway.
    pub max_payload_bytes: usize,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 512 * 1024 * 1024,
        }
    }
}

/// One key of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RdbKey {
    /// The database number (always 0 in cluster mode).
    pub db: u64,
    /// The key.
    pub key: Bytes,
    /// Absolute expiry in Unix milliseconds, if the key has a TTL.
    pub expire_at_ms: Option<i64>,
    /// The value's RDB type byte (the payload's first byte).
    pub rdb_type: u8,
    /// The `DUMP` payload of the value, for `RESTORE`.
    pub payload: Bytes,
    /// LRU idle seconds, when the file records them (`maxmemory-policy` *-lru).
    pub idle_seconds: Option<u64>,
    /// LFU frequency, when the file records it (`maxmemory-policy` *-lfu).
    pub lfu_freq: Option<u8>,
}

/// What the file held besides keys, and how reading went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RdbSummary {
    /// The RDB version from the header.
    pub version: u16,
    /// AUX fields (`redis-ver`, `repl-offset`, ...) as text.
    pub aux: Vec<(String, String)>,
    /// Function libraries skipped (`FUNCTION2` opcodes): they are not keys, and restoring them
    /// is left to `FUNCTION RESTORE`.
    pub functions_skipped: u64,
    /// Keys returned so far.
    pub keys: u64,
    /// Bytes consumed so far.
    pub bytes_read: u64,
    /// The checksum at the end, once read and verified; `None` before the end or when the
    /// writer had `rdbchecksum no`.
    pub checksum: Option<u64>,
    /// Whether the EOF opcode was reached.
    pub finished: bool,
}

impl RdbSummary {
    /// An AUX field's value by name (e.g. `repl-offset`).
    pub fn aux(&self, name: &str) -> Option<&str> {
        self.aux
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads an RDB stream key by key.
pub struct RdbReader<R> {
    src: Source<R>,
    limits: ReaderLimits,
    summary: RdbSummary,
    db: u64,
}

/// Per-key modifiers that precede a key and apply to it only.
#[derive(Default)]
struct Pending {
    expire_at_ms: Option<i64>,
    idle_seconds: Option<u64>,
    lfu_freq: Option<u8>,
}

impl<R: AsyncRead + Unpin> RdbReader<R> {
    /// Reads and checks the header (`REDIS` and a four-digit version).
    pub async fn open(reader: R, limits: ReaderLimits) -> Result<Self, RdbError> {
        let mut src = Source::new(reader);
        let header: [u8; 9] = match src.array().await {
            Ok(header) => header,
            Err(RdbError::Truncated { .. }) => return Err(RdbError::NotRdb),
            Err(e) => return Err(e),
        };
        if &header[..5] != b"REDIS" || !header[5..].iter().all(u8::is_ascii_digit) {
            return Err(RdbError::NotRdb);
        }
        let version = header[5..]
            .iter()
            .fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
        if version == 0 {
            return Err(RdbError::NotRdb);
        }
        if version > MAX_RDB_VERSION {
            return Err(RdbError::UnsupportedVersion { version });
        }
        Ok(Self {
            src,
            limits,
            summary: RdbSummary {
                version,
                ..RdbSummary::default()
            },
            db: 0,
        })
    }

    /// What was read so far (complete once [`RdbReader::next_key`] returned `None`).
    pub fn summary(&self) -> &RdbSummary {
        &self.summary
    }

    /// The next key, or `None` after the EOF opcode (with the checksum verified).
    pub async fn next_key(&mut self) -> Result<Option<RdbKey>, RdbError> {
        let mut pending = Pending::default();
        let limit = self.limits.max_payload_bytes;
        while !self.summary.finished {
            let op = self.src.u8().await?;
            match op {
                OP_EOF => self.finish().await?,
                OP_SELECTDB => self.db = read_len(&mut self.src).await?,
                OP_RESIZEDB => {
                    read_len(&mut self.src).await?;
                    read_len(&mut self.src).await?;
                }
                OP_AUX => {
                    let name = read_string(&mut self.src, limit).await?;
                    let value = read_string(&mut self.src, limit).await?;
                    self.summary.aux.push((
                        String::from_utf8_lossy(&name).into_owned(),
                        String::from_utf8_lossy(&value).into_owned(),
                    ));
                }
                OP_EXPIRETIME_MS => {
                    let ms = i64::from_le_bytes(self.src.array().await?);
                    pending.expire_at_ms = Some(ms);
                }
                OP_EXPIRETIME => {
                    let secs = i32::from_le_bytes(self.src.array().await?);
                    pending.expire_at_ms = Some(i64::from(secs) * 1000);
                }
                OP_IDLE => pending.idle_seconds = Some(read_len(&mut self.src).await?),
                OP_FREQ => pending.lfu_freq = Some(self.src.u8().await?),
                OP_FUNCTION2 => {
                    read_string(&mut self.src, limit).await?;
                    self.summary.functions_skipped += 1;
                }
                OP_FUNCTION_PRE_GA => self.skip_pre_ga_function().await?,
                OP_MODULE_AUX => {
                    return Err(RdbError::ModuleAux {
                        offset: self.src.offset(),
                    });
                }
                rdb_type => return self.read_key(rdb_type, pending).await.map(Some),
            }
        }
        Ok(None)
    }

    /// The EOF opcode was consumed: verify the checksum that follows (RDB 5+).
    async fn finish(&mut self) -> Result<(), RdbError> {
        let computed = self.src.crc();
        if self.summary.version >= 5 {
            let expected = u64::from_le_bytes(self.src.array().await?);
            if expected != 0 {
                if expected != computed {
                    return Err(RdbError::ChecksumMismatch { expected, computed });
                }
                self.summary.checksum = Some(expected);
            }
        }
        self.summary.finished = true;
        self.summary.bytes_read = self.src.offset();
        Ok(())
    }

    /// A function library in the 7.0 release-candidate format: name, engine, optional
    /// description, code.
    async fn skip_pre_ga_function(&mut self) -> Result<(), RdbError> {
        skip_string(&mut self.src).await?;
        skip_string(&mut self.src).await?;
        if read_len(&mut self.src).await? != 0 {
            skip_string(&mut self.src).await?;
        }
        skip_string(&mut self.src).await?;
        self.summary.functions_skipped += 1;
        Ok(())
    }

    /// Reads a key and captures its value into a `DUMP` payload.
    async fn read_key(&mut self, rdb_type: u8, pending: Pending) -> Result<RdbKey, RdbError> {
        let limit = self.limits.max_payload_bytes;
        let key = read_string(&mut self.src, limit).await?;
        if matches!(rdb_type, TYPE_MODULE_PRE_GA | TYPE_MODULE_2) {
            return Err(RdbError::ModuleValue {
                key: printable_key(&key),
                rdb_type,
            });
        }
        let offset = self.src.offset();
        // Room for the version and checksum that close the payload.
        self.src
            .start_capture(&[rdb_type], limit.saturating_sub(10));
        let walked = self.walk_value(rdb_type).await;
        let mut payload = self.src.finish_capture();
        match walked {
            Ok(true) => {}
            Ok(false) => {
                return Err(RdbError::UnknownType {
                    key: printable_key(&key),
                    rdb_type,
                    offset,
                });
            }
            Err(RdbError::PayloadTooLarge { .. }) => {
                return Err(RdbError::ValueTooLarge {
                    key: printable_key(&key),
                    limit,
                });
            }
            Err(e) => return Err(e),
        }
        payload.extend_from_slice(&self.summary.version.to_le_bytes());
        let crc = crc64(0, &payload);
        payload.extend_from_slice(&crc.to_le_bytes());
        self.summary.keys += 1;
        self.summary.bytes_read = self.src.offset();
        Ok(RdbKey {
            db: self.db,
            key: Bytes::from(key),
            expire_at_ms: pending.expire_at_ms,
            rdb_type,
            payload: Bytes::from(payload),
            idle_seconds: pending.idle_seconds,
            lfu_freq: pending.lfu_freq,
        })
    }

    /// Consumes one value of `rdb_type`; `false` if the type is unknown.
    async fn walk_value(&mut self, rdb_type: u8) -> Result<bool, RdbError> {
        let src = &mut self.src;
        match rdb_type {
            TYPE_STRING => skip_string(src).await?,
            t if BLOB_TYPES.contains(&t) => skip_string(src).await?,
            TYPE_LIST | TYPE_SET | TYPE_LIST_QUICKLIST => {
                for _ in 0..read_len(src).await? {
                    skip_string(src).await?;
                }
            }
            TYPE_ZSET => {
                for _ in 0..read_len(src).await? {
                    skip_string(src).await?;
                    skip_double_text(src).await?;
                }
            }
            TYPE_ZSET_2 => {
                for _ in 0..read_len(src).await? {
                    skip_string(src).await?;
                    src.take(8, None).await?;
                }
            }
            TYPE_HASH => {
                for _ in 0..read_len(src).await? {
                    skip_string(src).await?;
                    skip_string(src).await?;
                }
            }
            TYPE_LIST_QUICKLIST_2 => {
                for _ in 0..read_len(src).await? {
                    // The container kind (plain or packed), then the node.
                    read_len(src).await?;
                    skip_string(src).await?;
                }
            }
            TYPE_STREAM_LISTPACKS | TYPE_STREAM_LISTPACKS_2 | TYPE_STREAM_LISTPACKS_3 => {
                walk_stream(src, rdb_type).await?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// A stream: its listpacks, metadata, and consumer groups with their pending entries.
async fn walk_stream<R: AsyncRead + Unpin>(
    src: &mut Source<R>,
    rdb_type: u8,
) -> Result<(), RdbError> {
    for _ in 0..read_len(src).await? {
        // The node key (a 16-byte master ID) and the listpack.
        skip_string(src).await?;
        skip_string(src).await?;
    }
    // Length and last ID; since RDB 10 also the first ID, max deleted ID and entries added.
    let fields = if rdb_type >= TYPE_STREAM_LISTPACKS_2 {
        8
    } else {
        3
    };
    for _ in 0..fields {
        read_len(src).await?;
    }
    for _ in 0..read_len(src).await? {
        // Group name, last delivered ID, and since RDB 10 the entries-read counter.
        skip_string(src).await?;
        read_len(src).await?;
        read_len(src).await?;
        if rdb_type >= TYPE_STREAM_LISTPACKS_2 {
            read_len(src).await?;
        }
        // The group's pending entries: raw 16-byte ID, delivery time (8 bytes), count.
        for _ in 0..read_len(src).await? {
            src.take(16 + 8, None).await?;
            read_len(src).await?;
        }
        for _ in 0..read_len(src).await? {
            // Consumer name, seen time, since RDB 11 the active time, then its pending IDs.
            skip_string(src).await?;
            let times = if rdb_type >= TYPE_STREAM_LISTPACKS_3 {
                16
            } else {
                8
            };
            src.take(times, None).await?;
            let pending = read_len(src).await?;
            for _ in 0..pending {
                src.take(16, None).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;

//! A streaming reader of RDB files (as Redis 7.0 writes them, version 10; versions up to 11
//! are accepted) that yields every key with its expiry and the `DUMP` payload of its value,
//! ready for `RESTORE` on whichever node owns the key's slot.
//!
//! A payload is `[type][value bytes][RDB version u16 LE][CRC-64 u64 LE]`, exactly what
//! Redis's `createDumpPayload` (cluster.c) builds: the value bytes are what `rdbSaveObject`
//! writes both into an RDB file and into a `DUMP` reply, so they are copied verbatim and only
//! delimited here, never decoded. The version is the file's, as `RESTORE` checks it against its
//! own.
//!
//! Reading is incremental over any `tokio::io::AsyncRead` (an object-storage download, a
//! file); at most one key's payload is held, and [`ReaderLimits::max_payload_bytes`] bounds
//! that. The file's own CRC-64 is verified at the end when it is not zero
//! (`rdbchecksum no` writes zero).

mod crc64;
mod encoding;
mod error;
mod lzf;
mod reader;
mod source;

pub use crc64::crc64;
pub(crate) use error::printable_key;
pub use error::{MAX_RDB_VERSION, RdbError};
pub use lzf::{LzfError, decompress as lzf_decompress};
pub use reader::{RdbKey, RdbReader, RdbSummary, ReaderLimits};

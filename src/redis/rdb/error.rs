//! Why an RDB stream could not be read, and the highest version read: what every part of the
//! reader shares (its own file, so that the parts do not import their parent).

/// The highest RDB version read (Redis 7.2 writes 11; 7.0 writes 10).
pub const MAX_RDB_VERSION: u16 = 11;

/// Why an RDB stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RdbError {
    /// Reading the underlying stream failed.
    #[error("reading the RDB failed: {0}")]
    Io(#[source] std::io::Error),
    /// The stream ended in the middle of the file.
    #[error("the RDB ends unexpectedly after {offset} bytes")]
    Truncated {
        /// Bytes read before the end.
        offset: u64,
    },
    /// The stream does not start with `REDIS` and a version number.
    #[error("not an RDB file (no REDIS header)")]
    NotRdb,
    /// The file was written by a newer Redis whose format this reader does not know.
    #[error("RDB version {version} is not supported (at most {MAX_RDB_VERSION})")]
    UnsupportedVersion {
        /// The version in the header.
        version: u16,
    },
    /// A value of a type this reader cannot delimit (newer Redis, or not an RDB type).
    #[error("key {key}: unknown RDB value type {rdb_type} at byte {offset}")]
    UnknownType {
        /// The key, printable and shortened.
        key: String,
        /// The type byte.
        rdb_type: u8,
        /// Where the value starts.
        offset: u64,
    },
    /// A module value: its bytes can only be delimited by the module, which is not here.
    #[error("key {key} holds a module value (type {rdb_type}); module data cannot be restored")]
    ModuleValue {
        /// The key, printable and shortened.
        key: String,
        /// 6 or 7.
        rdb_type: u8,
    },
    /// Module auxiliary data (`MODULE_AUX`): it belongs to a module this reader cannot run.
    #[error("the RDB holds module auxiliary data at byte {offset}; modules are not supported")]
    ModuleAux {
        /// Where the opcode was.
        offset: u64,
    },
    /// A key, value or field is larger than the configured limit.
    #[error("an item is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The same, for a value whose key is known.
    #[error("key {key}: its DUMP payload is larger than the limit of {limit} bytes")]
    ValueTooLarge {
        /// The key, printable and shortened.
        key: String,
        /// The limit.
        limit: usize,
    },
    /// The bytes do not follow the format.
    #[error("corrupt RDB at byte {offset}: {what}")]
    Corrupt {
        /// Where the problem was noticed.
        offset: u64,
        /// What was wrong.
        what: String,
    },
    /// The file's checksum does not match its content.
    #[error(
        "RDB checksum mismatch: the file says {expected:016x}, its content gives {computed:016x}"
    )]
    ChecksumMismatch {
        /// The checksum at the end of the file.
        expected: u64,
        /// The checksum of what was read.
        computed: u64,
    },
}

/// A key for an error message: lossy UTF-8, at most 100 characters. Keys are user data, but an
/// operator needs to know which one to look at.
pub(crate) fn printable_key(key: &[u8]) -> String {
    let text = String::from_utf8_lossy(key);
    let mut out: String = text.chars().take(100).collect();
    if text.chars().count() > 100 {
        out.push('…');
    }
    format!("{out:?}")
}

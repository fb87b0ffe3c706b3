//! `RESTORE` commands for the keys an [`RdbReader`](crate::redis::rdb::RdbReader) yields, and
//! their grouping into pipelined batches per target node.
//!
//! The command is `RESTORE key ttl payload [ABSTTL]`:
//!
//! * `ABSTTL` with the file's absolute expiry: the TTL does not stretch by however long the
//!   backup sat in storage or the restore took, and a key that expired meanwhile is skipped
//!   here instead of being sent (Redis would also accept and drop it).
//! * No `REPLACE`: a restore runs only into an empty cluster (checked before it starts), so an
//!   existing key means something else is writing; `BUSYKEY` surfaces that instead of silently
//!   overwriting a newer value. Two cases add `REPLACE` ([`with_replace`]) for the keys that
//!   answer `BUSYKEY`: a resumed restore (the interrupted attempt wrote them), and a batch
//!   re-sent after its replies were lost (it wrote them itself).
//! * No `IDLETIME`/`FREQ`: restored data starts fresh for eviction, like after `MIGRATE`.

use std::collections::BTreeMap;

use crate::redis::command::Cmd;
use crate::redis::rdb::RdbKey;

/// The `RESTORE` for `key`, or `None` if it expired at or before `now_ms` (Unix ms).
pub fn restore_cmd(key: &RdbKey, now_ms: i64) -> Option<Cmd> {
    let cmd = Cmd::new("RESTORE").arg_bytes(key.key.clone());
    match key.expire_at_ms {
        None => Some(cmd.arg_int(0).arg_bytes(key.payload.clone())),
        Some(at) if at <= now_ms => None,
        Some(at) => Some(cmd.arg_int(at).arg_bytes(key.payload.clone()).arg("ABSTTL")),
    }
}

/// `cmd` (a `RESTORE` from [`restore_cmd`]) with `REPLACE`: for a resumed restore, where a
/// key that exists was written by the interrupted attempt, and for a batch re-sent after its
/// replies were lost, whose keys may be its own.
pub fn with_replace(cmd: Cmd) -> Cmd {
    cmd.arg("REPLACE")
}

/// The key of a `RESTORE` command (its first argument).
pub fn restore_key(cmd: &Cmd) -> &[u8] {
    cmd.args().get(1).map_or(&[][..], |k| k.as_ref())
}

/// The cluster slot of a key (CRC16 of the key or its `{hash tag}`, mod 16384).
pub fn key_slot(key: &[u8]) -> u16 {
    redis_protocol::redis_keyslot(key)
}

/// Limits of one pipelined batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most commands in one batch.
    pub max_commands: usize,
    /// Most argument bytes in one batch (keys plus payloads), so memory stays bounded however
    /// large the values are. A single command larger than this makes a batch of its own.
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_commands: 500,
            max_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Collects commands per target (a node, a shard index) and hands out a batch whenever one
/// is full. At most one open batch per target is held.
#[derive(Debug)]
pub struct RestoreBatcher<T> {
    limits: BatchLimits,
    open: BTreeMap<T, (Vec<Cmd>, usize)>,
}

impl<T: Ord + Clone> RestoreBatcher<T> {
    /// An empty batcher.
    pub fn new(limits: BatchLimits) -> Self {
        Self {
            limits,
            open: BTreeMap::new(),
        }
    }

    /// Adds `cmd` for `target`; returns that target's batch when it is full.
    pub fn push(&mut self, target: T, cmd: Cmd) -> Option<Vec<Cmd>> {
        let size: usize = cmd.args().iter().map(|a| a.len()).sum();
        let (cmds, bytes) = self.open.entry(target.clone()).or_default();
        cmds.push(cmd);
        *bytes += size;
        if cmds.len() >= self.limits.max_commands || *bytes >= self.limits.max_bytes {
            return self.open.remove(&target).map(|(cmds, _)| cmds);
        }
        None
    }

    /// Bytes held in open batches.
    pub fn held_bytes(&self) -> usize {
        self.open.values().map(|(_, bytes)| bytes).sum()
    }

    /// The batches still open (at the end of the file), emptying the batcher.
    pub fn drain(&mut self) -> Vec<(T, Vec<Cmd>)> {
        std::mem::take(&mut self.open)
            .into_iter()
            .map(|(target, (cmds, _))| (target, cmds))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn key(name: &str, expire_at_ms: Option<i64>, payload: &[u8]) -> RdbKey {
        RdbKey {
            db: 0,
            key: Bytes::copy_from_slice(name.as_bytes()),
            expire_at_ms,
            rdb_type: 0,
            payload: Bytes::copy_from_slice(payload),
            idle_seconds: Some(5),
            lfu_freq: None,
        }
    }

    fn args(cmd: &Cmd) -> Vec<&[u8]> {
        cmd.args().iter().map(|a| a.as_ref()).collect()
    }

    #[test]
    fn restore_commands() {
        let now = 1_000_000;
        let cmd = restore_cmd(&key("a", None, b"P"), now).expect("no ttl");
        assert_eq!(args(&cmd), [&b"RESTORE"[..], b"a", b"0", b"P"]);
        let cmd = restore_cmd(&key("b", Some(now + 5), b"Q"), now).expect("live");
        assert_eq!(
            args(&cmd),
            [&b"RESTORE"[..], b"b", b"1000005", b"Q", b"ABSTTL"]
        );
        let replace = with_replace(cmd);
        assert_eq!(
            args(&replace),
            [
                &b"RESTORE"[..],
                b"b",
                b"1000005",
                b"Q",
                b"ABSTTL",
                b"REPLACE"
            ]
        );
        assert_eq!(restore_key(&replace), b"b");
        assert_eq!(restore_key(&Cmd::new("RESTORE")), b"");
        assert_eq!(restore_cmd(&key("c", Some(now), b"R"), now), None);
        assert_eq!(restore_cmd(&key("d", Some(-1), b"R"), now), None);
    }

    #[test]
    fn key_slots_follow_hash_tags() {
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"123456789"), 12739);
    }

    #[test]
    fn batches_fill_by_count_and_by_bytes() {
        let mut batcher = RestoreBatcher::new(BatchLimits {
            max_commands: 3,
            max_bytes: 100,
        });
        let small = |n: &str| restore_cmd(&key(n, None, b"x"), 0).expect("cmd");
        assert!(batcher.push(1, small("a")).is_none());
        assert!(batcher.push(2, small("b")).is_none());
        assert!(batcher.push(1, small("c")).is_none());
        let full = batcher.push(1, small("d")).expect("three for target 1");
        assert_eq!(full.len(), 3);
        let big = restore_cmd(&key("e", None, &[0u8; 200]), 0).expect("cmd");
        let alone = batcher.push(3, big).expect("over the byte limit");
        assert_eq!(alone.len(), 1);
        assert!(batcher.held_bytes() > 0);
        let rest = batcher.drain();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].0, 2);
        assert_eq!(batcher.held_bytes(), 0);
    }
}

//! The fields of `INFO memory`, `INFO persistence` and `INFO clients` that the observation
//! keeps: plain `name:value` lines, each read on its own.

/// Whether a node's writes reach its disk, from `INFO persistence`. A master whose last AOF
/// write failed (a full or broken disk) refuses every write with `MISCONF` until a write
/// succeeds again; one whose last RDB save failed does too while it has save points
/// (`stop-writes-on-bgsave-error`, Redis's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersistenceInfo {
    /// `aof_enabled:1`.
    pub aof_enabled: bool,
    /// `aof_last_write_status:ok`.
    pub aof_write_ok: bool,
    /// `rdb_last_bgsave_status:ok`.
    pub rdb_save_ok: bool,
}

impl Default for PersistenceInfo {
    fn default() -> Self {
        Self {
            aof_enabled: false,
            aof_write_ok: true,
            rdb_save_ok: true,
        }
    }
}

impl PersistenceInfo {
    /// Reads the fields from an `INFO persistence` reply; a field that is absent reads as
    /// good (nothing is claimed about what was not reported).
    pub fn parse(text: &str) -> Self {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.trim_end().strip_prefix(name)?.strip_prefix(':'))
        };
        Self {
            aof_enabled: field("aof_enabled") == Some("1"),
            aof_write_ok: field("aof_last_write_status") != Some("err"),
            rdb_save_ok: field("rdb_last_bgsave_status") != Some("err"),
        }
    }

    /// What fails, for conditions and Events; `None` when its writes reach the disk.
    pub fn failure(&self) -> Option<&'static str> {
        match (self.aof_enabled && !self.aof_write_ok, self.rdb_save_ok) {
            (true, true) => Some("its last AOF write failed (disk full or broken?)"),
            (true, false) => {
                Some("its last AOF write and its last RDB save failed (disk full or broken?)")
            }
            (false, false) => Some("its last RDB save failed (disk full or broken?)"),
            (false, true) => None,
        }
    }
}

/// The memory figures of `INFO memory` that capacity decisions need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryInfo {
    /// `used_memory` minus `mem_not_counted_for_evict`: the bytes `maxmemory` limits.
    pub used: u64,
    /// `maxmemory`: the configured limit, 0 when unlimited.
    pub max: u64,
}

impl MemoryInfo {
    /// Reads `used_memory` and `maxmemory` from an `INFO memory` reply.
    pub fn parse(text: &str) -> Self {
        let field = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.trim_end().strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        // What maxmemory is compared with: replication buffers and the AOF buffer do not count.
        Self {
            used: field("used_memory").saturating_sub(field("mem_not_counted_for_evict")),
            max: field("maxmemory"),
        }
    }
}

/// The numeric field `name` of an `INFO` section's text.
pub fn info_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.trim_end().strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_counts_what_maxmemory_limits() {
        let m = MemoryInfo::parse(
            "# Memory\r\nused_memory:5000000\r\nused_memory_human:4.77M\r\nmaxmemory:31457280\r\nmem_not_counted_for_evict:1000000\r\n",
        );
        assert_eq!(
            m,
            MemoryInfo {
                used: 4_000_000,
                max: 31_457_280
            }
        );
        assert_eq!(MemoryInfo::parse(""), MemoryInfo::default());
    }

    #[test]
    fn info_field_reads_one_number() {
        let persistence = PersistenceInfo::parse(
            "# Persistence\r\nloading:0\r\nrdb_last_bgsave_status:ok\r\naof_enabled:1\r\naof_last_write_status:err\r\n",
        );
        assert!(persistence.aof_enabled && !persistence.aof_write_ok && persistence.rdb_save_ok);
        assert!(
            persistence
                .failure()
                .is_some_and(|f| f.contains("AOF write"))
        );
        // AOF off: its write status says nothing; an RDB failure still counts.
        let rdb = PersistenceInfo::parse(
            "aof_enabled:0\r\naof_last_write_status:err\r\nrdb_last_bgsave_status:err\r\n",
        );
        assert_eq!(
            rdb.failure(),
            Some("its last RDB save failed (disk full or broken?)")
        );
        assert_eq!(PersistenceInfo::parse("").failure(), None);
        assert_eq!(
            PersistenceInfo::parse("aof_enabled:1\r\naof_last_write_status:ok\r\n").failure(),
            None
        );
        let clients = "# Clients\r\nconnected_clients:7\r\ncluster_connections:4\r\n";
        assert_eq!(info_field(clients, "connected_clients"), Some(7));
        assert_eq!(info_field(clients, "connected"), None);
        assert_eq!(info_field("", "connected_clients"), None);
    }
}

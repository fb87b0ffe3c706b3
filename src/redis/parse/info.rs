//! `INFO replication`: role, link state and replication offsets.

use std::collections::BTreeMap;

use crate::redis::parse::ParseError;
use crate::redis::parse::cluster_info::parse_key_values;

/// A replica as listed by its master (`slaveN:ip=..,port=..,state=..,offset=..,lag=..`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectedReplica {
    /// The replica's announced IP.
    pub ip: String,
    /// The replica's announced port.
    pub port: u16,
    /// `online`, `wait_bgsave`, `send_bulk`, ...
    pub state: String,
    /// The replication offset the replica acknowledged.
    pub offset: u64,
    /// Seconds since the replica's last acknowledgement.
    pub lag: u64,
}

/// What a replica reports about its link to its master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaLink {
    /// The master's host as configured by `CLUSTER REPLICATE`.
    pub master_host: String,
    /// The master's port.
    pub master_port: u16,
    /// `master_link_status:up`.
    pub link_up: bool,
    /// A full sync is being received.
    pub sync_in_progress: bool,
    /// The offset this replica has processed (`slave_repl_offset`).
    pub repl_offset: u64,
    /// Seconds since the link went down, when it is down.
    pub link_down_since_seconds: Option<u64>,
    /// Seconds since the leader last sent anything (`master_last_io_seconds_ago`), while the
    /// follower holds a connection to it.
    pub last_io_seconds: Option<u64>,
}

impl ReplicaLink {
    /// Whether the link has been up since the process started: it is up, or down for a known
    /// time. Redis reports `master_link_down_since_seconds:-1` until the first link, and a
    /// follower that never reached its leader since its start holds only what it loaded from
    /// its disk.
    pub fn linked_since_start(&self) -> bool {
        self.link_up || self.link_down_since_seconds.is_some()
    }

    /// How long the follower has heard nothing from its leader: since its link went down,
    /// or, while the link is still up, since the leader last sent anything. A leader whose
    /// node died black-holes its packets, and the follower keeps the link "up" until
    /// `repl-timeout` (60 s); meanwhile only the last I/O tells the silence. A leader pings
    /// its followers every 10 s (`repl-ping-replica-period`), so an idle shard's healthy link
    /// reads up to 10 s: a clock for how long a death the cluster agreed on has lasted, never
    /// a test of death.
    pub fn silent_for(&self) -> std::time::Duration {
        let secs = if self.link_up {
            self.last_io_seconds
        } else {
            self.link_down_since_seconds
        };
        std::time::Duration::from_secs(secs.unwrap_or(0))
    }
}

/// The node's role in replication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicationRole {
    /// A master, with the replicas connected to it.
    Master {
        /// The connected replicas.
        replicas: Vec<ConnectedReplica>,
    },
    /// A replica and the state of its link.
    Replica(ReplicaLink),
}

/// The typed `INFO replication` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationInfo {
    /// Master or replica, with role-specific details.
    pub role: ReplicationRole,
    /// The replication id of the history this node holds.
    pub master_replid: String,
    /// The node's replication offset (`master_repl_offset`); on a replica, what it has from
    /// its master.
    pub master_repl_offset: u64,
    /// Every field as text.
    pub fields: BTreeMap<String, String>,
}

impl ReplicationInfo {
    /// The replica link, if this node is a replica.
    pub fn replica_link(&self) -> Option<&ReplicaLink> {
        match &self.role {
            ReplicationRole::Replica(link) => Some(link),
            ReplicationRole::Master { .. } => None,
        }
    }

    /// The offset of the data this node holds: `slave_repl_offset` on a replica (what it has
    /// processed from its master), `master_repl_offset` on a master.
    pub fn data_offset(&self) -> u64 {
        match &self.role {
            ReplicationRole::Replica(link) => link.repl_offset,
            ReplicationRole::Master { .. } => self.master_repl_offset,
        }
    }
}

/// Parses the reply of `INFO replication` (other sections in the text are ignored).
pub fn parse_replication_info(text: &str) -> Result<ReplicationInfo, ParseError> {
    const WHAT: &str = "INFO replication";
    let fields = parse_key_values(text);
    let get = |key: &'static str| {
        fields
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| ParseError::new(WHAT, format!("missing {key}")))
    };
    let num = |key: &'static str| -> Result<u64, ParseError> {
        let v = get(key)?;
        v.parse()
            .map_err(|_| ParseError::new(key, format!("not a number: {v:?}")))
    };
    let role = match get("role")? {
        "master" => {
            let mut replicas = Vec::new();
            for (key, value) in &fields {
                let is_replica_line = key
                    .strip_prefix("slave")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
                if is_replica_line {
                    replicas.push(parse_connected_replica(value)?);
                }
            }
            ReplicationRole::Master { replicas }
        }
        "slave" => ReplicationRole::Replica(ReplicaLink {
            master_host: get("master_host")?.to_owned(),
            master_port: get("master_port")?
                .parse()
                .map_err(|_| ParseError::new(WHAT, "master_port"))?,
            link_up: get("master_link_status")? == "up",
            sync_in_progress: get("master_sync_in_progress")? == "1",
            repl_offset: match fields.get("slave_repl_offset") {
                Some(v) => v
                    .parse()
                    .map_err(|_| ParseError::new(WHAT, "slave_repl_offset"))?,
                None => 0,
            },
            link_down_since_seconds: fields
                .get("master_link_down_since_seconds")
                .and_then(|v| v.parse().ok()),
            last_io_seconds: fields
                .get("master_last_io_seconds_ago")
                .and_then(|v| v.parse().ok()),
        }),
        other => return Err(ParseError::new(WHAT, format!("role {other:?}"))),
    };
    Ok(ReplicationInfo {
        role,
        master_replid: get("master_replid")?.to_owned(),
        master_repl_offset: num("master_repl_offset")?,
        fields,
    })
}

fn parse_connected_replica(value: &str) -> Result<ConnectedReplica, ParseError> {
    const WHAT: &str = "INFO replication replica line";
    let kv: BTreeMap<&str, &str> = value.split(',').filter_map(|p| p.split_once('=')).collect();
    let get = |k: &str| {
        kv.get(k)
            .copied()
            .ok_or_else(|| ParseError::new(WHAT, format!("missing {k} in {value:?}")))
    };
    let num = |k: &str| -> Result<u64, ParseError> {
        get(k)?
            .parse()
            .map_err(|_| ParseError::new(WHAT, format!("{k} in {value:?}")))
    };
    Ok(ConnectedReplica {
        ip: get("ip")?.to_owned(),
        port: get("port")?
            .parse()
            .map_err(|_| ParseError::new(WHAT, format!("port in {value:?}")))?,
        state: get("state")?.to_owned(),
        offset: num("offset")?,
        // `lag` is the master's cached clock minus the replica's last ACK time, so an ACK that
        // arrived after the clock was cached shows as -1 (seen on 7.0 under load): just acked.
        lag: get("lag")?
            .parse::<i64>()
            .map(|l| u64::try_from(l).unwrap_or(0))
            .map_err(|_| ParseError::new(WHAT, format!("lag in {value:?}")))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_master() {
        let text = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=127.0.0.1,port=30004,state=online,offset=1234,lag=0\r\nmaster_failover_state:no-failover\r\nmaster_replid:8c5d1c8f6a3b4d1e9f0a2b3c4d5e6f7a8b9c0d1e\r\nmaster_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:1234\r\nsecond_repl_offset:-1\r\n";
        let info = parse_replication_info(text).unwrap();
        assert_eq!(info.master_repl_offset, 1234);
        match info.role {
            ReplicationRole::Master { replicas } => {
                assert_eq!(replicas.len(), 1);
                assert_eq!(replicas[0].port, 30004);
                assert_eq!(replicas[0].offset, 1234);
            }
            ReplicationRole::Replica(_) => panic!("expected master"),
        }
    }

    #[test]
    fn a_replica_acked_after_the_masters_clock_was_cached_has_lag_zero() {
        // Seen in make e2e: `lag=-1` made the whole observation of a leader fail, and the
        // cluster turned not Ready ("waiting for Redis to answer") in a planned scale-out.
        let text = "role:master\r\nconnected_slaves:1\r\nslave0:ip=10.244.15.81,port=6379,state=online,offset=3995807,lag=-1\r\nmaster_replid:abc\r\nmaster_repl_offset:3995807\r\n";
        let info = parse_replication_info(text).unwrap();
        match info.role {
            ReplicationRole::Master { replicas } => {
                assert_eq!(replicas[0].lag, 0);
                assert_eq!(replicas[0].offset, 3_995_807);
            }
            ReplicationRole::Replica(_) => panic!("expected master"),
        }
        let bad = "role:master\r\nconnected_slaves:1\r\nslave0:ip=a,port=1,state=online,offset=1,lag=x\r\nmaster_replid:abc\r\nmaster_repl_offset:1\r\n";
        assert!(parse_replication_info(bad).is_err());
    }

    #[test]
    fn parses_replica() {
        let text = "role:slave\nmaster_host:127.0.0.1\nmaster_port:30001\nmaster_link_status:down\nmaster_last_io_seconds_ago:-1\nmaster_sync_in_progress:0\nslave_read_repl_offset:1\nslave_repl_offset:1\nmaster_link_down_since_seconds:7\nslave_priority:100\nconnected_slaves:0\nmaster_replid:abc\nmaster_repl_offset:1\n";
        let info = parse_replication_info(text).unwrap();
        let link = info.replica_link().unwrap();
        assert!(!link.link_up);
        assert_eq!(link.master_port, 30001);
        assert_eq!(link.link_down_since_seconds, Some(7));
        assert!(link.linked_since_start());
        assert_eq!(link.silent_for(), std::time::Duration::from_secs(7));
        // Its leader's node died: the link stays up until repl-timeout, the last I/O ages.
        let black_holed = text
            .replace("link_status:down", "link_status:up")
            .replace("last_io_seconds_ago:-1", "last_io_seconds_ago:9")
            .replace("master_link_down_since_seconds:7\n", "");
        let info = parse_replication_info(&black_holed).unwrap();
        let link = info.replica_link().unwrap();
        assert_eq!(link.last_io_seconds, Some(9));
        assert_eq!(link.silent_for(), std::time::Duration::from_secs(9));
        // Redis 7.0.15 restarted from its RDB, its master frozen: the RDB's offset, no link yet.
        let fresh = text.replace("since_seconds:7", "since_seconds:-1");
        let info = parse_replication_info(&fresh).unwrap();
        assert!(!info.replica_link().unwrap().linked_since_start());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse_replication_info("").is_err());
        assert!(
            parse_replication_info("role:sentinel\nmaster_replid:x\nmaster_repl_offset:0").is_err()
        );
        assert!(
            parse_replication_info(
                "role:master\nslave0:ip=x\nmaster_replid:x\nmaster_repl_offset:0"
            )
            .is_err()
        );
    }
}

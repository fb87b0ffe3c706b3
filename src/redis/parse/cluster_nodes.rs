//! `CLUSTER NODES`: one line per node the answering node knows about.
//!
//! Line format (Redis 7.0):
//! `<id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv> <config-epoch>
//! <link-state> <slot> <slot> ...`, where a slot is `N`, `N-M`, or, on the `myself` line only,
//! an open-slot marker `[N->-target]` / `[N-<-source]`.

use std::net::{IpAddr, SocketAddr};

use crate::redis::ids::{NodeId, SLOT_COUNT, SlotRange};
use crate::redis::parse::ParseError;

/// The flags column of a node line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFlags {
    /// This line describes the node that answered.
    pub myself: bool,
    /// The node is a master.
    pub master: bool,
    /// The node is a replica (`slave`).
    pub replica: bool,
    /// The answering node suspects the node is down (`fail?`, PFAIL).
    pub pfail: bool,
    /// The cluster agreed the node is down (`fail`, FAIL).
    pub fail: bool,
    /// The node is in the handshake that follows a MEET and is not trusted yet.
    pub handshake: bool,
    /// The answering node has no address for the node.
    pub noaddr: bool,
    /// The replica will not attempt a failover (`nofailover`).
    pub nofailover: bool,
    /// Flags this parser does not know, kept so nothing is silently lost.
    pub other: Vec<String>,
}

impl NodeFlags {
    /// Parses the comma-separated flags column.
    pub fn parse(column: &str) -> Self {
        let mut flags = Self::default();
        for flag in column.split(',') {
            match flag {
                "myself" => flags.myself = true,
                "master" => flags.master = true,
                "slave" => flags.replica = true,
                "fail?" => flags.pfail = true,
                "fail" => flags.fail = true,
                "handshake" => flags.handshake = true,
                "noaddr" => flags.noaddr = true,
                "nofailover" => flags.nofailover = true,
                "noflags" | "" => {}
                other => flags.other.push(other.to_owned()),
            }
        }
        flags
    }

    /// Whether the answering node thinks the node is down (PFAIL or FAIL).
    pub fn failing(&self) -> bool {
        self.pfail || self.fail
    }
}

/// The direction of an open slot, as shown on the `myself` line.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpenSlotState {
    /// `[slot->-target]`: this node is moving the slot's keys to `target`.
    Migrating {
        /// The node receiving the keys.
        to: NodeId,
    },
    /// `[slot-<-source]`: this node accepts the slot's keys from `source`.
    Importing {
        /// The node sending the keys.
        from: NodeId,
    },
}

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    /// The node id.
    pub id: NodeId,
    /// Client address; `None` when the answering node has no address for it (`:0`).
    pub addr: Option<SocketAddr>,
    /// The address text exactly as shown before `@`, useful when the IP is empty.
    pub raw_addr: String,
    /// Cluster bus port.
    pub bus_port: Option<u16>,
    /// `cluster-announce-hostname`, if the node announces one.
    pub hostname: Option<String>,
    /// The flags column.
    pub flags: NodeFlags,
    /// For a replica, the id of its master.
    pub master_id: Option<NodeId>,
    /// When the last unacknowledged PING was sent (unix ms), 0 if none is pending.
    pub ping_sent_ms: u64,
    /// When the last PONG was received (unix ms).
    pub pong_recv_ms: u64,
    /// The node's configEpoch as known by the answering node.
    pub config_epoch: u64,
    /// Whether the answering node's bus link to this node is up.
    pub link_connected: bool,
    /// Slots the answering node believes this node serves.
    pub slots: Vec<SlotRange>,
    /// Open-slot markers (only ever present on the `myself` line).
    pub open_slots: Vec<(u16, OpenSlotState)>,
}

impl NodeEntry {
    /// Whether the node is a master (and not a replica).
    pub fn is_master(&self) -> bool {
        self.flags.master && !self.flags.replica
    }

    /// Whether the answering node reports this node unreachable on the cluster bus: flagged
    /// PFAIL/FAIL, its link down, or no address for it. The one definition both the planner
    /// ("who says it is gone") and the failover proof count.
    pub fn reports_unreachable(&self) -> bool {
        self.flags.failing() || !self.link_connected || self.flags.noaddr || self.addr.is_none()
    }

    /// Number of slots the node serves.
    pub fn slot_count(&self) -> usize {
        self.slots.iter().map(SlotRange::len).sum()
    }

    /// Whether the node serves `slot`.
    pub fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|r| r.contains(slot))
    }

    /// The open state of `slot` on this node, if any.
    pub fn open_state(&self, slot: u16) -> Option<&OpenSlotState> {
        self.open_slots
            .iter()
            .find(|(s, _)| *s == slot)
            .map(|(_, state)| state)
    }
}

/// Parses the whole `CLUSTER NODES` reply. Blank lines are skipped; any malformed line fails the
/// whole reply, because acting on a partial view of the cluster is worse than retrying.
pub fn parse_cluster_nodes(text: &str) -> Result<Vec<NodeEntry>, ParseError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(parse_line)
        .collect()
}

/// Parses one line of `CLUSTER NODES`.
pub fn parse_line(line: &str) -> Result<NodeEntry, ParseError> {
    const WHAT: &str = "CLUSTER NODES line";
    let mut fields = line.split(' ').filter(|f| !f.is_empty());
    let mut next = |name: &str| {
        fields
            .next()
            .ok_or_else(|| ParseError::new(WHAT, format!("missing {name} in {line:?}")))
    };
    let id: NodeId = next("id")?
        .parse()
        .map_err(|e| ParseError::new(WHAT, format!("{e}")))?;
    let (addr, raw_addr, bus_port, hostname) = parse_address(next("address")?)?;
    let flags = NodeFlags::parse(next("flags")?);
    let master_id = match next("master")? {
        "-" => None,
        m => Some(
            m.parse()
                .map_err(|e| ParseError::new(WHAT, format!("master: {e}")))?,
        ),
    };
    let ping_sent_ms = parse_u64(next("ping-sent")?, "ping-sent")?;
    let pong_recv_ms = parse_u64(next("pong-recv")?, "pong-recv")?;
    let config_epoch = parse_u64(next("config-epoch")?, "config-epoch")?;
    let link_connected = match next("link-state")? {
        "connected" => true,
        "disconnected" => false,
        other => return Err(ParseError::new(WHAT, format!("link state {other:?}"))),
    };
    let mut slots = Vec::new();
    let mut open_slots = Vec::new();
    for token in fields {
        if let Some(marker) = token.strip_prefix('[') {
            open_slots.push(parse_open_slot(marker)?);
        } else {
            slots.push(parse_slot_range(token)?);
        }
    }
    Ok(NodeEntry {
        id,
        addr,
        raw_addr,
        bus_port,
        hostname,
        flags,
        master_id,
        ping_sent_ms,
        pong_recv_ms,
        config_epoch,
        link_connected,
        slots,
        open_slots,
    })
}

type ParsedAddress = (Option<SocketAddr>, String, Option<u16>, Option<String>);

fn parse_address(field: &str) -> Result<ParsedAddress, ParseError> {
    const WHAT: &str = "CLUSTER NODES address";
    let (endpoint, hostname) = match field.split_once(',') {
        Some((e, h)) if !h.is_empty() => (e, Some(h.to_owned())),
        Some((e, _)) => (e, None),
        None => (field, None),
    };
    let (host_port, bus_port) = match endpoint.split_once('@') {
        Some((hp, bus)) => {
            let bus: u16 = bus
                .parse()
                .map_err(|_| ParseError::new(WHAT, format!("bus port in {field:?}")))?;
            (hp, (bus != 0).then_some(bus))
        }
        None => (endpoint, None),
    };
    // IPv6 addresses are printed without brackets, so the port is after the last colon.
    let (ip, port) = host_port
        .rsplit_once(':')
        .ok_or_else(|| ParseError::new(WHAT, format!("no port in {field:?}")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| ParseError::new(WHAT, format!("port in {field:?}")))?;
    let addr = if ip.is_empty() || port == 0 {
        None
    } else {
        let ip: IpAddr = ip
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| ParseError::new(WHAT, format!("ip in {field:?}")))?;
        Some(SocketAddr::new(ip, port))
    };
    Ok((addr, host_port.to_owned(), bus_port, hostname))
}

fn parse_u64(field: &str, what: &'static str) -> Result<u64, ParseError> {
    field
        .parse()
        .map_err(|_| ParseError::new(what, format!("not a number: {field:?}")))
}

fn parse_slot(field: &str) -> Result<u16, ParseError> {
    match field.parse::<u16>() {
        Ok(s) if s < SLOT_COUNT => Ok(s),
        _ => Err(ParseError::new("slot", format!("invalid slot {field:?}"))),
    }
}

/// Parses `N` or `N-M`.
pub fn parse_slot_range(token: &str) -> Result<SlotRange, ParseError> {
    let (start, end) = match token.split_once('-') {
        Some((a, b)) => (parse_slot(a)?, parse_slot(b)?),
        None => {
            let s = parse_slot(token)?;
            (s, s)
        }
    };
    SlotRange::new(start, end).map_err(|e| ParseError::new("slot range", e.to_string()))
}

/// Parses the inside of `[N->-id]` or `[N-<-id]` (after the opening bracket).
fn parse_open_slot(marker: &str) -> Result<(u16, OpenSlotState), ParseError> {
    const WHAT: &str = "open slot marker";
    let inner = marker
        .strip_suffix(']')
        .ok_or_else(|| ParseError::new(WHAT, format!("unterminated {marker:?}")))?;
    let (slot, state) = if let Some((slot, id)) = inner.split_once("->-") {
        let to = id
            .parse()
            .map_err(|e| ParseError::new(WHAT, format!("{e}")))?;
        (slot, OpenSlotState::Migrating { to })
    } else if let Some((slot, id)) = inner.split_once("-<-") {
        let from = id
            .parse()
            .map_err(|e| ParseError::new(WHAT, format!("{e}")))?;
        (slot, OpenSlotState::Importing { from })
    } else {
        return Err(ParseError::new(WHAT, format!("unknown marker {marker:?}")));
    };
    Ok((parse_slot(slot)?, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,redis-3.svc slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail? - 1426238318243 1426238316000 3 disconnected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [93->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f] [77-<-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
6ec23923021cf3ffec47632106199cb7f496ce01 :0@0 master,fail,noaddr - 1426238318243 1426238316000 0 disconnected
";

    #[test]
    fn parses_sample() {
        let nodes = parse_cluster_nodes(SAMPLE).unwrap();
        assert_eq!(nodes.len(), 5);
        let replica = &nodes[0];
        assert!(replica.flags.replica && !replica.is_master());
        assert_eq!(replica.hostname.as_deref(), Some("redis-3.svc"));
        assert_eq!(replica.bus_port, Some(31004));
        assert_eq!(
            replica.master_id.as_ref().unwrap().as_str(),
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"
        );
        assert!(nodes[2].flags.pfail && !nodes[2].link_connected);
        let me = &nodes[3];
        assert!(me.flags.myself && me.is_master());
        assert_eq!(me.slot_count(), 5461);
        assert_eq!(me.open_slots.len(), 2);
        assert!(matches!(
            me.open_state(93),
            Some(OpenSlotState::Migrating { .. })
        ));
        assert!(matches!(
            me.open_state(77),
            Some(OpenSlotState::Importing { .. })
        ));
        assert!(nodes[4].addr.is_none() && nodes[4].flags.noaddr && nodes[4].flags.fail);
    }

    #[test]
    fn parses_ipv6_and_rejects_garbage() {
        let line = "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca ::1:30001@31001 myself,master - 0 0 1 connected 0";
        let node = parse_line(line).unwrap();
        assert_eq!(node.addr.unwrap().port(), 30001);
        assert!(node.addr.unwrap().ip().is_ipv6());
        for bad in [
            "short",
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 1.2.3.4:1@2 master - 0 0 x connected",
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 1.2.3.4:1@2 master - 0 0 1 maybe",
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 1.2.3.4:1@2 master - 0 0 1 connected 16384",
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 1.2.3.4:1@2 master - 0 0 1 connected 5-3",
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 1.2.3.4:1@2 master - 0 0 1 connected [5->-x]",
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca nohost master - 0 0 1 connected",
        ] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
    }
}

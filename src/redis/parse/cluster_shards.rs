//! `CLUSTER SHARDS` (Redis 7.0): per shard, its slot ranges and its nodes with role,
//! replication offset and health. In RESP2 every map is a flat array of alternating keys and
//! values.

use redis_protocol::resp2::types::BytesFrame;

use crate::redis::ids::{NodeId, SLOT_COUNT, SlotRange};
use crate::redis::parse::ParseError;

/// `health` of a node in CLUSTER SHARDS. Redis 7.0.15 reports "online", "fail" or "loading"
/// (the docs say "failed"; both are accepted). PFAIL is not reported here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardNodeHealth {
    /// Serving.
    Online,
    /// Marked FAIL.
    Failed,
    /// A replica that has not completed a sync (offset 0).
    Loading,
    /// A value this parser does not know.
    Other(String),
}

/// One node of a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardNode {
    /// The node id.
    pub id: NodeId,
    /// The announced IP.
    pub ip: Option<String>,
    /// The endpoint clients are redirected to (IP or hostname, per configuration).
    pub endpoint: Option<String>,
    /// The announced hostname.
    pub hostname: Option<String>,
    /// The plain-text port.
    pub port: Option<u16>,
    /// The TLS port.
    pub tls_port: Option<u16>,
    /// True for the shard's master.
    pub is_master: bool,
    /// The node's replication offset.
    pub replication_offset: u64,
    /// The node's health.
    pub health: ShardNodeHealth,
}

/// One shard: its slots and its nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// The slots the shard serves.
    pub slots: Vec<SlotRange>,
    /// The master and its replicas.
    pub nodes: Vec<ShardNode>,
}

const WHAT: &str = "CLUSTER SHARDS";

/// Parses the reply frame of `CLUSTER SHARDS`.
pub fn parse_cluster_shards(frame: &BytesFrame) -> Result<Vec<Shard>, ParseError> {
    let BytesFrame::Array(shards) = frame else {
        return Err(ParseError::new(WHAT, "reply is not an array"));
    };
    shards.iter().map(parse_shard).collect()
}

fn parse_shard(frame: &BytesFrame) -> Result<Shard, ParseError> {
    let mut slots = None;
    let mut nodes = None;
    for (key, value) in pairs(frame)? {
        match key.as_str() {
            "slots" => slots = Some(parse_slots(value)?),
            "nodes" => {
                let BytesFrame::Array(items) = value else {
                    return Err(ParseError::new(WHAT, "nodes is not an array"));
                };
                nodes = Some(items.iter().map(parse_node).collect::<Result<_, _>>()?);
            }
            _ => {}
        }
    }
    Ok(Shard {
        slots: slots.ok_or_else(|| ParseError::new(WHAT, "shard without slots"))?,
        nodes: nodes.ok_or_else(|| ParseError::new(WHAT, "shard without nodes"))?,
    })
}

fn parse_slots(frame: &BytesFrame) -> Result<Vec<SlotRange>, ParseError> {
    let BytesFrame::Array(items) = frame else {
        return Err(ParseError::new(WHAT, "slots is not an array"));
    };
    if items.len() % 2 != 0 {
        return Err(ParseError::new(WHAT, "odd number of slot bounds"));
    }
    items
        .chunks_exact(2)
        .map(|pair| match pair {
            [a, b] => {
                SlotRange::new(slot(a)?, slot(b)?).map_err(|e| ParseError::new(WHAT, e.to_string()))
            }
            _ => Err(ParseError::new(WHAT, "slot pair")),
        })
        .collect()
}

fn slot(frame: &BytesFrame) -> Result<u16, ParseError> {
    match integer(frame)? {
        n if (0..i64::from(SLOT_COUNT)).contains(&n) => {
            u16::try_from(n).map_err(|_| ParseError::new(WHAT, "slot"))
        }
        n => Err(ParseError::new(WHAT, format!("slot {n} out of range"))),
    }
}

fn parse_node(frame: &BytesFrame) -> Result<ShardNode, ParseError> {
    let mut id = None;
    let mut ip = None;
    let mut endpoint = None;
    let mut hostname = None;
    let mut port_plain = None;
    let mut tls_port = None;
    let mut role = None;
    let mut replication_offset = 0;
    let mut health = None;
    for (key, value) in pairs(frame)? {
        match key.as_str() {
            "id" => {
                id = Some(
                    text(value)?
                        .parse::<NodeId>()
                        .map_err(|e| ParseError::new(WHAT, e.to_string()))?,
                );
            }
            "ip" => ip = Some(text(value)?),
            "endpoint" => endpoint = Some(text(value)?),
            "hostname" => hostname = Some(text(value)?),
            "port" => port_plain = Some(port(value)?),
            "tls-port" => tls_port = Some(port(value)?),
            "role" => role = Some(text(value)?),
            "replication-offset" => {
                replication_offset = u64::try_from(integer(value)?)
                    .map_err(|_| ParseError::new(WHAT, "negative replication-offset"))?;
            }
            "health" => health = Some(text(value)?),
            _ => {}
        }
    }
    let is_master = match role.as_deref() {
        Some("master") => true,
        Some("replica") => false,
        other => return Err(ParseError::new(WHAT, format!("role {other:?}"))),
    };
    let health = match health.as_deref() {
        Some("online") => ShardNodeHealth::Online,
        Some("fail" | "failed") => ShardNodeHealth::Failed,
        Some("loading") => ShardNodeHealth::Loading,
        Some(other) => ShardNodeHealth::Other(other.to_owned()),
        None => return Err(ParseError::new(WHAT, "node without health")),
    };
    Ok(ShardNode {
        id: id.ok_or_else(|| ParseError::new(WHAT, "node without id"))?,
        ip,
        endpoint,
        hostname,
        port: port_plain,
        tls_port,
        is_master,
        replication_offset,
        health,
    })
}

fn pairs(frame: &BytesFrame) -> Result<Vec<(String, &BytesFrame)>, ParseError> {
    let BytesFrame::Array(items) = frame else {
        return Err(ParseError::new(WHAT, "map is not an array"));
    };
    if items.len() % 2 != 0 {
        return Err(ParseError::new(WHAT, "map with odd length"));
    }
    items
        .chunks_exact(2)
        .map(|pair| match pair {
            [k, v] => Ok((text(k)?, v)),
            _ => Err(ParseError::new(WHAT, "pair")),
        })
        .collect()
}

fn text(frame: &BytesFrame) -> Result<String, ParseError> {
    match frame {
        BytesFrame::BulkString(b) | BytesFrame::SimpleString(b) => std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| ParseError::new(WHAT, "non-UTF-8 string")),
        _ => Err(ParseError::new(WHAT, "expected a string")),
    }
}

fn integer(frame: &BytesFrame) -> Result<i64, ParseError> {
    match frame {
        BytesFrame::Integer(i) => Ok(*i),
        _ => Err(ParseError::new(WHAT, "expected an integer")),
    }
}

fn port(frame: &BytesFrame) -> Result<u16, ParseError> {
    u16::try_from(integer(frame)?).map_err(|_| ParseError::new(WHAT, "port out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn s(v: &str) -> BytesFrame {
        BytesFrame::BulkString(Bytes::copy_from_slice(v.as_bytes()))
    }

    fn node(id: &str, role: &str, offset: i64, health: &str) -> BytesFrame {
        BytesFrame::Array(vec![
            s("id"),
            s(id),
            s("port"),
            BytesFrame::Integer(30001),
            s("ip"),
            s("127.0.0.1"),
            s("endpoint"),
            s("127.0.0.1"),
            s("role"),
            s(role),
            s("replication-offset"),
            BytesFrame::Integer(offset),
            s("health"),
            s(health),
        ])
    }

    #[test]
    fn parses_sample() {
        let reply = BytesFrame::Array(vec![BytesFrame::Array(vec![
            s("slots"),
            BytesFrame::Array(vec![BytesFrame::Integer(0), BytesFrame::Integer(5460)]),
            s("nodes"),
            BytesFrame::Array(vec![
                node(
                    "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca",
                    "master",
                    72156,
                    "online",
                ),
                node(
                    "07c37dfeb235213a872192d90877d0cd55635b91",
                    "replica",
                    0,
                    "loading",
                ),
            ]),
        ])]);
        let shards = parse_cluster_shards(&reply).unwrap();
        assert_eq!(shards.len(), 1);
        assert_eq!(
            shards[0].slots,
            vec![SlotRange {
                start: 0,
                end: 5460
            }]
        );
        assert!(shards[0].nodes[0].is_master);
        assert_eq!(shards[0].nodes[0].replication_offset, 72156);
        assert_eq!(shards[0].nodes[1].health, ShardNodeHealth::Loading);
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(parse_cluster_shards(&BytesFrame::Integer(1)).is_err());
        let odd = BytesFrame::Array(vec![BytesFrame::Array(vec![s("slots")])]);
        assert!(parse_cluster_shards(&odd).is_err());
        let bad_slot = BytesFrame::Array(vec![BytesFrame::Array(vec![
            s("slots"),
            BytesFrame::Array(vec![BytesFrame::Integer(0), BytesFrame::Integer(99999)]),
            s("nodes"),
            BytesFrame::Array(vec![]),
        ])]);
        assert!(parse_cluster_shards(&bad_slot).is_err());
    }
}

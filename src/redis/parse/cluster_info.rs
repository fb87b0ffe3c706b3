//! `CLUSTER INFO`: `key:value` lines describing the answering node's view of the cluster.

use std::collections::BTreeMap;

use crate::redis::parse::ParseError;

/// The fields of `CLUSTER INFO` the operator uses, plus every field as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    /// `cluster_state:ok` (false for `fail`).
    pub state_ok: bool,
    /// Slots assigned to some node.
    pub slots_assigned: u64,
    /// Slots whose owner is not PFAIL or FAIL.
    pub slots_ok: u64,
    /// Slots owned by a PFAIL node.
    pub slots_pfail: u64,
    /// Slots owned by a FAIL node.
    pub slots_fail: u64,
    /// Nodes known, including handshake ones.
    pub known_nodes: u64,
    /// Masters that serve at least one slot (the voters).
    pub size: u64,
    /// The cluster-wide current epoch as seen by this node.
    pub current_epoch: u64,
    /// This node's config epoch.
    pub my_epoch: u64,
    /// Every `key:value` pair, including ones without a typed field.
    pub fields: BTreeMap<String, String>,
}

/// Parses the `CLUSTER INFO` reply. `cluster_state` is required; missing counters read as 0,
/// malformed ones are errors.
pub fn parse_cluster_info(text: &str) -> Result<ClusterInfo, ParseError> {
    let fields = parse_key_values(text);
    let state_ok = match fields.get("cluster_state").map(String::as_str) {
        Some("ok") => true,
        Some("fail") => false,
        Some(other) => {
            return Err(ParseError::new(
                "CLUSTER INFO",
                format!("cluster_state {other:?}"),
            ));
        }
        None => return Err(ParseError::new("CLUSTER INFO", "no cluster_state")),
    };
    let num = |key: &'static str| -> Result<u64, ParseError> {
        match fields.get(key) {
            None => Ok(0),
            Some(v) => v
                .parse()
                .map_err(|_| ParseError::new(key, format!("not a number: {v:?}"))),
        }
    };
    Ok(ClusterInfo {
        state_ok,
        slots_assigned: num("cluster_slots_assigned")?,
        slots_ok: num("cluster_slots_ok")?,
        slots_pfail: num("cluster_slots_pfail")?,
        slots_fail: num("cluster_slots_fail")?,
        known_nodes: num("cluster_known_nodes")?,
        size: num("cluster_size")?,
        current_epoch: num("cluster_current_epoch")?,
        my_epoch: num("cluster_my_epoch")?,
        fields,
    })
}

/// Splits `key:value` lines (as in CLUSTER INFO and INFO), skipping blanks and `#` headers.
pub fn parse_key_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sample() {
        let text = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:6\r\ncluster_size:3\r\ncluster_current_epoch:6\r\ncluster_my_epoch:2\r\ncluster_stats_messages_sent:1483972\r\n";
        let info = parse_cluster_info(text).unwrap();
        assert!(info.state_ok);
        assert_eq!(info.slots_ok, 16384);
        assert_eq!(info.size, 3);
        assert_eq!(info.my_epoch, 2);
        assert_eq!(info.fields["cluster_stats_messages_sent"], "1483972");
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse_cluster_info("").is_err());
        assert!(parse_cluster_info("cluster_state:maybe").is_err());
        assert!(parse_cluster_info("cluster_state:ok\ncluster_size:-1").is_err());
    }
}

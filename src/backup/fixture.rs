//! Test fixtures: cluster views built from CLUSTER NODES and INFO texts.

use crate::redis::model::{ClusterView, NodeObservation};

/// One node of a fixture: `(id digit, ip last octet, master id digit or None, slots, offset, link up)`.
pub struct N {
    pub id: char,
    pub ip: u8,
    pub master: Option<char>,
    pub slots: &'static str,
    pub offset: u64,
    pub link_up: bool,
}

pub fn id(c: char) -> String {
    std::iter::repeat_n(c, 40).collect()
}

pub fn view(nodes: &[N]) -> ClusterView {
    let line = |me: &N, n: &N| {
        let flags = match (me.id == n.id, n.master.is_some()) {
            (true, false) => "myself,master",
            (true, true) => "myself,slave",
            (false, false) => "master",
            (false, true) => "slave",
        };
        format!(
            "{} 10.0.0.{}:6379@16379 {flags} {} 0 0 1 connected {}",
            id(n.id),
            n.ip,
            n.master.map_or("-".to_string(), id),
            n.slots
        )
    };
    let mut view = ClusterView::default();
    for me in nodes {
        let text: Vec<String> = nodes.iter().map(|n| line(me, n)).collect();
        let replication = match me.master {
            None => format!(
                "role:master\r\nmaster_replid:r\r\nmaster_repl_offset:{}\r\n",
                me.offset
            ),
            Some(m) => {
                let leader = nodes.iter().find(|n| n.id == m).unwrap();
                format!(
                    "role:slave\r\nmaster_host:10.0.0.{}\r\nmaster_port:6379\r\nmaster_link_status:{}\r\nmaster_sync_in_progress:0\r\nslave_repl_offset:{}\r\nmaster_replid:r\r\nmaster_repl_offset:{}\r\n",
                    leader.ip,
                    if me.link_up { "up" } else { "down" },
                    me.offset,
                    me.offset
                )
            }
        };
        view.nodes.push(
            NodeObservation::from_replies(
                format!("10.0.0.{}:6379", me.ip).parse().unwrap(),
                &text.join("\n"),
                "cluster_state:ok\r\n",
                &replication,
                Some(0),
            )
            .unwrap(),
        );
    }
    view
}

pub fn three_by_one(f_offset: u64, link_up: bool) -> Vec<N> {
    vec![
        N {
            id: 'a',
            ip: 1,
            master: None,
            slots: "0-5460",
            offset: 100,
            link_up: true,
        },
        N {
            id: 'b',
            ip: 2,
            master: None,
            slots: "5461-10922",
            offset: 200,
            link_up: true,
        },
        N {
            id: 'c',
            ip: 3,
            master: None,
            slots: "10923-16383",
            offset: 300,
            link_up: true,
        },
        N {
            id: 'd',
            ip: 4,
            master: Some('a'),
            slots: "",
            offset: f_offset,
            link_up,
        },
        N {
            id: 'e',
            ip: 5,
            master: Some('b'),
            slots: "",
            offset: 200,
            link_up: true,
        },
        N {
            id: 'f',
            ip: 6,
            master: Some('c'),
            slots: "",
            offset: 300,
            link_up: true,
        },
    ]
}

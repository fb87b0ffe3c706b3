//! `scripts/start-gate.sh` run by `sh` against a temporary data directory and a stand-in
//! `redis-cli` that answers with each peer's canned CLUSTER NODES and DBSIZE: when a leader
//! restarted without its data holds its start, and when it is released.

use std::path::Path;
use std::process::Command;

use super::hash;

const ME: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const FOLLOWER: &str = "ffffffffffffffffffffffffffffffffffffffff";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccccccccccc";

/// The leader's nodes.conf as it died: it led 0-5460 at config epoch 8, its follower at
/// 10.0.0.2, the other leaders at 10.0.0.3 and 10.0.0.4.
fn nodes_conf() -> String {
    format!(
        "{ME} 10.0.0.1:6379@16379 myself,master - 0 0 8 connected 0-5460\n\
         {FOLLOWER} 10.0.0.2:6379@16379 slave {ME} 0 0 8 connected\n\
         {B} 10.0.0.3:6379@16379 master - 0 0 2 connected 5461-10922\n\
         {C} 10.0.0.4:6379@16379 master - 0 0 3 connected 10923-16383\n\
         vars currentEpoch 8 lastVoteEpoch 0\n"
    )
}

/// CLUSTER NODES as a peer sees it now: the follower leads 0-5460 at `epoch` (None: the
/// leader still does, the follower follows it), or the leader follows the follower
/// (`demoted`).
fn view(myself: &str, follower_leads: Option<u64>, demoted: bool) -> String {
    let mark = |id: &str| if id == myself { "myself," } else { "" };
    let mut lines = vec![
        format!(
            "{B} 10.0.0.3:6379@16379 {}master - 0 0 2 connected 5461-10922",
            mark(B)
        ),
        format!(
            "{C} 10.0.0.4:6379@16379 {}master - 0 0 3 connected 10923-16383",
            mark(C)
        ),
    ];
    match follower_leads {
        Some(epoch) => {
            lines.push(format!(
                "{FOLLOWER} 10.0.0.2:6379@16379 {}master - 0 0 {epoch} connected 0-5460",
                mark(FOLLOWER)
            ));
            let me = if demoted {
                format!("slave {FOLLOWER}")
            } else {
                "master,fail -".to_owned()
            };
            lines.push(format!("{ME} 10.0.0.1:6379@16379 {me} 0 0 8 disconnected"));
        }
        None => {
            lines.push(format!(
                "{FOLLOWER} 10.0.0.2:6379@16379 {}slave {ME} 0 0 8 connected",
                mark(FOLLOWER)
            ));
            lines.push(format!(
                "{ME} 10.0.0.1:6379@16379 master,fail? - 0 0 8 disconnected 0-5460"
            ));
        }
    }
    lines.join("\n") + "\n"
}

/// One restart: what the follower and the other leaders see (the follower's epoch if it
/// leads, whether the restarted leader is listed as its follower), and the follower's DBSIZE.
struct Peers {
    follower: (Option<u64>, bool),
    others: (Option<u64>, bool),
    follower_keys: u64,
}

const FAKE_CLI: &str = r#"#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in
    -h) ip=$2; shift 2 ;;
    -p) shift 2 ;;
    --*) shift ;;
    *) break ;;
  esac
done
case "$*" in
  "cluster nodes") cat "$FAKE_DIR/nodes-$ip" 2>/dev/null ;;
  dbsize) cat "$FAKE_DIR/dbsize-$ip" 2>/dev/null ;;
esac
"#;

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// Runs the gate for 2 s; `Some(reason)` if it released the start, `None` if it still holds.
fn released(peers: &Peers) -> Option<String> {
    let dir = std::env::temp_dir().join(format!(
        "start-gate-{}-{}",
        std::process::id(),
        hash(&format!(
            "{:?}{:?}{}",
            peers.follower, peers.others, peers.follower_keys
        ))
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let (data, bin, fake) = (dir.join("data"), dir.join("bin"), dir.join("fake"));
    for d in [&data, &bin, &fake] {
        std::fs::create_dir_all(d).unwrap();
    }
    write(&data.join("nodes.conf"), &nodes_conf());
    let cli = bin.join("redis-cli");
    write(&cli, FAKE_CLI);
    Command::new("chmod").arg("+x").arg(&cli).status().unwrap();
    let (leads, demoted) = peers.follower;
    write(
        &fake.join("nodes-10.0.0.2"),
        &view(FOLLOWER, leads, demoted),
    );
    write(
        &fake.join("dbsize-10.0.0.2"),
        &peers.follower_keys.to_string(),
    );
    let (leads, demoted) = peers.others;
    write(&fake.join("nodes-10.0.0.3"), &view(B, leads, demoted));
    write(&fake.join("nodes-10.0.0.4"), &view(C, leads, demoted));
    let script = include_str!("../scripts/start-gate.sh")
        .replace("/data/", &format!("{}/", data.display()))
        .replace("/etc/redis-auth/password", "/nonexistent");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new("timeout")
        .args(["2", "sh", "-euc", &script])
        .env("PATH", path)
        .env("FAKE_DIR", &fake)
        .env("REDIS_PASSWORD", "x")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    match out.status.code() {
        Some(124) => None,
        Some(0) => Some(
            stdout
                .lines()
                .find_map(|l| l.strip_prefix("start gate: starting ("))
                .unwrap_or_else(|| panic!("released without a reason: {stdout}"))
                .strip_suffix(')')
                .unwrap_or_default()
                .to_owned(),
        ),
        other => panic!(
            "gate failed ({other:?}): {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn a_leader_without_its_data_starts_only_once_a_follower_outranks_it() {
    // (case, peers, released with a reason containing this; None: holds)
    let cases: Vec<(&str, Peers, Option<&str>)> = vec![
        (
            "nothing happened yet: the follower still follows it and holds the data",
            Peers {
                follower: (None, false),
                others: (None, false),
                follower_keys: 300,
            },
            None,
        ),
        (
            "a hollow promotion: the follower claims the slots at its old epoch 7, below 8",
            Peers {
                follower: (Some(7), false),
                others: (None, false),
                follower_keys: 300,
            },
            None,
        ),
        (
            "a real takeover: the follower serves the slots at epoch 9",
            Peers {
                follower: (Some(9), false),
                others: (Some(9), false),
                follower_keys: 300,
            },
            Some("a follower took over (slot 0 is served at config epoch 9, above this node's 8)"),
        ),
        (
            "a peer already lists it as a follower of the new leader",
            Peers {
                follower: (Some(9), true),
                others: (None, false),
                follower_keys: 300,
            },
            Some("a follower took over"),
        ),
        (
            "its follower holds no keys: nothing to protect",
            Peers {
                follower: (None, false),
                others: (None, false),
                follower_keys: 0,
            },
            Some("no follower holds data"),
        ),
    ];
    for (case, peers, want) in cases {
        let got = released(&peers);
        match want {
            None => assert_eq!(got, None, "{case}: must hold"),
            Some(reason) => assert!(
                got.as_deref().is_some_and(|g| g.contains(reason)),
                "{case}: released {got:?}, want {reason:?}"
            ),
        }
    }
}

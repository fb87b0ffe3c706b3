//! The acknowledged-write checker (`tests/support/ack_writer.rs`): its pure parts, and a run
//! against a real 3 × 1 cluster of redis-server processes with a graceful failover mid-run.

#![allow(clippy::unwrap_used, clippy::panic)]

mod support {
    pub mod ack_writer;
    pub mod redis_cluster;
    pub mod redis_procs;
}

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use redis_operator::redis::command::Cmd;
use redis_operator::redis::parse::cluster_nodes::parse_cluster_nodes;
use redis_operator::redis::{AdminOptions, Client, RedisError, SlotRange, reply};
use support::ack_writer::*;
use support::redis_cluster::build;

#[test]
fn keyslot_matches_redis() {
    assert_eq!(keyslot(b"foo"), 12182);
    assert_eq!(
        keyslot(b"{user1000}.following"),
        keyslot(b"{user1000}.followers")
    );
    assert_eq!(keyslot(b"{user1000}.following"), keyslot(b"user1000"));
    // An empty tag hashes the whole key.
    assert_eq!(keyslot(b"{}foo"), redis_protocol::redis_keyslot(b"{}foo"));
    assert_eq!(keyslot(key_of("t", 7).as_bytes()), keyslot(b"t"));
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn slot_map_keeps_redirects_newer_than_a_refresh() {
    let mut map = SlotMap::default();
    let old = addr("10.0.0.1:6379");
    let new = addr("10.0.0.2:6379");
    let mut owners = vec![Some(old); 16384];
    map.apply_topology(&owners, map.generation());
    assert_eq!(map.owner(5), Some(old));

    // A refresh fetched before the redirect must not undo it...
    let before = map.generation();
    map.apply_moved(5, new);
    assert_eq!(map.owner(5), Some(new));
    map.apply_topology(&owners, before);
    assert_eq!(map.owner(5), Some(new));
    assert_eq!(map.owner(6), Some(old));
    // ...one fetched after it may.
    map.apply_topology(&owners, map.generation());
    assert_eq!(map.owner(5), Some(old));

    // Slots nobody claims keep their owner.
    owners[7] = None;
    map.apply_topology(&owners, map.generation());
    assert_eq!(map.owner(7), Some(old));
    // An out-of-range slot is ignored, not a panic.
    map.apply_moved(20000, new);
    assert_eq!(map.owner(20000), None);
}

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccccccccccc";

#[test]
fn merge_prefers_the_highest_epoch_and_the_nodes_own_address() {
    // The old master A (epoch 1) still claims 0-8191 in a stale view; B was promoted
    // (epoch 3) and moved to a new IP, which only its own myself line shows.
    let stale = parse_cluster_nodes(&format!(
        "{A} 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-8191\n\
         {B} 10.0.0.2:6379@16379 slave {A} 0 0 1 connected\n\
         {C} 10.0.0.3:6379@16379 master - 0 0 2 connected 8192-16383\n"
    ))
    .unwrap();
    let fresh = parse_cluster_nodes(&format!(
        "{A} 10.0.0.1:6379@16379 slave,fail {B} 0 0 1 disconnected\n\
         {B} 10.0.0.9:6379@16379 myself,master - 0 0 3 connected 0-8191\n\
         {C} 10.0.0.3:6379@16379 master - 0 0 2 connected 8192-16383\n"
    ))
    .unwrap();
    for views in [vec![stale.clone(), fresh.clone()], vec![fresh, stale]] {
        let t = merge_views(&views);
        assert!(t.covers_all());
        assert_eq!(t.owners[0], Some(addr("10.0.0.9:6379")));
        assert_eq!(t.owners[8191], Some(addr("10.0.0.9:6379")));
        assert_eq!(t.owners[8192], Some(addr("10.0.0.3:6379")));
        assert_eq!(t.masters.len(), 2);
        assert_eq!(t.masters[0].id, B);
        assert_eq!(t.masters[0].ranges, vec![SlotRange::new(0, 8191).unwrap()]);
        // Every address any view mentions is a seed, the stale one included.
        assert!(t.addrs.contains(&addr("10.0.0.2:6379")));
        assert!(t.addrs.contains(&addr("10.0.0.9:6379")));
    }
    let partial = parse_cluster_nodes(&format!(
        "{C} 10.0.0.3:6379@16379 myself,master - 0 0 2 connected 8192-16383\n\
         {A} :0@0 master,noaddr - 0 0 1 disconnected 0-100\n"
    ))
    .unwrap();
    let t = merge_views(&[partial]);
    assert!(!t.covers_all());
    assert_eq!(t.owners[0], None, "no address known for A");
    assert_eq!(t.addrs.len(), 1);
}

#[test]
fn tags_land_in_every_range() {
    let masters = vec![
        MasterSlots {
            id: A.into(),
            addr: addr("10.0.0.1:6379"),
            ranges: vec![SlotRange::new(0, 5460).unwrap(), SlotRange::single(9000)],
        },
        MasterSlots {
            id: B.into(),
            addr: addr("10.0.0.2:6379"),
            ranges: vec![SlotRange::new(5461, 8999).unwrap()],
        },
    ];
    let tags = choose_tags("run", &masters, 4);
    assert_eq!(tags.len(), 3);
    assert_eq!(tags[1].1, 9000);
    for (tag, slot, master) in &tags {
        assert_eq!(keyslot(tag.as_bytes()), *slot);
        assert!(masters[*master].ranges.iter().any(|r| r.contains(*slot)));
    }
    assert_eq!(choose_tags("run", &masters, 1).len(), 2);
}

#[test]
fn outage_is_the_longest_gap_between_acknowledgements() {
    let ms = Duration::from_millis;
    assert_eq!(longest_gap(&[]), None);
    assert_eq!(longest_gap(&[ms(5)]), None);
    let g = longest_gap(&[ms(0), ms(10), ms(20), ms(2020), ms(2030), ms(2500)]).unwrap();
    assert_eq!(
        g,
        Gap {
            from: ms(20),
            to: ms(2020)
        }
    );
    assert_eq!(g.len(), ms(2000));
    // The first of equal gaps is kept.
    let g = longest_gap(&[ms(0), ms(100), ms(200)]).unwrap();
    assert_eq!(g.from, ms(0));
    let mut t = OutageTracker::default();
    t.record(ms(3));
    t.record(ms(9));
    assert_eq!((t.first, t.last), (Some(ms(3)), Some(ms(9))));
}

async fn role(addr: SocketAddr, opts: &AdminOptions) -> Option<String> {
    let mut c = Client::connect(addr, opts).await.ok()?;
    let cmd = Cmd::info("replication");
    let text = reply::text(&cmd, c.call(&cmd).await.ok()?).ok()?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("role:").map(str::to_owned))
}

async fn wait_until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let begun = Instant::now();
    while !check().await {
        assert!(begun.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn no_acknowledged_write_lost_across_a_graceful_failover() {
    let pass = "ack-pass";
    let opts = admin_options(
        pass,
        Duration::from_millis(1500),
        Duration::from_millis(1500),
    );
    let args = [
        "--cluster-node-timeout",
        "3000",
        "--requirepass",
        pass,
        "--masterauth",
        pass,
    ];
    let cluster = build("ackwriter", 23100, 3, 1, &args, opts.clone()).await;
    let writer = AckWriter::start(
        cluster.procs.addrs(),
        pass.to_owned(),
        AckWriterOptions {
            max_duration: Duration::from_secs(30),
            ..AckWriterOptions::default()
        },
    )
    .await
    .expect("writer starts");

    wait_until("acknowledged writes", Duration::from_secs(10), async || {
        writer.acknowledged() >= 150
    })
    .await;

    // Graceful failover of shard 1: its follower takes over, the old leader follows it.
    let follower = cluster.addr(&cluster.followers[1][0]);
    let old_leader = cluster.addr(&cluster.leaders[1]);
    let mut c = Client::connect(follower, &opts).await.unwrap();
    let cmd = Cmd::cluster("FAILOVER");
    reply::ok(&cmd, c.call(&cmd).await.unwrap()).unwrap();
    wait_until("roles swapped", Duration::from_secs(10), async || {
        role(follower, &opts).await.as_deref() == Some("master")
            && role(old_leader, &opts).await.as_deref() == Some("slave")
    })
    .await;
    let swapped_at = writer.elapsed();
    let acked_then = writer.acknowledged();
    wait_until(
        "writes after the failover",
        Duration::from_secs(10),
        async || writer.acknowledged() >= acked_then + 150,
    )
    .await;

    let mut report = writer.stop().await;
    report
        .read_back(&cluster.procs.addrs(), pass, &ReadBackOptions::default())
        .await;
    println!("{report}");
    report.verify().unwrap();
    assert_eq!(report.lost(), Some(0));
    assert_eq!(report.tags.len(), 3, "one tag per master");
    for t in &report.tags {
        assert!(t.acknowledged() > 0, "{t:?}");
    }
    let moved = report.tags.iter().find(|t| t.master == 1).unwrap();
    assert_eq!(moved.first_owner, old_leader);
    // The writer learns the new leader either from a MOVED or, when the failover unblocks its
    // WAIT with an error ("UNBLOCKED ... master -> replica"), from the topology refresh that
    // error triggers; either way shard 1's writes were acknowledged after the swap (below).
    assert!(
        moved.moved > 0 || moved.other_errors > 0,
        "the writer saw the failover (a MOVED or the unblocked WAIT): {moved:?}"
    );
    assert!(
        moved.outage.last.unwrap() > swapped_at,
        "shard 1 acknowledged writes after the failover"
    );
    assert!(report.acknowledged() + report.indeterminate() == report.attempted());

    // The read-back notices a deleted and an overwritten acknowledged key...
    let t0 = &report.tags[0];
    let gone = key_of(&t0.tag, t0.acked[0]);
    let changed = key_of(&t0.tag, t0.acked[1]);
    on_owner(&cluster.procs.addrs(), &opts, &Cmd::new("DEL").arg(&gone)).await;
    on_owner(
        &cluster.procs.addrs(),
        &opts,
        &Cmd::new("SET").arg(&changed).arg("other"),
    )
    .await;
    report
        .read_back(&cluster.procs.addrs(), pass, &ReadBackOptions::default())
        .await;
    let rb = report.read_back.clone().unwrap();
    assert_eq!((rb.missing, rb.wrong, rb.unverified), (1, 1, 0), "{report}");
    let err = report.verify().unwrap_err();
    assert!(err.contains("2 acknowledged writes lost"), "{err}");

    // ...and counts keys it cannot read as unverified, not as present or lost.
    let frozen = &cluster.procs.nodes[cluster.index(&cluster.leaders[2])];
    frozen.pause();
    report
        .read_back(
            &cluster.procs.addrs(),
            pass,
            &ReadBackOptions {
                deadline: Duration::from_secs(3),
                ..ReadBackOptions::default()
            },
        )
        .await;
    frozen.resume();
    let rb = report.read_back.clone().unwrap();
    let on_frozen = report.tags.iter().find(|t| t.master == 2).unwrap();
    assert_eq!(rb.unverified, on_frozen.acknowledged(), "{report}");
    assert_eq!((rb.missing, rb.wrong), (1, 1), "{report}");
    assert!(report.verify().unwrap_err().contains("unverified"));
}

/// Sends a single-key write to whichever node accepts it (the others answer MOVED).
async fn on_owner(addrs: &[SocketAddr], opts: &AdminOptions, cmd: &Cmd) {
    for addr in addrs {
        let mut c = Client::connect(*addr, opts).await.unwrap();
        match c.call(cmd).await {
            Ok(_) => return,
            Err(RedisError::Moved { .. }) => continue,
            Err(e) => panic!("{} on {addr}: {e}", cmd.describe()),
        }
    }
    panic!("no node accepted {}", cmd.describe());
}

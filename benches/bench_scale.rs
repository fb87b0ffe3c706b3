//! Scaling benchmark (issue 12): `leaders` 3 → 4 and 4 → 3 on the local cluster with
//! 1,000,000 keys of 16 bytes and 20 values of 1 MiB, the operator next to `redis-cli
//! --cluster` doing the same on an identical cluster.
//!
//! **Operator**: a fresh 3 × 1 RedisCluster (1Gi PVCs), loaded, then `spec.leaders: 4`; the
//! time runs from the patch until the cluster is `Ready` with the reshard done
//! (`status.reshard.progress == "100%"`, `toLeaders == 4`) and the recovery invariants for
//! 4 × 1 hold (new Pods scheduled, joined, their follower synced, slots moved, followers in
//! sync). Then `spec.leaders: 3` the same way (drained, members removed and forgotten).
//!
//! **redis-cli**: a fresh cluster the operator builds as 4 × 1 with the same spec; then the
//! operator is stopped for good, and (untimed) shard 3 is emptied (`rebalance --cluster-weight
//! <its master>=0`) and detached (`CLUSTER RESET HARD` on its two members, `CLUSTER FORGET` on
//! the others), leaving a 3 × 1 cluster and two empty, running Redis nodes — where a user with
//! two new Pods would stand. The same data is loaded. Timed 3 → 4: `redis-cli --cluster
//! add-node` (master), `add-node --cluster-slave --cluster-master-id`, `rebalance
//! --cluster-use-empty-masters`, and the new replica in sync. Timed 4 → 3: `rebalance
//! --cluster-weight <shard 3's master>=0`, then `del-node` of its replica and of it.
//!
//! Per step: wall time, the part spent moving slots (ours: from the first poll that sees the
//! slot distribution changed to the first that sees it final, polled every ~250 ms;
//! redis-cli: the `rebalance` command), the data keys moved (keys of the data set whose slot
//! changed shard), keys/s, every data key read back (lost asserted 0), and the longest stall
//! per shard of two writers running through the step (`SET`, and `SET` + `WAIT 1` whose
//! acknowledged keys are read back: lost asserted 0). Timings printed, never asserted. Rows go
//! to `BENCH_SCALE_OUT` (default `target/bench-scale.md`); `BENCH_SCALE_KEYS` and
//! `BENCH_SCALE_BIG` shrink the data set for development. `BENCH_SCALE_GRACE` sets the operator's
//! `spec.scaleInGracePeriod` (default 30s: a drained shard answers MOVED that long before its
//! Pods go, and the 4 → 3 waits for it).
//!
//! Runs alone on the local cluster: `make bench-scale`.

#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "../tests/kube_support/mod.rs"]
mod kube_support;
#[path = "../tests/support"]
mod support {
    pub mod ack_writer;
    pub mod bench;
    pub mod chaos;
    pub mod redis_data;
}

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_support::*;
use redis_operator::crd::RedisCluster;
use redis_operator::redis::AdminOptions;
use redis_operator::redis::ids::SLOT_COUNT;
use redis_operator::redis::model;
use redis_operator::redis::sync::{SyncBar, follower_in_sync};
use serde_json::{Value, json};
use support::ack_writer::{AckWriter, AckWriterHandle, AckWriterOptions, ReadBackOptions, keyslot};
use support::chaos::{acked_at_least, print_roles};
use support::redis_data::{DataClient, bench_dataset, env_usize};

const NAME: &str = "bench";
/// Creating a cluster, loading it, waiting for it to be Ready and in sync.
const SETUP: Duration = Duration::from_secs(300);
/// One scaling step.
const STEP: Duration = Duration::from_secs(900);

/// The data set, `BENCH_SCALE_KEYS` small keys and `BENCH_SCALE_BIG` values of 1 MiB.
fn dataset() -> Vec<(Bytes, Bytes)> {
    bench_dataset(
        env_usize("BENCH_SCALE_KEYS", 1_000_000),
        env_usize("BENCH_SCALE_BIG", 20),
    )
}

/// Data keys per slot.
fn keys_per_slot(data: &[(Bytes, Bytes)]) -> Vec<u64> {
    let mut n = vec![0u64; usize::from(SLOT_COUNT)];
    for (k, _) in data {
        n[usize::from(keyslot(k))] += 1;
    }
    n
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Options for the data connections: the cluster's password, room for 1 MiB values.
fn data_admin(pass: &str) -> AdminOptions {
    let mut o = member_admin(pass);
    o.timeouts.command = Duration::from_secs(30);
    o
}

/// One benchmark's world: a namespace with its own operator and a cluster.
struct World {
    client: Client,
    ns: TestNamespace,
    operator: Operator,
    pass: String,
    _cleanup: DeleteOnPanic,
}

/// The spec beyond the shape: PVCs, and `BENCH_SCALE_GRACE` as the scale-in grace period.
fn spec_extra() -> Value {
    match grace() {
        Some(g) => json!({"storage": {"size": "1Gi"}, "scaleInGracePeriod": g}),
        None => json!({"storage": {"size": "1Gi"}}),
    }
}

/// `BENCH_SCALE_GRACE`, if set.
fn grace() -> Option<String> {
    std::env::var("BENCH_SCALE_GRACE").ok()
}

impl World {
    async fn create(prefix: &str, shape: (usize, usize)) -> (Self, Members) {
        let client = client().await;
        let ns = TestNamespace::new(&client, prefix).await;
        let cleanup = DeleteOnPanic(ns.name.clone());
        let operator = Operator::start(&ns.name);
        let api: Api<RedisCluster> = Api::namespaced(client.clone(), &ns.name);
        api.create(
            &PostParams::default(),
            &cluster(NAME, shape.0 as i32, shape.1 as i32, spec_extra()),
        )
        .await
        .unwrap();
        wait_ready(&api, NAME, SETUP).await;
        let pass = password(&client, &ns.name, NAME).await;
        let world = Self {
            client,
            ns,
            operator,
            pass,
            _cleanup: cleanup,
        };
        let members = world.recovered(shape).await;
        (world, members)
    }

    fn api(&self) -> Api<RedisCluster> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    async fn patch_spec(&self, spec: Value) {
        self.api()
            .patch(
                NAME,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "spec": spec })),
            )
            .await
            .unwrap();
    }

    async fn recovered(&self, shape: (usize, usize)) -> Members {
        wait_recovered(&self.client, &self.ns.name, NAME, shape, SETUP, |_| {}).await
    }

    async fn pods(&self) -> Vec<Pod> {
        member_pods(&self.client, &self.ns.name, NAME)
            .await
            .unwrap_or_default()
    }

    async fn addrs(&self) -> Vec<SocketAddr> {
        member_addrs(&self.client, &self.ns.name, NAME).await
    }

    /// Stops the operator, deletes the namespace and waits (≤ 180 s) until it is gone.
    async fn cleanup(self) {
        drop(self.operator);
        support::bench::delete_namespace_and_wait(&self.client, self.ns).await;
    }
}

/// The shard label of each slot's owner (`None`: unowned or disputed), from every member's
/// view and the Pods' shard labels.
async fn slot_shards(world: &World, pass: &str) -> Vec<Option<String>> {
    let pods = world.pods().await;
    let shard_at: BTreeMap<SocketAddr, String> = pods
        .iter()
        .filter_map(|p| {
            let ip = pod_ip(p)?.parse().ok()?;
            Some((SocketAddr::new(ip, 6379), label(p, SHARD_LABEL)))
        })
        .collect();
    let addrs: Vec<SocketAddr> = shard_at.keys().copied().collect();
    let view = model::observe(&addrs, &member_admin(pass)).await;
    view.slot_owners()
        .iter()
        .map(|o| {
            let addr = view.addr_of(o.as_ref()?)?;
            shard_at.get(&addr).cloned()
        })
        .collect()
}

/// Slots per shard label.
fn counts(shards: &[Option<String>]) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for s in shards.iter().flatten() {
        *c.entry(s.clone()).or_default() += 1;
    }
    c
}

/// Whether exactly shards 0..`leaders` own every slot, evenly.
fn even(shards: &[Option<String>], leaders: usize) -> bool {
    let c = counts(shards);
    let even = usize::from(SLOT_COUNT) / leaders;
    shards.iter().all(Option::is_some)
        && c.len() == leaders
        && (0..leaders).all(|s| {
            c.get(&s.to_string())
                .is_some_and(|n| *n == even || *n == even + 1)
        })
}

/// Data keys whose slot is on another shard in `after` than in `before`.
fn keys_moved(per_slot: &[u64], before: &[Option<String>], after: &[Option<String>]) -> u64 {
    per_slot
        .iter()
        .zip(before.iter().zip(after))
        .filter(|(_, (b, a))| b != a)
        .map(|(n, _)| *n)
        .sum()
}

/// Loads the data set through the masters at `addrs`.
async fn load(addrs: &[SocketAddr], pass: &str, data: &[(Bytes, Bytes)]) {
    let begun = Instant::now();
    let mut client = DataClient::new(addrs.to_vec(), data_admin(pass)).await;
    for chunk in data.chunks(100_000) {
        client.load(chunk, 1000).await.expect("load");
    }
    println!(
        "loaded {} keys in {:.1} s",
        data.len(),
        begun.elapsed().as_secs_f64()
    );
}

/// Reads every data key back; the number missing or wrong (printed with examples).
async fn lost_keys(addrs: &[SocketAddr], pass: &str, data: &[(Bytes, Bytes)]) -> u64 {
    let begun = Instant::now();
    let mut client = DataClient::new(addrs.to_vec(), data_admin(pass)).await;
    let mut lost = 0u64;
    let mut examples = Vec::new();
    for chunk in data.chunks(50_000) {
        let keys: Vec<Bytes> = chunk.iter().map(|(k, _)| k.clone()).collect();
        let values = client.get_many(&keys, 1000).await.expect("read back");
        for ((k, v), got) in chunk.iter().zip(values) {
            if got.as_ref() != Some(v) {
                lost += 1;
                if examples.len() < 5 {
                    examples.push(String::from_utf8_lossy(k).into_owned());
                }
            }
        }
    }
    let view = model::observe(addrs, &member_admin(pass)).await;
    let dbsize: u64 = view
        .masters()
        .filter(|n| n.is_serving_master())
        .map(|n| n.keys.unwrap_or_default())
        .sum();
    println!(
        "read back {} data keys in {:.1} s: {lost} missing or wrong {examples:?}; DBSIZE over the masters {dbsize} (data keys and the writers' keys)",
        data.len(),
        begun.elapsed().as_secs_f64()
    );
    lost
}

/// The two writers of one step: acknowledged (`WAIT 1`) and plain.
struct Writers {
    acked: AckWriterHandle,
    plain: AckWriterHandle,
    leaders: Vec<SocketAddr>,
}

impl Writers {
    async fn start(addrs: &[SocketAddr], pass: &str, leaders: Vec<SocketAddr>) -> Self {
        let limits = AckWriterOptions {
            max_duration: STEP + Duration::from_secs(300),
            max_writes: 20_000_000,
            ..AckWriterOptions::default()
        };
        let acked = AckWriter::start(addrs.to_vec(), pass.to_owned(), limits.clone())
            .await
            .expect("acknowledged writer starts");
        assert!(
            acked_at_least(&acked, 200, Duration::from_secs(30)).await,
            "no acknowledged writes before the step"
        );
        let plain = support::bench::plain_writer(addrs.to_vec(), pass.to_owned(), limits).await;
        Self {
            acked,
            plain,
            leaders,
        }
    }

    fn add_seeds(&self, addrs: &[SocketAddr]) {
        self.acked.add_seeds(addrs.to_vec());
        self.plain.add_seeds(addrs.to_vec());
    }

    /// Stops both after some more acknowledged traffic, reads the acknowledged keys back and
    /// asserts none was lost; the longest stall per shard (max over the shards) of each.
    async fn finish(self, addrs: &[SocketAddr], pass: &str, what: &str) -> (Duration, Duration) {
        self.add_seeds(addrs);
        let now = self.acked.acknowledged();
        acked_at_least(&self.acked, now + 300, Duration::from_secs(30)).await;
        let plain = self.plain.stop().await;
        let mut acked = self.acked.stop().await;
        acked
            .read_back(
                addrs,
                pass,
                &ReadBackOptions {
                    deadline: Duration::from_secs(300),
                    ..ReadBackOptions::default()
                },
            )
            .await;
        let set = support::bench::shard_pauses(&plain, &self.leaders);
        let waited = support::bench::shard_pauses(&acked, &self.leaders);
        println!(
            "{what}:\n{acked}writes without WAIT:\n{plain}longest stall per shard: SET {}; SET + WAIT 1 {}",
            list(&set),
            list(&waited)
        );
        if let Err(e) = acked.verify() {
            panic!("{what}: {e}");
        }
        assert_eq!(acked.lost(), Some(0), "{what}: acknowledged writes lost");
        (
            set.into_iter().max().unwrap_or_default(),
            waited.into_iter().max().unwrap_or_default(),
        )
    }
}

fn list(d: &[Duration]) -> String {
    d.iter()
        .enumerate()
        .map(|(s, d)| format!("s{s} {}", secs(*d)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one step measured.
struct Step {
    label: String,
    who: String,
    total: Duration,
    moving: Option<Duration>,
    keys: u64,
    lost: u64,
    stall: (Duration, Duration),
}

impl Step {
    fn row(&self) -> String {
        let rate = |d: Duration| format!("{:.0}", self.keys as f64 / d.as_secs_f64().max(1e-3));
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
            self.label,
            self.who,
            secs(self.total),
            self.moving.map(secs).unwrap_or_else(|| "–".into()),
            self.keys,
            rate(self.total),
            self.moving.map(rate).unwrap_or_else(|| "–".into()),
            self.lost,
            secs(self.stall.0),
            secs(self.stall.1),
        )
    }
}

/// Ours: `leaders` patched to `to`, polled until Ready with the reshard done and the
/// recovery invariants for (`to`, 1); the slot distribution is polled alongside.
async fn operator_step(
    world: &World,
    data: &[(Bytes, Bytes)],
    per_slot: &[u64],
    to: usize,
) -> Step {
    let members = world.recovered((if to == 4 { 3 } else { 4 }, 1)).await;
    let leaders: Vec<SocketAddr> = (0..members.0.len() / 2)
        .map(|s| members.leader(s).addr())
        .collect();
    let from = leaders.len();
    let writers = Writers::start(&members.addrs(), &world.pass, leaders).await;
    let before = slot_shards(world, &world.pass).await;
    let initial = counts(&before);
    println!(
        "{}: leaders {from} -> {to} at {}",
        world.ns.name,
        jiff::Timestamp::now()
    );
    let begun = Instant::now();
    world.patch_spec(json!({"leaders": to})).await;
    let (mut move_start, mut move_end) = (None, None);
    let mut timeline = Vec::new();
    let mut last = String::new();
    let total = loop {
        assert!(
            begun.elapsed() < STEP,
            "{}: {from} -> {to} not done within {STEP:?}:\n{}",
            world.ns.name,
            timeline.join("\n")
        );
        let addrs = world.addrs().await;
        writers.add_seeds(&addrs);
        let shards = slot_shards(world, &world.pass).await;
        let at = begun.elapsed();
        if move_start.is_none() && counts(&shards) != initial {
            move_start = Some(at);
        }
        if move_start.is_some() && move_end.is_none() && even(&shards, to) {
            move_end = Some(at);
        }
        let rc = world.api().get(NAME).await.unwrap();
        let status = rc.status.clone().unwrap_or_default();
        let ready = condition(&rc, "Ready").map(|c| c.0).unwrap_or_default();
        let progressing = condition(&rc, "Progressing").unwrap_or_default();
        let reshard = status.reshard.clone();
        let now = format!(
            "pods {} ready {} Ready={ready} reshard {} slots {:?} Progressing={} {}",
            addrs.len(),
            status.ready_members.clone().unwrap_or_default(),
            reshard
                .as_ref()
                .map(|r| format!("to {} {} keys {}", r.to_leaders, r.progress, r.keys_moved))
                .unwrap_or_default(),
            counts(&shards),
            progressing.1,
            progressing.2,
        );
        if now != last {
            timeline.push(format!("  +{:.1} s {now}", at.as_secs_f64()));
            last = now;
        }
        let done = reshard
            .as_ref()
            .is_some_and(|r| r.progress == "100%" && r.to_leaders as usize == to);
        if ready == "True"
            && done
            && addrs.len() == to * 2
            && even(&shards, to)
            && check_recovered(&world.client, &world.ns.name, NAME, to, 1)
                .await
                .is_ok()
        {
            break begun.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let status = world.api().get(NAME).await.unwrap().status.unwrap();
    println!(
        "{}: {from} -> {to} in {:.1} s; reshard {:?}\ntimeline:\n{}",
        world.ns.name,
        total.as_secs_f64(),
        status.reshard,
        timeline.join("\n")
    );
    let after = slot_shards(world, &world.pass).await;
    let keys = keys_moved(per_slot, &before, &after);
    let addrs = world.addrs().await;
    let lost = lost_keys(&addrs, &world.pass, data).await;
    let stall = writers
        .finish(
            &addrs,
            &world.pass,
            &format!("{}: {from} -> {to}", world.ns.name),
        )
        .await;
    assert_eq!(lost, 0, "data keys lost");
    println!(
        "{}: status keysMoved {:?}, data keys moved by slot owner {keys}",
        world.ns.name,
        status.reshard.map(|r| r.keys_moved)
    );
    Step {
        label: format!("{from} → {to}"),
        who: match grace() {
            Some(g) => format!("operator (`spec.leaders`, `scaleInGracePeriod: {g}`)"),
            None => "operator (`spec.leaders`)".into(),
        },
        total,
        moving: move_start.zip(move_end).map(|(s, e)| e.saturating_sub(s)),
        keys,
        lost,
        stall,
    }
}

/// `redis-cli ARGS` with the cluster's password (on a blocking thread: the writers run on the
/// test's runtime); panics with its output on failure. Its wall time.
async fn redis_cli(pass: &str, args: &[&str]) -> Duration {
    let begun = Instant::now();
    let mut command = tokio::process::Command::new("timeout");
    command
        .arg("900")
        .arg("redis-cli")
        .args(args)
        .env("REDISCLI_AUTH", pass)
        .kill_on_drop(true);
    let out = command.output().await.expect("run redis-cli");
    let took = begun.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let plain = strip_ansi(&stdout);
    let tail: Vec<&str> = plain
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .rev()
        .take(3)
        .collect();
    println!(
        "redis-cli {} ({:.2} s): ... {}",
        args.join(" "),
        took.as_secs_f64(),
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    );
    assert!(
        out.status.success() && !stdout.contains("[ERR]"),
        "redis-cli {args:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// `text` without ANSI colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut escape = false;
    for c in text.chars() {
        match (escape, c) {
            (false, '\u{1b}') => escape = true,
            (false, c) => out.push(c),
            (true, 'm') => escape = false,
            (true, _) => {}
        }
    }
    out
}

/// A command on one member (no redirects); panics on failure.
fn on(ip: &str, pass: &str, args: &[&str]) -> String {
    redis_cli_result(ip, pass, false, args).unwrap_or_else(|e| panic!("{args:?} on {ip}: {e}"))
}

/// Waits (≤ 120 s, polling every 100 ms) until every master among `addrs` has a replica among
/// them in sync as the operator counts it (`redis::sync`, `SyncBar::Healthy`).
async fn wait_in_sync(addrs: &[SocketAddr], pass: &str) {
    let begun = Instant::now();
    loop {
        let view = model::observe(addrs, &member_admin(pass)).await;
        let synced = view.unreachable.is_empty()
            && view.masters().all(|m| {
                view.replicas_of(m.id())
                    .any(|r| follower_in_sync(r, m, SyncBar::Healthy))
            });
        if synced {
            return;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(120),
            "replicas at {addrs:?} not in sync within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (≤ 60 s, polling every 50 ms) until every node at `ips` lists exactly `n` nodes, none
/// in handshake, and says `cluster_state:ok`; how long it took.
async fn wait_nodes(ips: &[&str], pass: &str, n: usize) -> Duration {
    let begun = Instant::now();
    let addrs: Vec<SocketAddr> = ips
        .iter()
        .map(|ip| SocketAddr::new(ip.parse().unwrap(), 6379))
        .collect();
    loop {
        let view = model::observe(&addrs, &member_admin(pass)).await;
        let ok = view.unreachable.is_empty()
            && view.nodes.len() == addrs.len()
            && view.nodes.iter().all(|node| {
                node.known_ids().len() == n && node.handshakes() == 0 && node.info.state_ok
            });
        if ok {
            return begun.elapsed();
        }
        assert!(
            begun.elapsed() < Duration::from_secs(60),
            "{ips:?} do not all list {n} nodes with cluster_state:ok"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The redis-cli baseline: both steps on a 4 × 1 cluster whose operator is stopped.
async fn redis_cli_steps(data: &[(Bytes, Bytes)], per_slot: &[u64]) -> Vec<Step> {
    let (mut world, members) = World::create("bench-scale-cli", (4, 1)).await;
    world.operator.kill();
    println!("{}: operator stopped", world.ns.name);
    print_roles(&world.ns.name, "4x1", &members);
    let pass = world.pass.clone();
    let seed = members.leader(0).addr().to_string();
    let (m3, f3) = (members.leader(3).clone(), members.followers(3)[0].clone());
    let rest: Vec<Member> = members
        .0
        .iter()
        .filter(|m| m.shard != "3")
        .cloned()
        .collect();
    let rest_ips: Vec<&str> = rest.iter().map(|m| m.ip.as_str()).collect();
    let rest_addrs: Vec<SocketAddr> = rest.iter().map(Member::addr).collect();

    // Untimed: shard 3 emptied and detached: two empty Redis nodes outside a 3 × 1 cluster.
    redis_cli(
        &pass,
        &[
            "--cluster",
            "rebalance",
            &seed,
            "--cluster-weight",
            &format!("{}=0", m3.id),
            "--cluster-yes",
        ],
    )
    .await;
    on(&f3.ip, &pass, &["cluster", "reset", "hard"]);
    on(&m3.ip, &pass, &["cluster", "reset", "hard"]);
    for ip in &rest_ips {
        on(ip, &pass, &["cluster", "forget", &m3.id]);
        on(ip, &pass, &["cluster", "forget", &f3.id]);
    }
    wait_nodes(&rest_ips, &pass, 6).await;
    let m3_id = on(&m3.ip, &pass, &["cluster", "myid"]);
    let f3_id = on(&f3.ip, &pass, &["cluster", "myid"]);
    println!(
        "{}: shard 3 detached; empty nodes {} ({m3_id}) and {} ({f3_id})",
        world.ns.name, m3.ip, f3.ip
    );
    load(&rest_addrs, &pass, data).await;
    wait_in_sync(&rest_addrs, &pass).await;
    let mut steps = Vec::new();

    // 3 -> 4.
    let leaders: Vec<SocketAddr> = (0..3).map(|s| members.leader(s).addr()).collect();
    let writers = Writers::start(&rest_addrs, &pass, leaders).await;
    let before = slot_shards(&world, &pass).await;
    let begun = Instant::now();
    let add_master = redis_cli(
        &pass,
        &["--cluster", "add-node", &m3.addr().to_string(), &seed],
    )
    .await;
    // add-node returns once it sent MEET; the replica's add-node needs every node to know the
    // new master ("No such master ID", "Nodes don't agree about configuration" otherwise), so
    // the script waits for gossip as a user would.
    let joined: Vec<&str> = rest_ips.iter().copied().chain([m3.ip.as_str()]).collect();
    let known = wait_nodes(&joined, &pass, 7).await;
    let add_replica = redis_cli(
        &pass,
        &[
            "--cluster",
            "add-node",
            &f3.addr().to_string(),
            &seed,
            "--cluster-slave",
            "--cluster-master-id",
            &m3_id,
        ],
    )
    .await;
    writers.add_seeds(&members.addrs());
    let rebalance = redis_cli(
        &pass,
        &[
            "--cluster",
            "rebalance",
            &seed,
            "--cluster-use-empty-masters",
            "--cluster-yes",
        ],
    )
    .await;
    wait_in_sync(&members.addrs(), &pass).await;
    let total = begun.elapsed();
    println!(
        "{}: redis-cli 3 -> 4 in {:.1} s (add-node {:.2} s, every node knows it {:.2} s later, add-node --cluster-slave {:.2} s, rebalance {:.1} s)",
        world.ns.name,
        total.as_secs_f64(),
        add_master.as_secs_f64(),
        known.as_secs_f64(),
        add_replica.as_secs_f64(),
        rebalance.as_secs_f64()
    );
    let after = slot_shards(&world, &pass).await;
    assert!(
        even(&after, 4),
        "not even after rebalance: {:?}",
        counts(&after)
    );
    let keys = keys_moved(per_slot, &before, &after);
    let addrs = members.addrs();
    let lost = lost_keys(&addrs, &pass, data).await;
    let stall = writers
        .finish(
            &addrs,
            &pass,
            &format!("{}: redis-cli 3 -> 4", world.ns.name),
        )
        .await;
    assert_eq!(lost, 0, "data keys lost");
    steps.push(Step {
        label: "3 → 4".into(),
        who: "redis-cli `add-node` ×2 + `rebalance --cluster-use-empty-masters`".into(),
        total,
        moving: Some(rebalance),
        keys,
        lost,
        stall,
    });

    // 4 -> 3.
    let leaders: Vec<SocketAddr> = (0..3)
        .map(|s| members.leader(s).addr())
        .chain([m3.addr()])
        .collect();
    let writers = Writers::start(&addrs, &pass, leaders).await;
    let before = slot_shards(&world, &pass).await;
    let begun = Instant::now();
    let rebalance = redis_cli(
        &pass,
        &[
            "--cluster",
            "rebalance",
            &seed,
            "--cluster-weight",
            &format!("{m3_id}=0"),
            "--cluster-yes",
        ],
    )
    .await;
    let del_replica = redis_cli(&pass, &["--cluster", "del-node", &seed, &f3_id]).await;
    let del_master = redis_cli(&pass, &["--cluster", "del-node", &seed, &m3_id]).await;
    let total = begun.elapsed();
    println!(
        "{}: redis-cli 4 -> 3 in {:.1} s (rebalance {:.1} s, del-node replica {:.2} s, del-node master {:.2} s)",
        world.ns.name,
        total.as_secs_f64(),
        rebalance.as_secs_f64(),
        del_replica.as_secs_f64(),
        del_master.as_secs_f64()
    );
    let after = slot_shards(&world, &pass).await;
    assert!(
        even(&after, 3),
        "not even after rebalance: {:?}",
        counts(&after)
    );
    let keys = keys_moved(per_slot, &before, &after);
    let lost = lost_keys(&rest_addrs, &pass, data).await;
    let stall = writers
        .finish(
            &rest_addrs,
            &pass,
            &format!("{}: redis-cli 4 -> 3", world.ns.name),
        )
        .await;
    assert_eq!(lost, 0, "data keys lost");
    steps.push(Step {
        label: "4 → 3".into(),
        who: "redis-cli `rebalance --cluster-weight <id>=0` + `del-node` ×2".into(),
        total,
        moving: Some(rebalance),
        keys,
        lost,
        stall,
    });
    world.cleanup().await;
    steps
}

/// Ours: both steps on a fresh 3 × 1 cluster.
async fn operator_steps(data: &[(Bytes, Bytes)], per_slot: &[u64]) -> Vec<Step> {
    let (world, members) = World::create("bench-scale", (3, 1)).await;
    print_roles(&world.ns.name, "3x1", &members);
    load(&members.addrs(), &world.pass, data).await;
    let out = vec![
        operator_step(&world, data, per_slot, 4).await,
        operator_step(&world, data, per_slot, 3).await,
    ];
    world.cleanup().await;
    out
}

fn ratio(ours: &Step, cli: &Step) -> String {
    let moving = match (ours.moving, cli.moving) {
        (Some(o), Some(c)) => format!(
            "; moving slots {:.1}× ({} vs {})",
            c.as_secs_f64() / o.as_secs_f64().max(1e-3),
            secs(o),
            secs(c)
        ),
        _ => String::new(),
    };
    format!(
        "{}: end to end {:.1}× redis-cli ({} vs {}){moving}",
        ours.label,
        cli.total.as_secs_f64() / ours.total.as_secs_f64().max(1e-3),
        secs(ours.total),
        secs(cli.total)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark on the local cluster, alone: make bench-scale"]
async fn bench_scale_3_4_3() {
    let data = dataset();
    let per_slot = keys_per_slot(&data);
    let ours = operator_steps(&data, &per_slot).await;
    let cli = redis_cli_steps(&data, &per_slot).await;
    let mut lines: Vec<String> = Vec::new();
    for (o, c) in ours.iter().zip(&cli) {
        lines.push(o.row());
        lines.push(c.row());
    }
    let ratios: Vec<String> = ours.iter().zip(&cli).map(|(o, c)| ratio(o, c)).collect();
    for l in &lines {
        println!("{l}");
    }
    for r in &ratios {
        println!("{r}");
    }
    let mut rows = lines;
    rows.push(String::new());
    rows.extend(ratios.iter().map(|r| format!("{r}  ")));
    support::bench::append_rows("bench_scale", &rows);
}

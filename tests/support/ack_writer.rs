//! An acknowledged-write checker for chaos tests (design: `redis-cluster.md` §2.6).
//!
//! [`AckWriter::start`] learns the cluster's slot map, picks one hash tag inside each slot
//! range of each master, and runs one writer task per tag that writes unique keys
//! `ack:{tag}:<seq>` = `<seq>` until stopped (or until its hard limits on time and writes).
//! A write counts as **acknowledged** only when `SET` returned `OK` and a `WAIT <R> <ms>` on the
//! same connection returned at least R. Anything else (an error, a timeout, WAIT below R, a
//! reset) is indeterminate: the key may or may not exist, and it is never counted as lost.
//!
//! The writers follow `MOVED` (the slot map is updated at once and a topology refresh is
//! requested), `ASK` (`ASKING` and the command once on that node, no map update), and back off
//! 50–100 ms on `CLUSTERDOWN`, `TRYAGAIN`, `LOADING` and connection errors. A background task
//! refreshes the topology from `CLUSTER NODES` of every known address at once (per slot the
//! claim with the highest config epoch wins; a node's own `myself` line gives its address), so
//! the writer learns new pod IPs from any reachable node and keeps working when every seed is
//! gone; [`AckWriterHandle::add_seeds`] hands it addresses from outside.
//!
//! [`AckWriterHandle::stop`] returns a [`Report`]; [`Report::read_back`] reads every
//! acknowledged key back through the same routing once the cluster is healthy again, and
//! [`Report::verify`] says whether anything acknowledged was lost or could not be checked.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis_operator::redis::client::Frame;
use redis_operator::redis::command::Cmd;
use redis_operator::redis::ids::ranges_from_slots;
use redis_operator::redis::parse::cluster_nodes::{NodeEntry, parse_cluster_nodes};
use redis_operator::redis::tls::TlsOptions;
use redis_operator::redis::{
    AdminOptions, Auth, Client, RedisError, SLOT_COUNT, SlotRange, Timeouts, reply,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The hash slot of a key (CRC16-XMODEM of the key or of its `{hash tag}`, modulo 16384).
pub fn keyslot(key: &[u8]) -> u16 {
    redis_protocol::redis_keyslot(key)
}

/// Limits and timings of an [`AckWriter`].
#[derive(Clone, Debug)]
pub struct AckWriterOptions {
    /// Hard limit: the writers stop by themselves this long after the start.
    pub max_duration: Duration,
    /// Hard limit on write attempts, over all tags together.
    pub max_writes: u64,
    /// Pause after each write of one tag (each writer task writes one key at a time).
    pub interval: Duration,
    /// The R of `WAIT R ms`: replicas that must confirm a write.
    pub replicas: u32,
    /// The ms of `WAIT R ms`.
    pub wait_timeout: Duration,
    /// TCP connect (plus AUTH) limit.
    pub connect_timeout: Duration,
    /// Limit for each command's reply (WAIT gets `wait_timeout` on top).
    pub command_timeout: Duration,
    /// Tries per key (redirects and retried errors included) before it is indeterminate.
    pub tries_per_write: u32,
    /// Topology refresh period when nothing asks for one sooner.
    pub refresh_interval: Duration,
    /// How long [`AckWriter::start`] waits for a topology that covers every slot.
    pub start_timeout: Duration,
    /// At most this many tags (writer tasks) per master; a master gets one per slot range.
    pub max_tags_per_master: usize,
    /// Speak TLS with these settings (a TLS cluster): every connection of the writers, the
    /// topology refresher and [`Report::read_back`]. `None`: plain TCP.
    pub tls: Option<Arc<TlsOptions>>,
}

impl Default for AckWriterOptions {
    fn default() -> Self {
        Self {
            max_duration: Duration::from_secs(300),
            max_writes: 1_000_000,
            interval: Duration::from_millis(10),
            replicas: 1,
            wait_timeout: Duration::from_millis(1000),
            connect_timeout: Duration::from_millis(500),
            command_timeout: Duration::from_secs(1),
            tries_per_write: 4,
            refresh_interval: Duration::from_secs(1),
            start_timeout: Duration::from_secs(30),
            max_tags_per_master: 4,
            tls: None,
        }
    }
}

/// Options for the cluster's nodes: AUTH with `password` unless it is empty, and the timeouts.
pub fn admin_options(password: &str, connect: Duration, command: Duration) -> AdminOptions {
    AdminOptions {
        auth: (!password.is_empty()).then(|| Auth {
            username: None,
            password: password.to_owned(),
        }),
        timeouts: Timeouts {
            connect,
            command,
            migrate: command,
            ..Timeouts::default()
        },
        tls: None,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking writer must not hide the others' results behind a poisoned lock.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn backoff() {
    let ms = rand::random_range(50..=100);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

// ---------------------------------------------------------------------------------------------
// Topology: pure parts.

/// Per-slot owners as the client believes them, with the generation of the last `MOVED` per
/// slot so that a refresh fetched before a redirect cannot undo it.
#[derive(Clone, Debug)]
pub struct SlotMap {
    owners: Vec<Option<SocketAddr>>,
    moved_at: Vec<u64>,
    generation: u64,
}

impl Default for SlotMap {
    fn default() -> Self {
        Self {
            owners: vec![None; usize::from(SLOT_COUNT)],
            moved_at: vec![0; usize::from(SLOT_COUNT)],
            generation: 0,
        }
    }
}

impl SlotMap {
    /// The believed owner of `slot`.
    pub fn owner(&self, slot: u16) -> Option<SocketAddr> {
        self.owners.get(usize::from(slot)).copied().flatten()
    }

    /// A counter that grows with every `MOVED` applied; read it before fetching a topology.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// `-MOVED slot addr`: the slot is served by `addr` now.
    pub fn apply_moved(&mut self, slot: u16, addr: SocketAddr) {
        let i = usize::from(slot);
        if i < self.owners.len() {
            self.generation += 1;
            self.owners[i] = Some(addr);
            self.moved_at[i] = self.generation;
        }
    }

    /// Applies owners from a topology fetched after generation `since` was read. Slots
    /// redirected since then keep the redirect; slots nobody claims keep the old owner.
    pub fn apply_topology(&mut self, owners: &[Option<SocketAddr>], since: u64) {
        for (i, owner) in owners.iter().enumerate().take(self.owners.len()) {
            if let Some(addr) = owner
                && self.moved_at[i] <= since
            {
                self.owners[i] = Some(*addr);
            }
        }
    }
}

/// One master with slots, as merged from the views.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterSlots {
    /// Its node id.
    pub id: String,
    /// Its client address.
    pub addr: SocketAddr,
    /// The slots it owns.
    pub ranges: Vec<SlotRange>,
}

/// The cluster merged from the `CLUSTER NODES` views of several nodes.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    /// Per slot, the address of the owner with the highest config epoch.
    pub owners: Vec<Option<SocketAddr>>,
    /// Every address any view mentions.
    pub addrs: BTreeSet<SocketAddr>,
    /// Masters with slots, by first slot.
    pub masters: Vec<MasterSlots>,
}

impl Topology {
    /// Whether every slot has an owner.
    pub fn covers_all(&self) -> bool {
        self.owners.len() == usize::from(SLOT_COUNT) && self.owners.iter().all(Option::is_some)
    }
}

/// Merges views: a node's address comes from its own `myself` line when some view has it
/// (other nodes may still gossip an old IP), and each slot goes to the master claiming it
/// with the highest config epoch (a promoted replica always has a higher epoch than the
/// master it replaced).
pub fn merge_views(views: &[Vec<NodeEntry>]) -> Topology {
    let mut addr_of: BTreeMap<&str, SocketAddr> = BTreeMap::new();
    for entry in views.iter().flatten() {
        if let Some(addr) = entry.addr
            && entry.flags.myself
        {
            addr_of.insert(entry.id.as_str(), addr);
        }
    }
    let mut addrs = BTreeSet::new();
    for entry in views.iter().flatten() {
        if let Some(addr) = entry.addr
            && !entry.flags.noaddr
        {
            addrs.insert(addr);
            addr_of.entry(entry.id.as_str()).or_insert(addr);
        }
    }
    let mut claims: Vec<Option<(u64, &str)>> = vec![None; usize::from(SLOT_COUNT)];
    for entry in views.iter().flatten().filter(|e| e.is_master()) {
        for slot in entry.slots.iter().flat_map(SlotRange::slots) {
            let claim = &mut claims[usize::from(slot)];
            if claim.is_none_or(|(epoch, _)| entry.config_epoch > epoch) {
                *claim = Some((entry.config_epoch, entry.id.as_str()));
            }
        }
    }
    let owners: Vec<Option<SocketAddr>> = claims
        .iter()
        .map(|c| c.and_then(|(_, id)| addr_of.get(id).copied()))
        .collect();
    let mut by_master: BTreeMap<&str, Vec<u16>> = BTreeMap::new();
    for (slot, claim) in claims.iter().enumerate() {
        if let (Some((_, id)), Ok(slot)) = (claim, u16::try_from(slot)) {
            by_master.entry(id).or_default().push(slot);
        }
    }
    let mut masters: Vec<MasterSlots> = by_master
        .into_iter()
        .filter_map(|(id, slots)| {
            Some(MasterSlots {
                id: id.to_owned(),
                addr: *addr_of.get(id)?,
                ranges: ranges_from_slots(slots),
            })
        })
        .collect();
    masters.sort_by_key(|m| m.ranges.first().map(|r| r.start));
    Topology {
        owners,
        addrs,
        masters,
    }
}

/// One tag per slot range of each master (at most `per_master`), named `<run>-m<i>-<n>`
/// with the first `n` whose slot falls in the range. Returns (tag, slot, master index).
pub fn choose_tags(
    run: &str,
    masters: &[MasterSlots],
    per_master: usize,
) -> Vec<(String, u16, usize)> {
    let mut out = Vec::new();
    for (i, master) in masters.iter().enumerate() {
        for range in master.ranges.iter().take(per_master.max(1)) {
            // A random tag lands in a range of k slots with probability k/16384, so even a
            // single-slot range is found within a few hundred thousand candidates.
            let found = (0..2_000_000u32).find_map(|n| {
                let tag = format!("{run}-m{i}-{n}");
                let slot = keyslot(tag.as_bytes());
                range.contains(slot).then_some((tag, slot))
            });
            if let Some((tag, slot)) = found {
                out.push((tag, slot, i));
            }
        }
    }
    out
}

/// The key of write `seq` of `tag`.
pub fn key_of(tag: &str, seq: u64) -> String {
    format!("ack:{{{tag}}}:{seq}")
}

// ---------------------------------------------------------------------------------------------
// Outages: pure parts.

/// A time interval, as offsets from the writer's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// Start (the acknowledged write before the gap).
    pub from: Duration,
    /// End (the acknowledged write after it).
    pub to: Duration,
}

impl Gap {
    /// Its length.
    pub fn len(&self) -> Duration {
        self.to.saturating_sub(self.from)
    }
}

/// The shortest gap between acknowledgements that [`TagReport::long_gaps`] keeps: well above
/// the writer's own pacing, well below any failover.
pub const LONG_GAP: Duration = Duration::from_millis(250);

/// Tracks the acknowledged writes of one tag and the longest gap between two of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutageTracker {
    /// The first acknowledged write.
    pub first: Option<Duration>,
    /// The last acknowledged write.
    pub last: Option<Duration>,
    /// The longest gap between two consecutive acknowledged writes.
    pub longest: Option<Gap>,
}

impl OutageTracker {
    /// Records an acknowledged write at `at` (offsets must not decrease).
    pub fn record(&mut self, at: Duration) {
        match self.last {
            None => self.first = Some(at),
            Some(last) => {
                let gap = Gap { from: last, to: at };
                if self.longest.is_none_or(|l| gap.len() > l.len()) {
                    self.longest = Some(gap);
                }
            }
        }
        self.last = Some(at);
    }
}

/// The longest gap between consecutive acknowledgements (offsets in increasing order).
pub fn longest_gap(acks: &[Duration]) -> Option<Gap> {
    let mut t = OutageTracker::default();
    for at in acks {
        t.record(*at);
    }
    t.longest
}

// ---------------------------------------------------------------------------------------------
// Routing.

/// Where keys go: the seeds, the addresses learned from the cluster, and the slot map.
struct Router {
    admin: AdminOptions,
    seeds: Mutex<BTreeSet<SocketAddr>>,
    learned: Mutex<BTreeSet<SocketAddr>>,
    map: Mutex<SlotMap>,
    refresh_wanted: Notify,
    refreshes: AtomicU64,
}

async fn fetch_view(addr: SocketAddr, admin: &AdminOptions) -> Option<Vec<NodeEntry>> {
    let mut client = Client::connect(addr, admin).await.ok()?;
    let cmd = Cmd::cluster("NODES");
    let text = reply::text(&cmd, client.call(&cmd).await.ok()?).ok()?;
    parse_cluster_nodes(&text).ok()
}

impl Router {
    fn new(seeds: impl IntoIterator<Item = SocketAddr>, admin: AdminOptions) -> Self {
        Self {
            admin,
            seeds: Mutex::new(seeds.into_iter().collect()),
            learned: Mutex::new(BTreeSet::new()),
            map: Mutex::new(SlotMap::default()),
            refresh_wanted: Notify::new(),
            refreshes: AtomicU64::new(0),
        }
    }

    fn known(&self) -> BTreeSet<SocketAddr> {
        let mut all = lock(&self.seeds).clone();
        all.extend(lock(&self.learned).iter().copied());
        all
    }

    fn add_seeds(&self, addrs: impl IntoIterator<Item = SocketAddr>) {
        lock(&self.seeds).extend(addrs);
        self.refresh_wanted.notify_one();
    }

    fn owner(&self, slot: u16) -> Option<SocketAddr> {
        lock(&self.map).owner(slot)
    }

    /// Some known address, for a slot without a believed owner (it answers with MOVED).
    fn any(&self) -> Option<SocketAddr> {
        let all: Vec<SocketAddr> = self.known().into_iter().collect();
        if all.is_empty() {
            return None;
        }
        all.get(rand::random_range(0..all.len())).copied()
    }

    fn moved(&self, slot: u16, endpoint: &str) {
        if let Ok(addr) = endpoint.parse::<SocketAddr>() {
            lock(&self.map).apply_moved(slot, addr);
            lock(&self.learned).insert(addr);
        }
        self.refresh_wanted.notify_one();
    }

    /// Asks the background refresher (writer) for a refresh soon.
    fn poke(&self) {
        self.refresh_wanted.notify_one();
    }

    /// Fetches `CLUSTER NODES` from every known address at once and applies the merge.
    /// `None` when no node answered.
    async fn refresh(&self) -> Option<Topology> {
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let since = lock(&self.map).generation();
        let addrs = self.known();
        let views: Vec<Vec<NodeEntry>> =
            futures::future::join_all(addrs.iter().map(|a| fetch_view(*a, &self.admin)))
                .await
                .into_iter()
                .flatten()
                .collect();
        if views.is_empty() {
            return None;
        }
        let topology = merge_views(&views);
        lock(&self.map).apply_topology(&topology.owners, since);
        // Learned addresses are what the cluster reports now; stale ones fall out.
        *lock(&self.learned) = topology.addrs.clone();
        Some(topology)
    }
}

/// The cached connection to `addr`, a new one when there is none or it is poisoned.
async fn cached<'a>(
    conns: &'a mut HashMap<SocketAddr, Client>,
    admin: &AdminOptions,
    addr: SocketAddr,
) -> Result<&'a mut Client, RedisError> {
    if conns.get(&addr).is_none_or(Client::is_poisoned) {
        conns.remove(&addr);
        conns.insert(addr, Client::connect(addr, admin).await?);
    }
    conns.get_mut(&addr).ok_or(RedisError::Closed { addr })
}

/// Sends `cmd` to `addr` on a cached connection (a new one when missing or poisoned),
/// preceded by `ASKING` when `asking`.
async fn send(
    conns: &mut HashMap<SocketAddr, Client>,
    admin: &AdminOptions,
    addr: SocketAddr,
    asking: bool,
    cmd: &Cmd,
) -> Result<Frame, RedisError> {
    let conn = cached(conns, admin, addr).await?;
    let result = if asking {
        match conn.pipeline(&[Cmd::new("ASKING"), cmd.clone()]).await {
            Ok(mut replies) => replies.pop().unwrap_or(Err(RedisError::Closed { addr })),
            Err(e) => Err(e),
        }
    } else {
        conn.call(cmd).await
    };
    if conn.is_poisoned() {
        conns.remove(&addr);
    }
    result
}

/// Whether the error is about the connection rather than a reply.
fn is_transport(e: &RedisError) -> bool {
    matches!(
        e,
        RedisError::Connect { .. }
            | RedisError::ConnectTimeout { .. }
            | RedisError::Timeout { .. }
            | RedisError::Io { .. }
            | RedisError::Closed { .. }
            | RedisError::Poisoned { .. }
            | RedisError::Protocol { .. }
    )
}

// ---------------------------------------------------------------------------------------------
// The writer.

/// Per-tag counters and the acknowledged sequence numbers.
#[derive(Clone, Debug)]
pub struct TagReport {
    /// The hash tag (keys are `ack:{tag}:<seq>`).
    pub tag: String,
    /// Its slot.
    pub slot: u16,
    /// Index of the master (by first slot) that owned the slot at the start.
    pub master: usize,
    /// That master's address at the start.
    pub first_owner: SocketAddr,
    /// Keys tried.
    pub attempted: u64,
    /// Keys indeterminate (not acknowledged).
    pub indeterminate: u64,
    /// Of those: SET returned OK but WAIT returned fewer replicas.
    pub wait_short: u64,
    /// MOVED replies followed.
    pub moved: u64,
    /// ASK replies followed.
    pub ask: u64,
    /// CLUSTERDOWN, TRYAGAIN or LOADING replies.
    pub cluster_down: u64,
    /// Connect failures, timeouts, resets.
    pub conn_errors: u64,
    /// Any other error reply.
    pub other_errors: u64,
    /// The last error seen, with its offset from the start.
    pub last_error: Option<(Duration, String)>,
    /// Sequence numbers of acknowledged writes (the value of key `seq` is `seq`).
    pub acked: Vec<u64>,
    /// When each of them was acknowledged (offsets from the writer's start, same order).
    pub acked_at: Vec<Duration>,
    /// Acknowledgement times and the longest gap.
    pub outage: OutageTracker,
    /// Every gap between two consecutive acknowledgements of at least [`LONG_GAP`], in order
    /// (a long run attributes them to the fault rounds they fall in).
    pub long_gaps: Vec<Gap>,
    /// Why the task stopped: "stop", "deadline" or "write limit".
    pub ended_by: &'static str,
    /// When it stopped.
    pub ended_at: Duration,
}

impl TagReport {
    /// Acknowledged writes.
    pub fn acknowledged(&self) -> u64 {
        self.acked.len() as u64
    }

    fn note_error(&mut self, at: Duration, e: &RedisError) {
        match e {
            RedisError::ClusterDown(_) | RedisError::TryAgain(_) | RedisError::Loading(_) => {
                self.cluster_down += 1;
            }
            e if is_transport(e) => self.conn_errors += 1,
            _ => self.other_errors += 1,
        }
        self.last_error = Some((at, e.to_string()));
    }
}

struct Shared {
    router: Router,
    opts: AckWriterOptions,
    stop: AtomicBool,
    writes: AtomicU64,
    acked: AtomicU64,
    started: Instant,
    deadline: Instant,
}

impl Shared {
    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }
}

/// Starts writers; see the module documentation.
pub struct AckWriter;

/// The running writer. Dropping it aborts the tasks; [`AckWriterHandle::stop`] ends them and
/// returns the report.
pub struct AckWriterHandle {
    shared: Arc<Shared>,
    writers: Vec<JoinHandle<TagReport>>,
    refresher: Option<JoinHandle<()>>,
}

impl AckWriter {
    /// Learns the topology from `seed_addrs` (waiting up to `opts.start_timeout` for every
    /// slot to have an owner), picks the tags and starts one writer task per tag plus the
    /// topology refresher. `password` empty: no AUTH.
    pub async fn start(
        seed_addrs: Vec<SocketAddr>,
        password: String,
        opts: AckWriterOptions,
    ) -> Result<AckWriterHandle, String> {
        let admin = AdminOptions {
            tls: opts.tls.clone(),
            ..admin_options(&password, opts.connect_timeout, opts.command_timeout)
        };
        let router = Router::new(seed_addrs.iter().copied(), admin);
        let begun = Instant::now();
        let topology = loop {
            match router.refresh().await {
                Some(t) if t.covers_all() => break t,
                other => {
                    if begun.elapsed() >= opts.start_timeout {
                        return Err(format!(
                            "no topology covering every slot from {seed_addrs:?} within {:?} (last: {})",
                            opts.start_timeout,
                            match other {
                                Some(t) => format!(
                                    "{} of 16384 slots owned",
                                    t.owners.iter().flatten().count()
                                ),
                                None => "no node answered CLUSTER NODES".to_owned(),
                            }
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let run = format!("{:08x}", rand::random::<u32>());
        let tags = choose_tags(&run, &topology.masters, opts.max_tags_per_master);
        if tags.is_empty() {
            return Err(format!("no master with slots in {topology:?}"));
        }
        let started = Instant::now();
        let shared = Arc::new(Shared {
            router,
            deadline: started + opts.max_duration,
            opts,
            stop: AtomicBool::new(false),
            writes: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            started,
        });
        let writers = tags
            .into_iter()
            .map(|(tag, slot, master)| {
                let report = TagReport {
                    tag,
                    slot,
                    master,
                    first_owner: topology.masters[master].addr,
                    attempted: 0,
                    indeterminate: 0,
                    wait_short: 0,
                    moved: 0,
                    ask: 0,
                    cluster_down: 0,
                    conn_errors: 0,
                    other_errors: 0,
                    last_error: None,
                    acked: Vec::new(),
                    acked_at: Vec::new(),
                    outage: OutageTracker::default(),
                    long_gaps: Vec::new(),
                    ended_by: "stop",
                    ended_at: Duration::ZERO,
                };
                tokio::spawn(run_tag(shared.clone(), report))
            })
            .collect();
        let refresher = Some(tokio::spawn(run_refresher(shared.clone())));
        Ok(AckWriterHandle {
            shared,
            writers,
            refresher,
        })
    }
}

impl AckWriterHandle {
    /// Adds addresses to try (e.g. the new pod IPs after every pod was replaced).
    pub fn add_seeds(&self, addrs: impl IntoIterator<Item = SocketAddr>) {
        self.shared.router.add_seeds(addrs);
    }

    /// Every address the writer knows now (seeds and learned).
    pub fn known_addrs(&self) -> Vec<SocketAddr> {
        self.shared.router.known().into_iter().collect()
    }

    /// Acknowledged writes so far (over all tags), for progress checks.
    pub fn acknowledged(&self) -> u64 {
        self.shared.acked.load(Ordering::Relaxed)
    }

    /// Time since the writers started (the offsets the report uses).
    pub fn elapsed(&self) -> Duration {
        self.shared.elapsed()
    }

    /// Stops the writers (each finishes or abandons its current key) and returns the report.
    pub async fn stop(mut self) -> Report {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.router.poke();
        let mut tags = Vec::new();
        let mut failures = Vec::new();
        for w in std::mem::take(&mut self.writers) {
            match w.await {
                Ok(t) => tags.push(t),
                Err(e) => failures.push(format!("writer task failed: {e}")),
            }
        }
        if let Some(r) = self.refresher.take() {
            // The refresher never panics on its own; a failure here is only worth reporting.
            if let Err(e) = r.await {
                failures.push(format!("refresher task failed: {e}"));
            }
        }
        Report {
            duration: self.shared.elapsed(),
            tags,
            seeds: self.shared.router.known().into_iter().collect(),
            refreshes: self.shared.router.refreshes.load(Ordering::Relaxed),
            failures,
            read_back: None,
            tls: self.shared.opts.tls.clone(),
        }
    }
}

impl Drop for AckWriterHandle {
    fn drop(&mut self) {
        for w in &self.writers {
            w.abort();
        }
        if let Some(r) = &self.refresher {
            r.abort();
        }
    }
}

async fn run_refresher(shared: Arc<Shared>) {
    while !shared.stopping() {
        let remaining = shared.deadline.saturating_duration_since(Instant::now());
        tokio::select! {
            _ = shared.router.refresh_wanted.notified() => {}
            _ = tokio::time::sleep(shared.opts.refresh_interval.min(remaining)) => {}
        }
        if shared.stopping() {
            break;
        }
        shared.router.refresh().await;
        // At most 20 refreshes a second however often writers ask.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_tag(shared: Arc<Shared>, mut report: TagReport) -> TagReport {
    let mut conns: HashMap<SocketAddr, Client> = HashMap::new();
    let mut seq = 0u64;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            report.ended_by = "stop";
            break;
        }
        if Instant::now() >= shared.deadline {
            report.ended_by = "deadline";
            break;
        }
        if shared.writes.fetch_add(1, Ordering::Relaxed) >= shared.opts.max_writes {
            report.ended_by = "write limit";
            break;
        }
        seq += 1;
        report.attempted += 1;
        if write_acked(&shared, &mut conns, &mut report, seq).await {
            report.acked.push(seq);
            let at = shared.elapsed();
            report.acked_at.push(at);
            if let Some(last) = report.outage.last
                && at.saturating_sub(last) >= LONG_GAP
            {
                report.long_gaps.push(Gap { from: last, to: at });
            }
            report.outage.record(at);
            shared.acked.fetch_add(1, Ordering::Relaxed);
        } else {
            report.indeterminate += 1;
        }
        tokio::time::sleep(shared.opts.interval).await;
    }
    report.ended_at = shared.elapsed();
    report
}

/// One key: SET, then WAIT on the same connection. True when acknowledged.
async fn write_acked(
    shared: &Shared,
    conns: &mut HashMap<SocketAddr, Client>,
    report: &mut TagReport,
    seq: u64,
) -> bool {
    let router = &shared.router;
    let opts = &shared.opts;
    let set = Cmd::new("SET")
        .arg(key_of(&report.tag, seq))
        .arg(seq.to_string());
    let wait = Cmd::new("WAIT")
        .arg_int(opts.replicas)
        .arg_int(opts.wait_timeout.as_millis() as u64);
    let mut ask: Option<SocketAddr> = None;
    for _ in 0..opts.tries_per_write.max(1) {
        if shared.stopping() {
            return false;
        }
        let asking = ask.is_some();
        let Some(addr) = ask
            .take()
            .or_else(|| router.owner(report.slot))
            .or_else(|| router.any())
        else {
            router.poke();
            backoff().await;
            continue;
        };
        match send(conns, &router.admin, addr, asking, &set).await {
            Ok(frame) => {
                if let Err(e) = reply::ok(&set, frame) {
                    report.note_error(shared.elapsed(), &e);
                    return false;
                }
            }
            Err(RedisError::Moved { slot, endpoint }) => {
                report.moved += 1;
                router.moved(slot, &endpoint);
                continue;
            }
            Err(RedisError::Ask { endpoint, .. }) => {
                report.ask += 1;
                ask = endpoint.parse().ok();
                continue;
            }
            Err(e) => {
                report.note_error(shared.elapsed(), &e);
                router.poke();
                backoff().await;
                continue;
            }
        }
        // SET returned OK on `addr`: WAIT on that very connection.
        let Some(conn) = conns.get_mut(&addr) else {
            return false;
        };
        let limit = opts.wait_timeout + opts.command_timeout;
        return match conn.call_with_timeout(&wait, limit).await {
            Ok(Frame::Integer(n)) if n >= i64::from(opts.replicas) => true,
            Ok(Frame::Integer(_)) => {
                report.wait_short += 1;
                false
            }
            Ok(other) => {
                report.note_error(
                    shared.elapsed(),
                    &RedisError::UnexpectedReply {
                        command: "WAIT".to_owned(),
                        reply: reply::render(&other),
                    },
                );
                false
            }
            Err(e) => {
                report.note_error(shared.elapsed(), &e);
                if conn.is_poisoned() {
                    conns.remove(&addr);
                }
                router.poke();
                false
            }
        };
    }
    false
}

// ---------------------------------------------------------------------------------------------
// The report and the read-back.

/// What reading the acknowledged keys back found.
#[derive(Clone, Debug, Default)]
pub struct ReadBack {
    /// Keys read back (every acknowledged key).
    pub checked: u64,
    /// Present with the acknowledged value.
    pub verified: u64,
    /// Absent.
    pub missing: u64,
    /// Present with another value.
    pub wrong: u64,
    /// Could not be read within the retries and the deadline (neither verified nor lost).
    pub unverified: u64,
    /// A few of the lost or unverified keys, with what was found.
    pub examples: Vec<String>,
    /// How long the read-back took.
    pub duration: Duration,
}

/// The writer's result; see [`Report::read_back`] and [`Report::verify`].
#[derive(Clone, Debug)]
pub struct Report {
    /// From the start of the writers to the stop.
    pub duration: Duration,
    /// Per tag.
    pub tags: Vec<TagReport>,
    /// Every address the writer knew at the end.
    pub seeds: Vec<SocketAddr>,
    /// Topology refreshes done.
    pub refreshes: u64,
    /// Writer tasks that failed (panicked); their keys are not in the report.
    pub failures: Vec<String>,
    /// Filled by [`Report::read_back`].
    pub read_back: Option<ReadBack>,
    /// The writer's TLS settings ([`AckWriterOptions::tls`]): the read-back connects with them.
    pub tls: Option<Arc<TlsOptions>>,
}

/// Limits of the read-back.
#[derive(Clone, Debug)]
pub struct ReadBackOptions {
    /// The whole read-back gives up after this (remaining keys are unverified).
    pub deadline: Duration,
    /// GETs per pipeline.
    pub chunk: usize,
    /// Tries per key after the pipelined pass failed for it.
    pub tries_per_key: u32,
}

impl Default for ReadBackOptions {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(60),
            chunk: 500,
            tries_per_key: 6,
        }
    }
}

const MAX_EXAMPLES: usize = 10;

impl Report {
    /// Keys tried.
    pub fn attempted(&self) -> u64 {
        self.tags.iter().map(|t| t.attempted).sum()
    }

    /// Keys acknowledged.
    pub fn acknowledged(&self) -> u64 {
        self.tags.iter().map(TagReport::acknowledged).sum()
    }

    /// Keys indeterminate.
    pub fn indeterminate(&self) -> u64 {
        self.tags.iter().map(|t| t.indeterminate).sum()
    }

    /// Acknowledged keys missing or with a wrong value at read-back (`None` before it).
    pub fn lost(&self) -> Option<u64> {
        self.read_back.as_ref().map(|r| r.missing + r.wrong)
    }

    /// Acknowledged keys that could not be read back (`None` before the read-back).
    pub fn unverified(&self) -> Option<u64> {
        self.read_back.as_ref().map(|r| r.unverified)
    }

    /// Reads every acknowledged key back with GET through MOVED-following routing, starting
    /// from the addresses the writer knew plus `seeds`: pipelined per tag, then key by key
    /// with retries for whatever the pipeline could not settle, all within `opts.deadline`.
    pub async fn read_back(
        &mut self,
        seeds: &[SocketAddr],
        password: &str,
        opts: &ReadBackOptions,
    ) {
        let begun = Instant::now();
        let deadline = begun + opts.deadline;
        let admin = AdminOptions {
            tls: self.tls.clone(),
            ..admin_options(password, Duration::from_millis(500), Duration::from_secs(2))
        };
        let router = Router::new(self.seeds.iter().chain(seeds).copied(), admin);
        while router.refresh().await.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut conns: HashMap<SocketAddr, Client> = HashMap::new();
        let mut rb = ReadBack::default();
        for tag in &self.tags {
            let keys: Vec<(u64, String)> = tag
                .acked
                .iter()
                .map(|seq| (*seq, key_of(&tag.tag, *seq)))
                .collect();
            rb.checked += keys.len() as u64;
            let mut pending: Vec<(u64, String)> = Vec::new();
            for part in keys.chunks(opts.chunk.max(1)) {
                let replies = pipelined_gets(&router, &mut conns, tag.slot, part, deadline).await;
                for ((seq, key), got) in part.iter().zip(replies) {
                    match got {
                        Some(value) => judge(&mut rb, key, *seq, value),
                        None => pending.push((*seq, key.clone())),
                    }
                }
            }
            for (seq, key) in pending {
                match routed_get(
                    &router,
                    &mut conns,
                    tag.slot,
                    &key,
                    opts.tries_per_key,
                    deadline,
                )
                .await
                {
                    Ok(value) => judge(&mut rb, &key, seq, value),
                    Err(e) => {
                        rb.unverified += 1;
                        if rb.examples.len() < MAX_EXAMPLES {
                            rb.examples.push(format!("{key}: unverified ({e})"));
                        }
                    }
                }
            }
        }
        rb.duration = begun.elapsed();
        self.read_back = Some(rb);
    }

    /// Ok when the read-back ran and found nothing lost or unverified, every tag had
    /// acknowledged writes, and no writer task failed; otherwise what is wrong, in words.
    pub fn verify(&self) -> Result<(), String> {
        let mut problems = self.failures.clone();
        match &self.read_back {
            None => problems.push("no read-back was done".to_owned()),
            Some(rb) => {
                if rb.missing + rb.wrong > 0 {
                    problems.push(format!(
                        "{} acknowledged writes lost ({} missing, {} wrong value)",
                        rb.missing + rb.wrong,
                        rb.missing,
                        rb.wrong
                    ));
                }
                if rb.unverified > 0 {
                    problems.push(format!("{} acknowledged writes unverified", rb.unverified));
                }
            }
        }
        for t in self.tags.iter().filter(|t| t.acked.is_empty()) {
            problems.push(format!(
                "tag {} (master {}) has no acknowledged write",
                t.tag, t.master
            ));
        }
        if self.tags.is_empty() {
            problems.push("no writer ran".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{}\n{self}", problems.join("; ")))
        }
    }
}

fn judge(rb: &mut ReadBack, key: &str, seq: u64, value: Option<Bytes>) {
    let want = seq.to_string();
    match value {
        Some(v) if v.as_ref() == want.as_bytes() => rb.verified += 1,
        Some(v) => {
            rb.wrong += 1;
            if rb.examples.len() < MAX_EXAMPLES {
                rb.examples.push(format!(
                    "{key}: {:?} instead of {want}",
                    String::from_utf8_lossy(&v)
                ));
            }
        }
        None => {
            rb.missing += 1;
            if rb.examples.len() < MAX_EXAMPLES {
                rb.examples.push(format!("{key}: missing"));
            }
        }
    }
}

/// GETs of keys of one slot in one pipeline to the slot's owner. Per key: `Some(value)` when
/// the owner answered with a value or null, `None` when it did not settle the key (a
/// redirect, an error, a failed connection). A MOVED on the first key redirects the batch.
async fn pipelined_gets(
    router: &Router,
    conns: &mut HashMap<SocketAddr, Client>,
    slot: u16,
    keys: &[(u64, String)],
    deadline: Instant,
) -> Vec<Option<Option<Bytes>>> {
    let cmds: Vec<Cmd> = keys.iter().map(|(_, k)| Cmd::new("GET").arg(k)).collect();
    for _ in 0..3 {
        if Instant::now() >= deadline {
            break;
        }
        let Some(addr) = router.owner(slot).or_else(|| router.any()) else {
            break;
        };
        let replies = match cached(conns, &router.admin, addr).await {
            Ok(conn) => conn.pipeline(&cmds).await,
            Err(e) => Err(e),
        };
        match replies {
            Ok(replies) => {
                if let Some(Err(RedisError::Moved { slot, endpoint })) = replies.first() {
                    router.moved(*slot, endpoint);
                    continue;
                }
                return replies
                    .into_iter()
                    .zip(&cmds)
                    .map(|(r, cmd)| r.ok().and_then(|f| reply::opt_bytes(cmd, f).ok()))
                    .collect();
            }
            Err(_) => {
                conns.remove(&addr);
                backoff().await;
                router.refresh().await;
            }
        }
    }
    vec![None; keys.len()]
}

/// One GET following MOVED and ASK, retrying transient errors with back-off and a topology
/// refresh, at most `tries` times and not past `deadline`. The error says why the key could
/// not be read.
async fn routed_get(
    router: &Router,
    conns: &mut HashMap<SocketAddr, Client>,
    slot: u16,
    key: &str,
    tries: u32,
    deadline: Instant,
) -> Result<Option<Bytes>, String> {
    let cmd = Cmd::new("GET").arg(key);
    let mut ask: Option<SocketAddr> = None;
    let mut last = String::from("read-back deadline passed before the key was tried");
    for _ in 0..tries.max(1) {
        if Instant::now() >= deadline {
            break;
        }
        let asking = ask.is_some();
        let Some(addr) = ask
            .take()
            .or_else(|| router.owner(slot))
            .or_else(|| router.any())
        else {
            last = "no known address".to_owned();
            router.refresh().await;
            continue;
        };
        match send(conns, &router.admin, addr, asking, &cmd).await {
            Ok(frame) => return reply::opt_bytes(&cmd, frame).map_err(|e| e.to_string()),
            Err(RedisError::Moved { slot, endpoint }) => {
                last = format!("still redirected (MOVED {slot} {endpoint})");
                router.moved(slot, &endpoint);
            }
            Err(RedisError::Ask { slot, endpoint }) => {
                last = format!("still redirected (ASK {slot} {endpoint})");
                ask = endpoint.parse().ok();
            }
            Err(e) => {
                last = e.to_string();
                backoff().await;
                router.refresh().await;
            }
        }
    }
    Err(last)
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ack-writer: {} over {} tags: attempted {}, acknowledged {}, indeterminate {}, {} topology refreshes",
            secs(self.duration),
            self.tags.len(),
            self.attempted(),
            self.acknowledged(),
            self.indeterminate(),
            self.refreshes
        )?;
        match &self.read_back {
            None => writeln!(f, "  read-back: not done")?,
            Some(rb) => {
                writeln!(
                    f,
                    "  read-back in {}: checked {}, verified {}, lost {} (missing {}, wrong value {}), unverified {}",
                    secs(rb.duration),
                    rb.checked,
                    rb.verified,
                    rb.missing + rb.wrong,
                    rb.missing,
                    rb.wrong,
                    rb.unverified
                )?;
                for e in &rb.examples {
                    writeln!(f, "    {e}")?;
                }
            }
        }
        for t in &self.tags {
            let outage = match t.outage.longest {
                Some(g) => format!(
                    "longest outage {} (from {} to {})",
                    secs(g.len()),
                    secs(g.from),
                    secs(g.to)
                ),
                None => "longest outage: fewer than two acknowledged writes".to_owned(),
            };
            let edges = match (t.outage.first, t.outage.last) {
                (Some(first), Some(last)) => format!(
                    "first ack at {}, last at {}, ended ({}) at {}",
                    secs(first),
                    secs(last),
                    t.ended_by,
                    secs(t.ended_at)
                ),
                _ => format!("no ack; ended ({}) at {}", t.ended_by, secs(t.ended_at)),
            };
            writeln!(
                f,
                "  tag {} (slot {}, master {} at {} at the start): attempted {}, acknowledged {}, indeterminate {} (WAIT short {}); {outage}; {edges}",
                t.tag,
                t.slot,
                t.master,
                t.first_owner,
                t.attempted,
                t.acknowledged(),
                t.indeterminate,
                t.wait_short
            )?;
            writeln!(
                f,
                "    MOVED {}, ASK {}, CLUSTERDOWN/TRYAGAIN/LOADING {}, connection errors {}, other errors {}{}",
                t.moved,
                t.ask,
                t.cluster_down,
                t.conn_errors,
                t.other_errors,
                match &t.last_error {
                    Some((at, e)) => format!("; last error at {}: {e}", secs(*at)),
                    None => String::new(),
                }
            )?;
        }
        for e in &self.failures {
            writeln!(f, "  FAILURE: {e}")?;
        }
        Ok(())
    }
}

//! A backup streamed into a running cluster: every key of an RDB (any `AsyncRead`, an
//! object-storage download) `RESTORE`d on the master that owns its slot.
//!
//! Keys are grouped per master into pipelined batches ([`RestoreBatcher`]); each batch is sent
//! by its own task on one of a few connections per master, so every master works at once
//! while the file is read. What is queued or in flight is bounded in bytes
//! ([`RestoreLimits::max_in_flight_bytes`]); reading waits when it is reached, so memory stays
//! bounded whatever the file's size.
//!
//! Replies: `OK` is restored. `BUSYKEY` is an error in [`RestoreMode::Fresh`] (the cluster was
//! empty when the restore began, so someone else writes) and a `REPLACE` in
//! [`RestoreMode::Resume`], and also in a batch re-sent after its connection failed (its keys
//! may be from its own first send). `MOVED` (and `TRYAGAIN`, `CLUSTERDOWN`, `LOADING`) load
//! the slot map again and re-send to the owner, a bounded number of times; `ASK` re-sends
//! once to the importing node after `ASKING`. Any other error reply stops the restore and
//! names the key.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::try_join_all;
use tokio::io::AsyncRead;
use tokio::task::{JoinError, JoinSet};

use crate::redis::client::{AdminOptions, Client};
use crate::redis::command::Cmd;
use crate::redis::model::observe;
use crate::redis::ops::restore::{RestoreBatcher, key_slot, restore_cmd, restore_key};
use crate::redis::ops::restore_batch::{Batch, Done, Job};
pub use crate::redis::ops::restore_route::{RestoreError, RestoreLimits, RestoreMode};
use crate::redis::ops::restore_route::{SlotMap, master_addrs};
use crate::redis::rdb::{RdbKey, RdbReader, printable_key};
use crate::redis::reply;

/// How far a restore got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreProgress {
    /// Keys read from the file.
    pub keys_read: u64,
    /// Keys restored (`OK` without `REPLACE`).
    pub restored: u64,
    /// Keys that existed and were overwritten with `REPLACE`.
    pub replaced: u64,
    /// Keys whose expiry had passed, not sent.
    pub expired_skipped: u64,
    /// File bytes read.
    pub bytes_read: u64,
    /// Time since the start.
    pub elapsed: Duration,
}

/// What a completed restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Keys read from the file.
    pub keys_read: u64,
    /// Keys restored (`OK` without `REPLACE`).
    pub restored: u64,
    /// Keys that existed and were overwritten with `REPLACE`.
    pub replaced: u64,
    /// Keys whose expiry had passed, not sent.
    pub expired_skipped: u64,
    /// File bytes read.
    pub bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// `RESTORE`s sent again elsewhere after `MOVED`, `ASK` (and `TRYAGAIN`, `CLUSTERDOWN`,
    /// `LOADING`): slots moved while the restore ran.
    pub redirected: u64,
    /// Pipelines sent again on a new connection after a transport failure.
    pub retried_batches: u64,
    /// Keys acknowledged (restored or replaced) per master.
    pub per_master: BTreeMap<SocketAddr, u64>,
}

/// The slot map as the `seeds` that answer report it.
async fn load_slot_map(
    seeds: &[SocketAddr],
    options: &AdminOptions,
) -> Result<SlotMap, RestoreError> {
    let view = observe(seeds, options).await;
    if view.nodes.is_empty() {
        let why = view
            .unreachable
            .first()
            .map_or_else(|| "no seed given".to_owned(), |u| u.error.to_string());
        return Err(RestoreError::Topology(format!("no seed answered: {why}")));
    }
    SlotMap::from_view(&view).map_err(RestoreError::Topology)
}

/// The number of keys in the cluster: `DBSIZE` summed over every master any seed knows. A
/// restore runs only into an empty cluster; the caller checks this first.
pub async fn cluster_key_count(
    seeds: &[SocketAddr],
    options: &AdminOptions,
) -> Result<u64, RestoreError> {
    let view = observe(seeds, options).await;
    if view.nodes.is_empty() {
        return Err(RestoreError::Topology("no seed answered".to_owned()));
    }
    let counts = master_addrs(&view).into_iter().map(|addr| async move {
        let mut client = Client::connect(addr, options)
            .await
            .map_err(RestoreError::redis(addr))?;
        let cmd = Cmd::dbsize();
        let frame = client.call(&cmd).await.map_err(RestoreError::redis(addr))?;
        reply::count(&cmd, frame).map_err(RestoreError::redis(addr))
    });
    Ok(try_join_all(counts).await?.into_iter().sum())
}

/// Restores every key of the RDB in `source` into the cluster the `seeds` belong to (see the
/// module comment), calling `progress` every [`RestoreLimits::progress_keys`] keys or
/// [`RestoreLimits::progress_interval`], and once at the end.
pub async fn restore_rdb<R: AsyncRead + Unpin + Send>(
    source: R,
    seeds: &[SocketAddr],
    options: &AdminOptions,
    mode: RestoreMode,
    limits: RestoreLimits,
    progress: &mut (dyn FnMut(&RestoreProgress) + Send),
) -> Result<RestoreSummary, RestoreError> {
    let started = Instant::now();
    let mut engine = Engine::start(seeds, options, mode, limits).await?;
    let mut reader = RdbReader::open(source, limits.reader).await?;
    let mut next_report = (
        limits.progress_keys,
        Instant::now() + limits.progress_interval,
    );
    while let Some(key) = reader.next_key().await? {
        engine.summary.keys_read += 1;
        engine.summary.bytes = reader.summary().bytes_read;
        engine.add(&key).await?;
        if engine.summary.keys_read >= next_report.0 || Instant::now() >= next_report.1 {
            progress(&engine.progress(started));
            next_report = (
                engine.summary.keys_read + limits.progress_keys.max(1),
                Instant::now() + limits.progress_interval,
            );
        }
    }
    engine.finish().await?;
    engine.summary.bytes = reader.summary().bytes_read;
    engine.summary.elapsed = started.elapsed();
    progress(&engine.progress(started));
    Ok(engine.summary)
}

/// Unix time in milliseconds.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The state of one restore between reading keys and sending batches.
struct Engine {
    seeds: Vec<SocketAddr>,
    options: AdminOptions,
    mode: RestoreMode,
    limits: RestoreLimits,
    map: SlotMap,
    idle: BTreeMap<SocketAddr, Vec<Client>>,
    running: BTreeMap<SocketAddr, usize>,
    batcher: RestoreBatcher<SocketAddr>,
    queue: VecDeque<(SocketAddr, Batch)>,
    /// Argument bytes queued or in flight.
    held: usize,
    tasks: JoinSet<Done>,
    refreshes: u32,
    summary: RestoreSummary,
}

impl Engine {
    /// Loads the slot map and connects once to every master (so bad credentials or an
    /// unreachable master fail before anything is written).
    async fn start(
        seeds: &[SocketAddr],
        options: &AdminOptions,
        mode: RestoreMode,
        limits: RestoreLimits,
    ) -> Result<Self, RestoreError> {
        let map = load_slot_map(seeds, options).await?;
        let connects = map.masters().into_iter().map(|addr| async move {
            let client = Client::connect(addr, options)
                .await
                .map_err(RestoreError::redis(addr))?;
            Ok::<_, RestoreError>((addr, vec![client]))
        });
        let idle = try_join_all(connects).await?.into_iter().collect();
        Ok(Self {
            seeds: seeds.to_vec(),
            options: options.clone(),
            mode,
            limits,
            map,
            idle,
            running: BTreeMap::new(),
            batcher: RestoreBatcher::new(limits.batch),
            queue: VecDeque::new(),
            held: 0,
            tasks: JoinSet::new(),
            refreshes: 0,
            summary: RestoreSummary::default(),
        })
    }

    fn progress(&self, started: Instant) -> RestoreProgress {
        RestoreProgress {
            keys_read: self.summary.keys_read,
            restored: self.summary.restored,
            replaced: self.summary.replaced,
            expired_skipped: self.summary.expired_skipped,
            bytes_read: self.summary.bytes,
            elapsed: started.elapsed(),
        }
    }

    /// Routes one key; sends its master's batch when full.
    async fn add(&mut self, key: &RdbKey) -> Result<(), RestoreError> {
        if key.db != 0 {
            return Err(RestoreError::Database {
                key: printable_key(&key.key),
                db: key.db,
            });
        }
        let Some(cmd) = restore_cmd(key, now_ms()) else {
            self.summary.expired_skipped += 1;
            return Ok(());
        };
        let addr = self.owner(&key.key)?;
        if let Some(cmds) = self.batcher.push(addr, cmd) {
            self.enqueue(addr, Batch::new(cmds, false));
            self.pump().await?;
        }
        Ok(())
    }

    fn owner(&self, key: &[u8]) -> Result<SocketAddr, RestoreError> {
        let slot = key_slot(key);
        self.map
            .owner(slot)
            .ok_or_else(|| RestoreError::Topology(format!("slot {slot} has no owner")))
    }

    fn enqueue(&mut self, addr: SocketAddr, batch: Batch) {
        self.held += batch.bytes;
        self.queue.push_back((addr, batch));
    }

    /// Starts what may start, collects what finished, and waits while more than the byte
    /// budget is queued or in flight.
    async fn pump(&mut self) -> Result<(), RestoreError> {
        loop {
            while let Some(joined) = self.tasks.try_join_next() {
                self.absorb(joined).await?;
            }
            self.start_ready();
            if self.held <= self.limits.max_in_flight_bytes || self.tasks.is_empty() {
                return Ok(());
            }
            self.complete_one().await?;
        }
    }

    /// Sends the batches still open and waits for everything.
    async fn finish(&mut self) -> Result<(), RestoreError> {
        for (addr, cmds) in self.batcher.drain() {
            self.enqueue(addr, Batch::new(cmds, false));
        }
        loop {
            self.start_ready();
            if self.tasks.is_empty() && self.queue.is_empty() {
                return Ok(());
            }
            self.complete_one().await?;
        }
    }

    /// Starts queued batches whose master has a free pipeline.
    fn start_ready(&mut self) {
        let mut i = 0;
        while i < self.queue.len() {
            let Some(addr) = self.queue.get(i).map(|(addr, _)| *addr) else {
                break;
            };
            let running = self.running.entry(addr).or_default();
            if *running >= self.limits.pipelines_per_master.max(1) {
                i += 1;
                continue;
            }
            *running += 1;
            let Some((_, batch)) = self.queue.remove(i) else {
                break;
            };
            let client = self.idle.get_mut(&addr).and_then(Vec::pop);
            let job = Job {
                addr,
                options: self.options.clone(),
                mode: self.mode,
                limits: self.limits,
            };
            self.tasks.spawn(job.run(client, batch));
        }
    }

    async fn complete_one(&mut self) -> Result<(), RestoreError> {
        match self.tasks.join_next().await {
            Some(joined) => self.absorb(joined).await,
            None => Ok(()),
        }
    }

    /// Books a finished batch and queues what it left to re-send.
    async fn absorb(&mut self, joined: Result<Done, JoinError>) -> Result<(), RestoreError> {
        let done = joined.map_err(|e| RestoreError::Task(e.to_string()))?;
        self.held = self.held.saturating_sub(done.bytes);
        if let Some(running) = self.running.get_mut(&done.addr) {
            *running = running.saturating_sub(1);
        }
        if let Some(client) = done.client {
            self.idle.entry(done.addr).or_default().push(client);
        }
        self.summary.restored += done.restored;
        self.summary.replaced += done.replaced;
        self.summary.retried_batches += u64::from(done.retries);
        self.summary.redirected += (done.reroute.len() + done.ask.len()) as u64;
        *self.summary.per_master.entry(done.addr).or_default() += done.restored + done.replaced;
        if let Some(error) = done.error {
            return Err(error);
        }
        if !done.reroute.is_empty() {
            self.refresh().await?;
            let mut by_owner: BTreeMap<SocketAddr, Vec<Cmd>> = BTreeMap::new();
            for cmd in done.reroute {
                by_owner
                    .entry(self.owner(restore_key(&cmd))?)
                    .or_default()
                    .push(cmd);
            }
            for (addr, cmds) in by_owner {
                self.enqueue(addr, Batch::new(cmds, false));
            }
        }
        let mut by_target: BTreeMap<SocketAddr, Vec<Cmd>> = BTreeMap::new();
        for (addr, cmd) in done.ask {
            by_target.entry(addr).or_default().push(cmd);
        }
        for (addr, cmds) in by_target {
            self.enqueue(addr, Batch::new(cmds, true));
        }
        Ok(())
    }

    /// Loads the slot map again after a short pause (the cluster may be mid-change), at most
    /// [`RestoreLimits::max_refreshes`] times.
    async fn refresh(&mut self) -> Result<(), RestoreError> {
        self.refreshes += 1;
        if self.refreshes > self.limits.max_refreshes {
            return Err(RestoreError::Topology(format!(
                "slots kept moving: the slot map was loaded {} times",
                self.limits.max_refreshes
            )));
        }
        let pause = Duration::from_millis(100 * u64::from(self.refreshes.min(10)));
        tokio::time::sleep(pause).await;
        let mut seeds = self.seeds.clone();
        seeds.extend(self.map.masters());
        self.map = load_slot_map(&seeds, &self.options).await?;
        Ok(())
    }
}

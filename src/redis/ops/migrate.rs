//! Moving the keys of one slot from one node to another with `GETKEYSINSLOT` and
//! `MIGRATE ... KEYS`, shared by resharding and open-slot repair.
//!
//! MIGRATE is atomic per key: the source deletes a key only after the target acknowledged its
//! RESTORE. An interrupted run therefore leaves every key on the source, on the target, or (if
//! the source died between the two) on both; a key on both makes the next MIGRATE fail with
//! BUSYKEY, which is resolved here by comparing DUMP payloads.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Mutex, MutexGuard};

use crate::redis::client::{AdminOptions, Client, Frame};
use crate::redis::command::Cmd;
use crate::redis::error::RedisError;
use crate::redis::ids::NodeId;
use crate::redis::ops::OpError;
use crate::redis::reply;

/// What to do when a key exists on both sides with different values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConflictPolicy {
    /// Overwrite the target's copy with the source's. Right for a slot in MIGRATING state:
    /// while it is open, clients write existing keys on the source and new keys on the target,
    /// so a key on both sides comes from an interrupted MIGRATE and the source copy is the
    /// newer one.
    #[default]
    SourceWins,
    /// Stop with [`OpError::KeyConflict`] (the `redis-cli --cluster fix` behaviour without
    /// `--cluster-replace`). Right when the keys were never meant to be on the source.
    Refuse,
}

/// Counters updated while keys move, readable from another task.
#[derive(Debug, Default)]
pub struct Progress {
    /// Keys acknowledged by the target.
    pub keys_moved: AtomicU64,
    /// MIGRATE commands that completed.
    pub batches: AtomicU64,
    /// Slots finished (ownership handed over).
    pub slots_done: AtomicU64,
    /// Keys found on both sides and resolved.
    pub conflicts_resolved: AtomicU64,
}

/// Batch sizing for MIGRATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchOptions {
    /// Keys per MIGRATE at the start of each slot.
    pub initial: usize,
    /// Upper bound of keys per MIGRATE.
    pub max: usize,
    /// Each MIGRATE blocks the source (and the target while it restores); the batch is halved
    /// when one takes longer than this and doubled when it takes less than a quarter of it.
    /// This keeps big values from stalling the nodes past their node timeout while small values
    /// move in large batches.
    pub target_time: Duration,
    /// MIGRATE commands (each of one slot) sent back to back before reading replies, hiding
    /// the round trip. The source runs them back to back too, so a client of the source (or
    /// of the target) may wait for all of them: keep it small.
    pub pipeline_depth: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            initial: 100,
            max: 2000,
            target_time: Duration::from_millis(40),
            pipeline_depth: 2,
        }
    }
}

/// One MIGRATE pipeline at a time per node, shared by every stream of a reshard.
///
/// A MIGRATE blocks its source until the target has restored the keys, and the target while it
/// restores them; a node runs the MIGRATEs that reach it in one event-loop pass back to back.
/// With several streams per pair, or several pairs sharing a node (a 3→4's new shard takes
/// from three sources at once), a client of that node waited for all of them: 40–110 ms on a
/// loaded 2-core machine against redis-cli's 10–20 ms (`make bench-reshard`). Holding the
/// lanes of both ends bounds a node's stall to one pipeline, while the streams still overlap
/// everything else (SETSLOT, GETKEYSINSLOT, the round trips) and pairs with distinct nodes
/// still migrate in parallel.
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    by_node: BTreeMap<NodeId, Mutex<()>>,
    stopped: AtomicBool,
}

impl Lanes {
    pub(crate) fn new<'a>(nodes: impl IntoIterator<Item = &'a NodeId>) -> Self {
        Self {
            by_node: nodes
                .into_iter()
                .map(|n| (n.clone(), Mutex::new(())))
                .collect(),
            stopped: AtomicBool::new(false),
        }
    }

    /// No stream enters any more: one failed. Without this, streams queued behind a MIGRATE
    /// that timed out on a dead node would each wait out the same timeout in turn.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Waits for the lanes of both nodes, `None` once the reshard stopped. They are taken in
    /// id order, so two streams that share both nodes never hold one each.
    async fn enter(&self, a: &NodeId, b: &NodeId) -> Option<[Option<MutexGuard<'_, ()>>; 2]> {
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        let one = match self.by_node.get(first) {
            Some(m) => Some(m.lock().await),
            None => None,
        };
        let two = match self.by_node.get(second).filter(|_| first != second) {
            Some(m) => Some(m.lock().await),
            None => None,
        };
        (!self.stopped.load(Ordering::Relaxed)).then_some([one, two])
    }
}

/// Adaptive batch size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchSizer {
    current: usize,
    options: BatchOptions,
}

impl BatchSizer {
    pub(crate) fn new(options: BatchOptions) -> Self {
        Self {
            current: options.initial.clamp(1, options.max.max(1)),
            options,
        }
    }

    fn record(&mut self, keys: usize, elapsed: Duration) {
        let target = self.options.target_time;
        if elapsed > target && self.current > 1 {
            self.current = (self.current / 2).max(1);
        } else if elapsed < target / 4 && keys >= self.current {
            self.current = (self.current * 2).min(self.options.max.max(1));
        }
    }
}

/// Everything needed to move keys from one node to another.
pub(crate) struct KeyMover<'a> {
    pub source: &'a mut Client,
    pub source_id: &'a NodeId,
    pub target: &'a mut Client,
    pub target_id: &'a NodeId,
    pub options: &'a AdminOptions,
    pub conflicts: ConflictPolicy,
    pub progress: Option<&'a Progress>,
    /// Shared with the other streams of a reshard; `None` for a lone mover.
    pub lanes: Option<&'a Lanes>,
}

fn migrate_cmd(target: SocketAddr, options: &AdminOptions, replace: bool, keys: &[Bytes]) -> Cmd {
    let timeout_ms = u64::try_from(options.timeouts.migrate.as_millis()).unwrap_or(u64::MAX);
    let mut cmd = Cmd::new("MIGRATE")
        .arg(target.ip().to_string())
        .arg_int(target.port())
        .arg("")
        .arg_int(0)
        .arg_int(timeout_ms);
    if replace {
        cmd = cmd.arg("REPLACE");
    }
    if let Some(auth) = &options.auth {
        cmd = match &auth.username {
            Some(user) => cmd.arg("AUTH2").arg(user).arg(&auth.password),
            None => cmd.arg("AUTH").arg(&auth.password),
        };
    }
    keys.iter()
        .cloned()
        .fold(cmd.arg("KEYS"), |cmd, key| cmd.arg_bytes(key))
}

fn is_busykey(err: &RedisError) -> bool {
    matches!(err, RedisError::BusyKey(_)) || err.message_contains("BUSYKEY")
}

impl KeyMover<'_> {
    fn migrate_timeout(&self) -> Duration {
        self.options.timeouts.migrate * 2 + self.options.timeouts.command
    }

    /// Moves every key of `slot` from the source to the target. Returns the number of keys
    /// moved.
    pub(crate) async fn drain(
        &mut self,
        slot: u16,
        sizer: &mut BatchSizer,
    ) -> Result<u64, OpError> {
        self.drain_slots(&[slot], sizer).await
    }

    /// Moves every key of all `slots` from the source to the target. Each round takes the
    /// first `pipeline_depth` slots not yet empty, fetches up to `batch` keys of each (one
    /// pipelined GETKEYSINSLOT) and sends them as one MIGRATE per slot, all in one pipeline:
    /// small slots share round trips, and a node never has more than `pipeline_depth`
    /// MIGRATEs of this stream to run back to back.
    pub(crate) async fn drain_slots(
        &mut self,
        slots: &[u16],
        sizer: &mut BatchSizer,
    ) -> Result<u64, OpError> {
        let source_addr = self.source.addr();
        let mut moved = 0u64;
        let mut remaining: Vec<u16> = slots.to_vec();
        while !remaining.is_empty() {
            let batch = sizer.current.max(1);
            let round: Vec<u16> = remaining
                .iter()
                .take(sizer.options.pipeline_depth.max(1))
                .copied()
                .collect();
            let fetches: Vec<Cmd> = round
                .iter()
                .map(|s| Cmd::getkeysinslot(*s, batch))
                .collect();
            let replies = self
                .source
                .pipeline(&fetches)
                .await
                .map_err(OpError::node(source_addr))?;
            // MIGRATE refuses keys of different slots in one command (CROSSSLOT), so each
            // slot gets its own command; they still share one pipeline.
            let mut per_slot_keys: Vec<Vec<Bytes>> = Vec::new();
            let mut finished: Vec<u16> = Vec::new();
            for ((slot, cmd), reply) in round.iter().zip(&fetches).zip(replies) {
                let frame = reply.map_err(OpError::node(source_addr))?;
                let slot_keys =
                    reply::bytes_array(cmd, frame).map_err(OpError::node(source_addr))?;
                // A MIGRATING source never gains keys in the slot (new keys go to the target),
                // so a short answer empties the slot.
                if slot_keys.len() < batch {
                    finished.push(*slot);
                }
                if !slot_keys.is_empty() {
                    per_slot_keys.push(slot_keys);
                }
            }
            let chunks: Vec<&[Bytes]> = per_slot_keys.iter().map(Vec::as_slice).collect();
            if !chunks.is_empty() {
                moved += self.migrate_batches(&chunks, sizer).await?;
            }
            remaining.retain(|s| !finished.contains(s));
        }
        Ok(moved)
    }

    /// Sends one MIGRATE per chunk (each chunk holds keys of one slot), pipelined.
    async fn migrate_batches(
        &mut self,
        chunks: &[&[Bytes]],
        sizer: &mut BatchSizer,
    ) -> Result<u64, OpError> {
        let source_addr = self.source.addr();
        let target_addr = self.target.addr();
        let keys: usize = chunks.iter().map(|c| c.len()).sum();
        let cmds: Vec<Cmd> = chunks
            .iter()
            .map(|chunk| migrate_cmd(target_addr, self.options, false, chunk))
            .collect();
        let lanes = match self.lanes {
            Some(lanes) => Some(
                lanes
                    .enter(self.source_id, self.target_id)
                    .await
                    .ok_or_else(|| {
                        OpError::Precondition(
                            "stopped: another stream of this reshard failed".into(),
                        )
                    })?,
            ),
            None => None,
        };
        let started = Instant::now();
        let replies = self
            .source
            .pipeline_with_timeout(&cmds, self.migrate_timeout())
            .await
            .map_err(OpError::node(source_addr))?;
        let elapsed = started.elapsed();
        drop(lanes);
        let mut moved = 0u64;
        for ((chunk, cmd), result) in chunks.iter().zip(&cmds).zip(replies) {
            match result {
                Ok(frame) => self.accept_reply(cmd, frame, chunk.len())?,
                Err(err) if is_busykey(&err) => self.resolve_conflicts(chunk).await?,
                Err(err) => return Err(OpError::node(source_addr)(err)),
            }
            moved += chunk.len() as u64;
        }
        sizer.record(
            keys / chunks.len().max(1),
            elapsed / u32::try_from(chunks.len().max(1)).unwrap_or(u32::MAX),
        );
        Ok(moved)
    }

    fn accept_reply(&self, cmd: &Cmd, frame: Frame, keys: usize) -> Result<(), OpError> {
        match &frame {
            // NOKEY: every key of the batch vanished (expired or deleted) since GETKEYSINSLOT.
            Frame::SimpleString(s) if s.as_ref() == b"OK" || s.as_ref() == b"NOKEY" => {
                if let Some(p) = self.progress {
                    p.keys_moved.fetch_add(keys as u64, Ordering::Relaxed);
                    p.batches.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            _ => Err(OpError::node(self.source.addr())(
                RedisError::UnexpectedReply {
                    command: cmd.describe(),
                    reply: reply::render(&frame),
                },
            )),
        }
    }

    /// Some keys of `chunk` exist on the target already. MIGRATE stops at the first such key,
    /// after moving the ones before it, so each key is checked: equal DUMP payloads (or a key
    /// gone from either side) are safe to overwrite; different ones follow the policy.
    async fn resolve_conflicts(&mut self, chunk: &[Bytes]) -> Result<(), OpError> {
        let source_addr = self.source.addr();
        let target_addr = self.target.addr();
        let dumps = |keys: &[Bytes], asking: bool| -> Vec<Cmd> {
            keys.iter()
                .flat_map(|k| {
                    let dump = Cmd::new("DUMP").arg_bytes(k.clone());
                    if asking {
                        vec![Cmd::new("ASKING"), dump]
                    } else {
                        vec![dump]
                    }
                })
                .collect()
        };
        let source_dumps = self
            .source
            .pipeline(&dumps(chunk, false))
            .await
            .map_err(OpError::node(source_addr))?;
        // The target may not own the slot yet (IMPORTING): ASKING lets it answer for this key.
        let target_dumps = self
            .target
            .pipeline(&dumps(chunk, true))
            .await
            .map_err(OpError::node(target_addr))?;
        let dump_cmd = Cmd::new("DUMP");
        let mut differing = 0usize;
        let mut still_on_source = Vec::new();
        for (i, key) in chunk.iter().enumerate() {
            let on_source = dumped(&dump_cmd, source_addr, source_dumps.get(i))?;
            let on_target = dumped(&dump_cmd, target_addr, target_dumps.get(2 * i + 1))?;
            let Some(source_value) = on_source else {
                continue;
            };
            if on_target.as_ref().is_some_and(|t| t != &source_value) {
                differing += 1;
            }
            still_on_source.push(key.clone());
        }
        if differing > 0 && self.conflicts == ConflictPolicy::Refuse {
            return Err(OpError::KeyConflict {
                slot: chunk
                    .first()
                    .map_or(0, |k| redis_protocol::redis_keyslot(k)),
                from: self.source_id.clone(),
                to: self.target_id.clone(),
                count: differing,
            });
        }
        if differing > 0 {
            tracing::warn!(
                count = differing,
                "keys differ between source and target after an interrupted migration; the source copy wins"
            );
        }
        if still_on_source.is_empty() {
            return Ok(());
        }
        let cmd = migrate_cmd(target_addr, self.options, true, &still_on_source);
        let frame = self
            .source
            .call_with_timeout(&cmd, self.migrate_timeout())
            .await
            .map_err(OpError::node(source_addr))?;
        self.accept_reply(&cmd, frame, still_on_source.len())?;
        if let Some(p) = self.progress {
            p.conflicts_resolved
                .fetch_add(still_on_source.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The value of one DUMP reply. A redirect means the node does not hold the key: a MIGRATING
/// source answers ASK for keys it no longer has.
fn dumped(
    cmd: &Cmd,
    addr: SocketAddr,
    result: Option<&Result<Frame, RedisError>>,
) -> Result<Option<Bytes>, OpError> {
    match result {
        Some(Ok(frame)) => reply::opt_bytes(cmd, frame.clone()).map_err(OpError::node(addr)),
        Some(Err(RedisError::Ask { .. } | RedisError::Moved { .. })) | None => Ok(None),
        // Per-command replies of a pipeline only hold server-side errors, which are plain
        // data; `RedisError` itself cannot be cloned because of its io::Error variants.
        Some(Err(e)) => Err(OpError::node(addr)(RedisError::from_reply_line(
            &e.to_string(),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn id(c: char) -> NodeId {
        c.to_string().repeat(40).parse().expect("node id")
    }

    /// Streams of pairs that share a node take turns; the peak of MIGRATEs running at once on
    /// any node is one, whichever way round each pair names its ends, and nothing deadlocks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_runs_one_migrate_pipeline_at_a_time() {
        let (a, b, c) = (id('a'), id('b'), id('c'));
        let lanes = Arc::new(Lanes::new([&a, &b, &c]));
        let busy: Arc<BTreeMap<NodeId, AtomicUsize>> = Arc::new(
            [&a, &b, &c]
                .into_iter()
                .map(|n| (n.clone(), AtomicUsize::new(0)))
                .collect(),
        );
        let peak = Arc::new(AtomicUsize::new(0));
        let pairs = [
            (a.clone(), c.clone()),
            (c.clone(), b.clone()),
            (b.clone(), a.clone()),
        ];
        let mut tasks = Vec::new();
        for (from, to) in pairs.into_iter().cycle().take(12) {
            let (lanes, busy, peak) = (lanes.clone(), busy.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..20 {
                    let held = lanes.enter(&from, &to).await.expect("not stopped");
                    for n in [&from, &to] {
                        let now = busy[n].fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                    }
                    tokio::task::yield_now().await;
                    for n in [&from, &to] {
                        busy[n].fetch_sub(1, Ordering::SeqCst);
                    }
                    drop(held);
                }
            }));
        }
        let all = futures::future::join_all(tasks);
        let done = tokio::time::timeout(Duration::from_secs(30), all).await;
        assert!(done.is_ok(), "streams deadlocked on the lanes");
        assert_eq!(peak.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn no_stream_enters_after_the_reshard_stopped() {
        let (a, b) = (id('a'), id('b'));
        let lanes = Lanes::new([&a, &b]);
        assert!(lanes.enter(&a, &b).await.is_some());
        lanes.stop();
        assert!(lanes.enter(&b, &a).await.is_none());
    }

    /// Nodes outside the reshard (a lone mover's) have no lane and never wait.
    #[tokio::test]
    async fn a_node_without_a_lane_does_not_wait() {
        let lanes = Lanes::new([]);
        let held = lanes.enter(&id('a'), &id('b')).await.expect("entered");
        assert!(held.iter().all(Option::is_none));
    }
}

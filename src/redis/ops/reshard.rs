//! Moving slots between masters (reference §3.1), resumable at any point.
//!
//! Per slot S from A to B: `B: SETSLOT S IMPORTING A`, `A: SETSLOT S MIGRATING B`, then
//! `GETKEYSINSLOT` + `MIGRATE ... KEYS` batches until A has no key of S, then `SETSLOT S NODE B`
//! on B first, then on A, then on every other master. Before acting, the step reads where the
//! slot stands (who owns it on A and B, which markers are set) and continues from there, so a
//! run killed anywhere is finished by running it again.
//!
//! [`ClusterAdmin::reshard`] runs many slot moves at once: moves are grouped by (source,
//! target) pair, pairs run in parallel, and each pair runs several slot streams so the
//! round trips of one slot overlap with the MIGRATE work of another.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::redis::client::Client;
use crate::redis::command::Cmd;
use crate::redis::error::RedisError;
use crate::redis::ids::{NodeId, ranges_from_slots};
use crate::redis::model::ClusterView;
use crate::redis::ops::distribution::SlotMove;
use crate::redis::ops::migrate::{BatchOptions, BatchSizer, ConflictPolicy, KeyMover, Progress};
use crate::redis::ops::{ClusterAdmin, OpError, StepOutcome};
use crate::redis::parse::cluster_nodes::{NodeEntry, OpenSlotState};
use crate::redis::reply;

/// How to move one slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MoveOptions {
    /// MIGRATE batch sizing.
    pub batch: BatchOptions,
    /// Keys found on both sides (after an interrupted MIGRATE).
    pub conflicts: ConflictPolicy,
}

/// How to run many slot moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReshardOptions {
    /// Per-slot options.
    pub moves: MoveOptions,
    /// Concurrent slot streams per (source, target) pair.
    pub streams_per_pair: usize,
    /// Upper bound on concurrent slot streams overall.
    pub max_streams: usize,
}

impl Default for ReshardOptions {
    fn default() -> Self {
        Self {
            moves: MoveOptions::default(),
            streams_per_pair: 4,
            max_streams: 16,
        }
    }
}

/// What moving one slot did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MoveReport {
    /// The slot.
    pub slot: u16,
    /// `AlreadyDone` when the target already owned the slot with nothing left open.
    pub step: StepOutcome,
    /// Keys moved by this call.
    pub keys_moved: u64,
}

/// What a reshard did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReshardReport {
    /// Slots whose ownership this run changed (or finished changing).
    pub slots_moved: usize,
    /// Slots that were already where they should be.
    pub slots_already_done: usize,
    /// Unassigned slots added to their target.
    pub slots_added: usize,
    /// Keys moved.
    pub keys_moved: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// One end of a move: id and client address.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Endpoint {
    id: NodeId,
    addr: SocketAddr,
}

/// Where a slot stands, from the two nodes' own `myself` lines.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SlotState {
    source_owns: bool,
    target_owns: bool,
    source_migrating_to: Option<NodeId>,
    target_importing_from: Option<NodeId>,
}

impl SlotState {
    fn of(slot: u16, source: &NodeEntry, target: &NodeEntry) -> Self {
        Self {
            source_owns: source.owns(slot),
            target_owns: target.owns(slot),
            source_migrating_to: match source.open_state(slot) {
                Some(OpenSlotState::Migrating { to }) => Some(to.clone()),
                _ => None,
            },
            target_importing_from: match target.open_state(slot) {
                Some(OpenSlotState::Importing { from }) => Some(from.clone()),
                _ => None,
            },
        }
    }
}

/// Errors from SETSLOT on a node that has meanwhile turned into a replica (its last slot
/// left, and `cluster-allow-replica-migration` made it follow the target). redis-cli ignores
/// them too.
fn is_not_master(err: &RedisError) -> bool {
    err.message_contains("only with masters")
}

/// A worker moving slots between one pair, holding its connections.
struct SlotMover<'a> {
    admin: &'a ClusterAdmin,
    source: Endpoint,
    target: Endpoint,
    others: Vec<SocketAddr>,
    source_client: Client,
    target_client: Client,
    other_clients: Vec<Option<Client>>,
    options: MoveOptions,
    progress: Option<&'a Progress>,
}

impl<'a> SlotMover<'a> {
    async fn connect(
        admin: &'a ClusterAdmin,
        source: Endpoint,
        target: Endpoint,
        others: Vec<SocketAddr>,
        options: MoveOptions,
        progress: Option<&'a Progress>,
    ) -> Result<Self, OpError> {
        let source_client = admin.connect(source.addr).await?;
        let target_client = admin.connect(target.addr).await?;
        let other_clients = others.iter().map(|_| None).collect();
        Ok(Self {
            admin,
            source,
            target,
            others,
            source_client,
            target_client,
            other_clients,
            options,
            progress,
        })
    }

    /// Replaces a connection that a timeout or framing error left unusable.
    async fn refresh(&mut self) -> Result<(), OpError> {
        if self.source_client.is_poisoned() {
            self.source_client = self.admin.connect(self.source.addr).await?;
        }
        if self.target_client.is_poisoned() {
            self.target_client = self.admin.connect(self.target.addr).await?;
        }
        Ok(())
    }

    async fn call_source(&mut self, cmd: &Cmd) -> Result<crate::redis::client::Frame, RedisError> {
        self.source_client.call(cmd).await
    }

    async fn call_target(&mut self, cmd: &Cmd) -> Result<crate::redis::client::Frame, RedisError> {
        self.target_client.call(cmd).await
    }

    async fn setslot(&mut self, on_target: bool, cmd: &Cmd) -> Result<(), OpError> {
        let (addr, result) = if on_target {
            (self.target.addr, self.call_target(cmd).await)
        } else {
            (self.source.addr, self.call_source(cmd).await)
        };
        let frame = result.map_err(OpError::node(addr))?;
        reply::ok(cmd, frame).map_err(OpError::node(addr))
    }

    /// Moves one slot, continuing from `state`.
    async fn run(&mut self, slot: u16, state: SlotState) -> Result<MoveReport, OpError> {
        self.refresh().await?;
        let source_id = self.source.id.clone();
        let target_id = self.target.id.clone();
        if let Some(other) = state
            .source_migrating_to
            .as_ref()
            .filter(|to| **to != target_id)
        {
            return Err(OpError::Precondition(format!(
                "slot {slot} is migrating from {} to {}, not {}; repair open slots first",
                source_id.short(),
                other.short(),
                target_id.short()
            )));
        }
        if let Some(other) = state
            .target_importing_from
            .as_ref()
            .filter(|from| **from != source_id)
        {
            return Err(OpError::Precondition(format!(
                "slot {slot} is importing on {} from {}, not {}; repair open slots first",
                target_id.short(),
                other.short(),
                source_id.short()
            )));
        }
        if state.target_owns && !state.source_owns {
            // Handed over on the target already. The source may still hold the MIGRATING
            // marker or stray keys if the run died between the two SETSLOT NODE.
            let count_cmd = Cmd::countkeysinslot(slot);
            let frame = self
                .call_source(&count_cmd)
                .await
                .map_err(OpError::node(self.source.addr))?;
            let left = reply::count(&count_cmd, frame).map_err(OpError::node(self.source.addr))?;
            if left == 0
                && state.source_migrating_to.is_none()
                && state.target_importing_from.is_none()
            {
                return Ok(MoveReport {
                    slot,
                    step: StepOutcome::AlreadyDone,
                    keys_moved: 0,
                });
            }
        } else if !state.source_owns && !state.target_owns {
            return Err(OpError::Precondition(format!(
                "slot {slot} is served by neither {} nor {}",
                source_id.short(),
                target_id.short()
            )));
        } else if !state.target_owns {
            // Target first, so it accepts ASKING before the source starts redirecting.
            if state.target_importing_from.is_none() {
                self.setslot(true, &Cmd::setslot_importing(slot, &source_id))
                    .await?;
            }
            if state.source_migrating_to.is_none() {
                self.setslot(false, &Cmd::setslot_migrating(slot, &target_id))
                    .await?;
            }
        }
        let mut sizer = BatchSizer::new(self.options.batch);
        let mut moved = self.drain(slot, &mut sizer).await?;
        // Target first: it bumps its epoch and takes the slot; the source then refuses while
        // it still holds keys of the slot, in which case the keys written meanwhile move too.
        if !state.target_owns || state.target_importing_from.is_some() {
            self.setslot(true, &Cmd::setslot_node(slot, &target_id))
                .await?;
        }
        let mut attempts = 0;
        loop {
            let cmd = Cmd::setslot_node(slot, &target_id);
            match self.call_source(&cmd).await {
                Ok(frame) => {
                    reply::ok(&cmd, frame).map_err(OpError::node(self.source.addr))?;
                    break;
                }
                Err(err) if is_not_master(&err) => break,
                Err(err) if err.message_contains("still hold keys") && attempts < 5 => {
                    attempts += 1;
                    moved += self.drain(slot, &mut sizer).await?;
                }
                Err(err) => return Err(OpError::node(self.source.addr)(err)),
            }
        }
        self.tell_others(slot).await;
        if let Some(p) = self.progress {
            p.slots_done.fetch_add(1, Ordering::Relaxed);
        }
        Ok(MoveReport {
            slot,
            step: StepOutcome::Applied,
            keys_moved: moved,
        })
    }

    async fn drain(&mut self, slot: u16, sizer: &mut BatchSizer) -> Result<u64, OpError> {
        let mut mover = KeyMover {
            source: &mut self.source_client,
            source_id: &self.source.id,
            target: &mut self.target_client,
            target_id: &self.target.id,
            options: self.admin.options(),
            conflicts: self.options.conflicts,
            progress: self.progress,
        };
        mover.drain(slot, sizer).await
    }

    /// SETSLOT NODE on every other master, so clients there are redirected straight to the
    /// new owner instead of waiting for gossip. Failures only cost extra MOVED hops until
    /// gossip catches up, so they are logged, not returned.
    async fn tell_others(&mut self, slot: u16) {
        let cmd = Cmd::setslot_node(slot, &self.target.id);
        let admin = self.admin;
        let futures = self
            .others
            .iter()
            .zip(self.other_clients.iter_mut())
            .map(|(addr, client)| {
                let cmd = &cmd;
                async move {
                    if client.as_ref().is_none_or(Client::is_poisoned) {
                        *client = admin.connect(*addr).await.ok();
                    }
                    let Some(c) = client.as_mut() else {
                        tracing::warn!(%addr, slot, "cannot reach master to announce the new slot owner");
                        return;
                    };
                    match c.call(cmd).await {
                        Ok(_) => {}
                        Err(err) if is_not_master(&err) => {}
                        Err(err) => {
                            tracing::warn!(%addr, slot, error = %err, "SETSLOT NODE on another master failed");
                        }
                    }
                }
            });
        join_all(futures).await;
    }
}

/// Other masters (not `a` or `b`) in the view, by address.
fn other_masters(view: &ClusterView, a: &NodeId, b: &NodeId) -> Vec<SocketAddr> {
    view.masters()
        .filter(|m| m.id() != a && m.id() != b)
        .map(|m| m.addr)
        .collect()
}

/// Checks that both ends are reachable masters and that every master knows the target.
fn endpoints(
    view: &ClusterView,
    from: &NodeId,
    to: &NodeId,
) -> Result<(Endpoint, Endpoint), OpError> {
    let source = ClusterAdmin::require(view, from)?;
    let target = ClusterAdmin::require(view, to)?;
    for (node, role) in [(source, "source"), (target, "target")] {
        if !node.is_master() {
            return Err(OpError::Precondition(format!(
                "{role} {} is not a master",
                node.id().short()
            )));
        }
    }
    if let Some(unaware) = view
        .masters()
        .find(|m| m.sees(to).is_none_or(|e| e.flags.handshake))
    {
        return Err(OpError::Precondition(format!(
            "master {} does not know the target {} yet (MEET first)",
            unaware.id().short(),
            to.short()
        )));
    }
    Ok((
        Endpoint {
            id: from.clone(),
            addr: source.addr,
        },
        Endpoint {
            id: to.clone(),
            addr: target.addr,
        },
    ))
}

impl ClusterAdmin {
    /// Moves one slot from `from` to `to`, or finishes a move an earlier run left half done.
    /// Reads the slot's current state on both nodes first; returns `AlreadyDone` when `to`
    /// owns the slot and nothing is left open.
    pub async fn move_slot(
        &self,
        slot: u16,
        from: &NodeId,
        to: &NodeId,
        options: &MoveOptions,
        progress: Option<&Progress>,
    ) -> Result<MoveReport, OpError> {
        let view = self.observe().await;
        let (source, target) = endpoints(&view, from, to)?;
        let state = {
            let s = Self::require(&view, from)?;
            let t = Self::require(&view, to)?;
            SlotState::of(slot, &s.myself, &t.myself)
        };
        let others = other_masters(&view, from, to);
        let mut mover =
            SlotMover::connect(self, source, target, others, *options, progress).await?;
        mover.run(slot, state).await
    }

    /// Runs many slot moves: unassigned slots (`from: None`) are added to their target, the
    /// rest move by (source, target) pair, pairs in parallel, each pair with several streams.
    /// Resumable like [`ClusterAdmin::move_slot`]: running the same plan again after a crash
    /// finishes it. Stops at the first error (other streams finish their current slot).
    pub async fn reshard(
        &self,
        moves: &[SlotMove],
        options: &ReshardOptions,
        progress: Option<&Progress>,
    ) -> Result<ReshardReport, OpError> {
        let started = Instant::now();
        let mut report = ReshardReport::default();
        let view = self.observe().await;
        let mut unassigned: BTreeMap<NodeId, Vec<u16>> = BTreeMap::new();
        let mut pairs: BTreeMap<(NodeId, NodeId), VecDeque<u16>> = BTreeMap::new();
        for m in moves {
            match &m.from {
                None => unassigned.entry(m.to.clone()).or_default().push(m.slot),
                Some(from) if from == &m.to => {}
                Some(from) => pairs
                    .entry((from.clone(), m.to.clone()))
                    .or_default()
                    .push_back(m.slot),
            }
        }
        for (to, slots) in unassigned {
            let addr = Self::require(&view, &to)?.addr;
            if self
                .add_slot_ranges(addr, &ranges_from_slots(slots.iter().copied()))
                .await?
                == StepOutcome::Applied
            {
                report.slots_added += slots.len();
            }
        }
        if pairs.is_empty() {
            report.elapsed = started.elapsed();
            return Ok(report);
        }
        let max_streams = options.max_streams.max(1);
        let per_pair = options
            .streams_per_pair
            .max(1)
            .min((max_streams / pairs.len()).max(1));
        let totals = Mutex::new(ReshardReport::default());
        let failed = std::sync::atomic::AtomicBool::new(false);
        let mut workers = Vec::new();
        for ((from, to), slots) in pairs {
            let (source, target) = endpoints(&view, &from, &to)?;
            let (s, t) = (Self::require(&view, &from)?, Self::require(&view, &to)?);
            let states: BTreeMap<u16, SlotState> = slots
                .iter()
                .map(|slot| (*slot, SlotState::of(*slot, &s.myself, &t.myself)))
                .collect();
            let queue = Arc::new(Mutex::new(slots));
            let states = Arc::new(states);
            let others = other_masters(&view, &from, &to);
            for _ in 0..per_pair {
                let (queue, states) = (queue.clone(), states.clone());
                let (source, target, others) = (source.clone(), target.clone(), others.clone());
                let (totals, failed) = (&totals, &failed);
                let moves_options = options.moves;
                workers.push(async move {
                    let mut mover =
                        SlotMover::connect(self, source, target, others, moves_options, progress)
                            .await?;
                    loop {
                        if failed.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let next = queue.lock().map(|mut q| q.pop_front()).ok().flatten();
                        let Some(slot) = next else {
                            return Ok(());
                        };
                        let Some(state) = states.get(&slot).cloned() else {
                            continue;
                        };
                        match mover.run(slot, state).await {
                            Ok(r) => {
                                if let Ok(mut t) = totals.lock() {
                                    t.keys_moved += r.keys_moved;
                                    match r.step {
                                        StepOutcome::Applied => t.slots_moved += 1,
                                        StepOutcome::AlreadyDone => t.slots_already_done += 1,
                                    }
                                }
                            }
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                });
            }
        }
        let results: Vec<Result<(), OpError>> = join_all(workers).await;
        if let Some(err) = results.into_iter().find_map(Result::err) {
            return Err(err);
        }
        let totals = totals.lock().map(|t| *t).unwrap_or_default();
        report.slots_moved = totals.slots_moved;
        report.slots_already_done = totals.slots_already_done;
        report.keys_moved = totals.keys_moved;
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

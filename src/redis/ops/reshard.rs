//! Moving slots between masters (reference §3.1), resumable at any point.
//!
//! Per slot S from A to B: `B: SETSLOT S IMPORTING A`, `A: SETSLOT S MIGRATING B`, then
//! `GETKEYSINSLOT` + `MIGRATE ... KEYS` batches until A has no key of S, then `SETSLOT S NODE B`
//! on B first, then on A, then on every other master. Before acting, the step reads where the
//! slot stands (who owns it on A and B, which markers are set) and continues from there, so a
//! run killed anywhere is finished by running it again.
//!
//! Many slot moves at once: [`super::reshard_many`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::join_all;

use crate::redis::client::Client;
use crate::redis::command::Cmd;
use crate::redis::error::RedisError;
use crate::redis::ids::NodeId;
use crate::redis::model::ClusterView;
use crate::redis::ops::migrate::{
    BatchOptions, BatchSizer, ConflictPolicy, KeyMover, Lanes, Progress,
};
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
    /// Slots a stream moves together: their SETSLOT commands share pipelines (and Redis's
    /// nodes.conf fsyncs) and their keys share MIGRATE batches. Larger groups cut per-slot
    /// overhead; smaller ones keep each slot open (clients seeing ASK) for less time.
    pub slots_per_group: usize,
    /// Once this much time has passed, each stream finishes the group it is moving and stops
    /// (every stream moves at least one group): a step of a loaded machine stays short, so its
    /// progress shows and other concerns get their turn. The rest is moved by the next run.
    /// `None`: until every slot has moved.
    pub time_budget: Option<Duration>,
}

impl Default for ReshardOptions {
    fn default() -> Self {
        Self {
            moves: MoveOptions::default(),
            streams_per_pair: 8,
            max_streams: 16,
            slots_per_group: 8,
            time_budget: None,
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
pub(super) struct Endpoint {
    id: NodeId,
    addr: SocketAddr,
}

/// Where a slot stands, from the two nodes' own `myself` lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SlotState {
    source_owns: bool,
    target_owns: bool,
    source_migrating_to: Option<NodeId>,
    target_importing_from: Option<NodeId>,
}

impl SlotState {
    pub(super) fn of(slot: u16, source: &NodeEntry, target: &NodeEntry) -> Self {
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
pub(super) struct SlotMover<'a> {
    admin: &'a ClusterAdmin,
    source: Endpoint,
    target: Endpoint,
    others: Vec<SocketAddr>,
    source_client: Client,
    target_client: Client,
    other_clients: Vec<Option<Client>>,
    options: MoveOptions,
    progress: Option<&'a Progress>,
    lanes: Option<&'a Lanes>,
    /// Kept across groups: what batch size suits the data is learned once per stream.
    sizer: BatchSizer,
}

impl<'a> SlotMover<'a> {
    pub(super) async fn connect(
        admin: &'a ClusterAdmin,
        source: Endpoint,
        target: Endpoint,
        others: Vec<SocketAddr>,
        options: MoveOptions,
        progress: Option<&'a Progress>,
        lanes: Option<&'a Lanes>,
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
            lanes,
            sizer: BatchSizer::new(options.batch),
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

    /// Sends `cmds` to the source or the target in one pipeline and expects `+OK` from each,
    /// except for errors `tolerate` accepts; returns those with their command's index.
    async fn setslots(
        &mut self,
        on_target: bool,
        cmds: &[Cmd],
        tolerate: impl Fn(&RedisError) -> bool,
    ) -> Result<Vec<(usize, RedisError)>, OpError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let (addr, client) = if on_target {
            (self.target.addr, &mut self.target_client)
        } else {
            (self.source.addr, &mut self.source_client)
        };
        let replies = client.pipeline(cmds).await.map_err(OpError::node(addr))?;
        let mut tolerated = Vec::new();
        for (i, (cmd, result)) in cmds.iter().zip(replies).enumerate() {
            match result {
                Ok(frame) => reply::ok(cmd, frame).map_err(OpError::node(addr))?,
                Err(err) if tolerate(&err) => tolerated.push((i, err)),
                Err(err) => return Err(OpError::node(addr)(err)),
            }
        }
        Ok(tolerated)
    }

    /// Checks that the state of each slot allows moving it from source to target.
    fn check(&self, slot: u16, state: &SlotState) -> Result<(), OpError> {
        let (source_id, target_id) = (&self.source.id, &self.target.id);
        if let Some(other) = state
            .source_migrating_to
            .as_ref()
            .filter(|to| *to != target_id)
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
            .filter(|from| *from != source_id)
        {
            return Err(OpError::Precondition(format!(
                "slot {slot} is importing on {} from {}, not {}; repair open slots first",
                target_id.short(),
                other.short(),
                source_id.short()
            )));
        }
        if !state.source_owns && !state.target_owns {
            return Err(OpError::Precondition(format!(
                "slot {slot} is served by neither {} nor {}",
                source_id.short(),
                target_id.short()
            )));
        }
        Ok(())
    }

    /// Moves a group of slots, each continuing from its own state. Slots of a group share
    /// pipelines for every SETSLOT step and MIGRATE batches for their keys, so Redis saves
    /// nodes.conf (an fsync) once per step for the whole group instead of once per slot.
    pub(super) async fn run_group(
        &mut self,
        group: &[(u16, SlotState)],
    ) -> Result<Vec<MoveReport>, OpError> {
        self.refresh().await?;
        for (slot, state) in group {
            self.check(*slot, state)?;
        }
        let source_addr = self.source.addr;
        // Slots the target already owns may be finished, or may still have a marker or stray
        // keys on the source if an earlier run died between the two SETSLOT NODE.
        let handed_over: Vec<u16> = group
            .iter()
            .filter(|(_, st)| st.target_owns && !st.source_owns)
            .map(|(s, _)| *s)
            .collect();
        let counts: Vec<Cmd> = handed_over
            .iter()
            .map(|s| Cmd::countkeysinslot(*s))
            .collect();
        let mut left_on_source: BTreeMap<u16, u64> = BTreeMap::new();
        if !counts.is_empty() {
            let replies = self
                .source_client
                .pipeline(&counts)
                .await
                .map_err(OpError::node(source_addr))?;
            for ((slot, cmd), r) in handed_over.iter().zip(&counts).zip(replies) {
                let n = reply::count(cmd, r.map_err(OpError::node(source_addr))?)
                    .map_err(OpError::node(source_addr))?;
                left_on_source.insert(*slot, n);
            }
        }
        let mut reports = Vec::new();
        let mut active: Vec<(u16, &SlotState)> = Vec::new();
        for (slot, state) in group {
            let done = left_on_source.get(slot) == Some(&0)
                && state.source_migrating_to.is_none()
                && state.target_importing_from.is_none();
            if done {
                reports.push(MoveReport {
                    slot: *slot,
                    step: StepOutcome::AlreadyDone,
                    keys_moved: 0,
                });
            } else {
                active.push((*slot, state));
            }
        }
        if active.is_empty() {
            return Ok(reports);
        }
        let (source_id, target_id) = (self.source.id.clone(), self.target.id.clone());
        // Target first, so it accepts ASKING before the source starts redirecting.
        let importing: Vec<Cmd> = active
            .iter()
            .filter(|(_, st)| !st.target_owns && st.target_importing_from.is_none())
            .map(|(s, _)| Cmd::setslot_importing(*s, &source_id))
            .collect();
        self.setslots(true, &importing, |_| false).await?;
        let migrating: Vec<Cmd> = active
            .iter()
            .filter(|(_, st)| !st.target_owns && st.source_migrating_to.is_none())
            .map(|(s, _)| Cmd::setslot_migrating(*s, &target_id))
            .collect();
        self.setslots(false, &migrating, |_| false).await?;
        let slots: Vec<u16> = active.iter().map(|(s, _)| *s).collect();
        let mut moved = self.drain(&slots).await?;
        // The target takes the slots first (and bumps its epoch); then the source, which
        // refuses while it still holds keys of a slot.
        let assign_target: Vec<Cmd> = active
            .iter()
            .filter(|(_, st)| !st.target_owns || st.target_importing_from.is_some())
            .map(|(s, _)| Cmd::setslot_node(*s, &target_id))
            .collect();
        self.setslots(true, &assign_target, |_| false).await?;
        let mut pending = slots.clone();
        for attempt in 0..5 {
            let cmds: Vec<Cmd> = pending
                .iter()
                .map(|s| Cmd::setslot_node(*s, &target_id))
                .collect();
            // A source that gave away its last slot turns into a replica of the target and
            // refuses SETSLOT from then on: that is the expected end state, not an error.
            let refused = self
                .setslots(false, &cmds, |e| {
                    is_not_master(e) || e.message_contains("still hold keys")
                })
                .await?;
            let again: Vec<u16> = refused
                .iter()
                .filter(|(_, e)| e.message_contains("still hold keys"))
                .filter_map(|(i, _)| pending.get(*i).copied())
                .collect();
            if again.is_empty() {
                break;
            }
            if attempt == 4 {
                return Err(OpError::Verification(format!(
                    "{} still holds keys of {} slot(s) after repeated draining",
                    source_id.short(),
                    again.len()
                )));
            }
            moved += self.drain(&again).await?;
            pending = again;
        }
        self.tell_others(&slots).await;
        if let Some(p) = self.progress {
            p.slots_done
                .fetch_add(slots.len() as u64, Ordering::Relaxed);
        }
        // Keys are counted per group; attribute them to the group's first slot report.
        for (i, slot) in slots.iter().enumerate() {
            reports.push(MoveReport {
                slot: *slot,
                step: StepOutcome::Applied,
                keys_moved: if i == 0 {
                    std::mem::take(&mut moved)
                } else {
                    0
                },
            });
        }
        Ok(reports)
    }

    async fn drain(&mut self, slots: &[u16]) -> Result<u64, OpError> {
        let mut mover = KeyMover {
            source: &mut self.source_client,
            source_id: &self.source.id,
            target: &mut self.target_client,
            target_id: &self.target.id,
            options: self.admin.options(),
            conflicts: self.options.conflicts,
            progress: self.progress,
            lanes: self.lanes,
        };
        mover.drain_slots(slots, &mut self.sizer).await
    }

    /// SETSLOT NODE on every other master, so clients there are redirected straight to the
    /// new owner instead of waiting for gossip. Failures only cost extra MOVED hops until
    /// gossip catches up, so they are logged, not returned.
    async fn tell_others(&mut self, slots: &[u16]) {
        let cmds: Vec<Cmd> = slots
            .iter()
            .map(|s| Cmd::setslot_node(*s, &self.target.id))
            .collect();
        let admin = self.admin;
        let futures = self
            .others
            .iter()
            .zip(self.other_clients.iter_mut())
            .map(|(addr, client)| {
                let cmds = &cmds;
                async move {
                    if client.as_ref().is_none_or(Client::is_poisoned) {
                        *client = admin.connect(*addr).await.ok();
                    }
                    let Some(c) = client.as_mut() else {
                        tracing::warn!(%addr, "cannot reach master to announce new slot owners");
                        return;
                    };
                    match c.pipeline(cmds).await {
                        Ok(replies) => {
                            for err in replies.into_iter().filter_map(Result::err) {
                                if !is_not_master(&err) {
                                    tracing::warn!(%addr, error = %err, "SETSLOT NODE on another master failed");
                                }
                            }
                        }
                        Err(err) => {
                            tracing::warn!(%addr, error = %err, "SETSLOT NODE on another master failed");
                        }
                    }
                }
            });
        join_all(futures).await;
    }
}

/// Other masters (not `a` or `b`) in the view, by address.
pub(super) fn other_masters(view: &ClusterView, a: &NodeId, b: &NodeId) -> Vec<SocketAddr> {
    view.masters()
        .filter(|m| m.id() != a && m.id() != b)
        .map(|m| m.addr)
        .collect()
}

/// A move whose source gave away its last slot and turned into a replica (Redis does that
/// with `cluster-allow-replica-migration yes`): the target owning the slot is all there is
/// left to check, as a replica holds no open-slot state.
pub(super) fn finished_with_source_demoted(
    view: &ClusterView,
    slot: u16,
    from: &NodeId,
    to: &NodeId,
) -> bool {
    let target_owns = view
        .node(to)
        .is_some_and(|t| t.is_master() && t.myself.owns(slot));
    let source_demoted = view.node(from).is_some_and(|s| !s.is_master());
    target_owns && source_demoted
}

/// Checks that both ends are reachable masters and that every master knows the target.
pub(super) fn endpoints(
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
        if finished_with_source_demoted(&view, slot, from, to) {
            return Ok(MoveReport {
                slot,
                step: StepOutcome::AlreadyDone,
                keys_moved: 0,
            });
        }
        let (source, target) = endpoints(&view, from, to)?;
        let state = {
            let s = Self::require(&view, from)?;
            let t = Self::require(&view, to)?;
            SlotState::of(slot, &s.myself, &t.myself)
        };
        let others = other_masters(&view, from, to);
        let mut mover =
            SlotMover::connect(self, source, target, others, *options, progress, None).await?;
        let reports = mover.run_group(&[(slot, state)]).await?;
        reports.into_iter().next().ok_or_else(|| {
            OpError::Verification(format!("slot {slot}: the move produced no report"))
        })
    }
}

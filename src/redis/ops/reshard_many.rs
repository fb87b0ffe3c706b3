//! [`ClusterAdmin::reshard`]: many slot moves at once. Moves are grouped by (source, target)
//! pair, pairs run in parallel, and each pair runs several slot streams so that the round trips
//! of one slot overlap with the MIGRATE work of another. Each slot move is the resumable one of
//! [`super::reshard`].

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::join_all;

use crate::redis::ids::{NodeId, ranges_from_slots};
use crate::redis::ops::distribution::SlotMove;
use crate::redis::ops::migrate::{Lanes, Progress};
use crate::redis::ops::reshard::{
    Endpoint, MoveOptions, ReshardOptions, ReshardReport, SlotMover, SlotState, endpoints,
    finished_with_source_demoted, other_masters,
};
use crate::redis::ops::{ClusterAdmin, OpError, StepOutcome};

impl ClusterAdmin {
    /// Runs many slot moves: unassigned slots (`from: None`) are added to their target, the
    /// rest move by (source, target) pair, pairs in parallel, each pair with several streams.
    /// Resumable like [`ClusterAdmin::move_slot`]: running the same plan again after a crash
    /// finishes it. Stops at the first error: the other streams stop at their next MIGRATE,
    /// and the slots left open are finished by the next run (or `fix_open_slots`). A node
    /// runs one MIGRATE pipeline at a time, whatever the number of streams. With a
    /// `time_budget` it returns once the budget is spent, without error and with no slot
    /// open: the report counts what moved, and the same plan run again moves the rest.
    pub async fn reshard(
        &self,
        moves: &[SlotMove],
        options: &ReshardOptions,
        progress: Option<&Progress>,
    ) -> Result<ReshardReport, OpError> {
        self.reshard_while(moves, options, progress, &|| true).await
    }

    /// [`ClusterAdmin::reshard`] that asks `keep_going` before each group of slots and stops
    /// when it says no (every stream finishes the group it is moving, so no slot is left open
    /// by this stop). The operator passes its leadership: a replica that lost its Lease
    /// mid-batch (paused, partitioned from the API server) must not keep moving slots while
    /// the new leader plans its own moves from a view that changes under it. What is left is
    /// finished by whoever runs the plan next: each slot move is resumable.
    pub async fn reshard_while(
        &self,
        moves: &[SlotMove],
        options: &ReshardOptions,
        progress: Option<&Progress>,
        keep_going: &(dyn Fn() -> bool + Sync),
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
                Some(from) if finished_with_source_demoted(&view, m.slot, from, &m.to) => {
                    report.slots_already_done += 1;
                }
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
        let shared = Shared {
            lanes: Lanes::new(pairs.keys().flat_map(|(from, to)| [from, to])),
            totals: Mutex::new(ReshardReport::default()),
            failed: AtomicBool::new(false),
            first_error: Mutex::new(None),
            keep_going,
            group_size: options.slots_per_group.max(1),
            deadline: options.time_budget.map(|b| started + b),
        };
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
                let pair = Pair {
                    source: source.clone(),
                    target: target.clone(),
                    others: others.clone(),
                    queue: queue.clone(),
                    states: states.clone(),
                };
                let shared = &shared;
                let moves = options.moves;
                workers.push(async move {
                    if let Err(e) = self.stream(shared, pair, moves, progress).await {
                        shared.fail(e);
                    }
                });
            }
        }
        join_all(workers).await;
        if let Some(err) = shared.first_error.lock().ok().and_then(|mut f| f.take()) {
            return Err(err);
        }
        let totals = shared.totals.lock().map(|t| *t).unwrap_or_default();
        report.slots_moved = totals.slots_moved;
        report.slots_already_done = totals.slots_already_done;
        report.keys_moved = totals.keys_moved;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// One stream: takes groups of the pair's slots off the shared queue and moves them until
    /// the queue is empty or any stream failed.
    async fn stream(
        &self,
        shared: &Shared<'_>,
        pair: Pair,
        moves: MoveOptions,
        progress: Option<&Progress>,
    ) -> Result<(), OpError> {
        let mut mover = SlotMover::connect(
            self,
            pair.source,
            pair.target,
            pair.others,
            moves,
            progress,
            Some(&shared.lanes),
        )
        .await?;
        loop {
            if shared.failed.load(Ordering::Relaxed) {
                return Ok(());
            }
            if !(shared.keep_going)() {
                // Not a failure: the other streams finish the group they are moving.
                shared.record(OpError::Precondition(
                    "stopped between slot groups: this actor may no longer act".into(),
                ));
                return Ok(());
            }
            let group: Vec<(u16, SlotState)> = pair
                .queue
                .lock()
                .map(|mut q| {
                    let n = q.len().min(shared.group_size);
                    q.drain(..n).collect::<Vec<u16>>()
                })
                .unwrap_or_default()
                .into_iter()
                .filter_map(|slot| pair.states.get(&slot).map(|st| (slot, st.clone())))
                .collect();
            if group.is_empty() {
                return Ok(());
            }
            let reports = mover.run_group(&group).await?;
            if let Ok(mut t) = shared.totals.lock() {
                for r in reports {
                    t.keys_moved += r.keys_moved;
                    match r.step {
                        StepOutcome::Applied => t.slots_moved += 1,
                        StepOutcome::AlreadyDone => t.slots_already_done += 1,
                    }
                }
            }
            // Checked after a group, so each stream makes progress however slow the machine.
            if shared.deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(());
            }
        }
    }
}

/// What one stream works on: its pair's ends, the slots left to move (shared by the pair's
/// streams) and their states when the reshard began.
struct Pair {
    source: Endpoint,
    target: Endpoint,
    others: Vec<SocketAddr>,
    queue: Arc<Mutex<VecDeque<u16>>>,
    states: Arc<BTreeMap<u16, SlotState>>,
}

/// What the streams of one reshard share.
struct Shared<'a> {
    lanes: Lanes,
    totals: Mutex<ReshardReport>,
    failed: AtomicBool,
    /// The first error in time is the cause; streams that stop because of it fail after.
    first_error: Mutex<Option<OpError>>,
    keep_going: &'a (dyn Fn() -> bool + Sync),
    group_size: usize,
    /// From [`ReshardOptions::time_budget`]: no stream starts a group after it.
    deadline: Option<Instant>,
}

impl Shared<'_> {
    /// No stream takes another group; `e` is returned unless an earlier error was.
    fn record(&self, e: OpError) {
        self.failed.store(true, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(e);
        }
    }

    /// A stream failed: the others stop at their next MIGRATE too, instead of each waiting
    /// out the same timeout on the same dead node in turn. Slots they leave open are resumed
    /// by the next run of the plan (or the open-slot repair).
    fn fail(&self, e: OpError) {
        self.lanes.stop();
        self.record(e);
    }
}

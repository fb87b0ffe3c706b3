//! [`ClusterAdmin::reshard`]: many slot moves at once. Moves are grouped by (source, target)
//! pair, pairs run in parallel, and each pair runs several slot streams so that the round trips
//! of one slot overlap with the MIGRATE work of another. Each slot move is the resumable one of
//! [`super::reshard`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::join_all;

use crate::redis::ids::{NodeId, ranges_from_slots};
use crate::redis::ops::distribution::SlotMove;
use crate::redis::ops::migrate::Progress;
use crate::redis::ops::reshard::{
    ReshardOptions, ReshardReport, SlotMover, SlotState, endpoints, finished_with_source_demoted,
    other_masters,
};
use crate::redis::ops::{ClusterAdmin, OpError, StepOutcome};

impl ClusterAdmin {
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
        let group_size = options.slots_per_group.max(1);
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
                        if !keep_going() {
                            failed.store(true, Ordering::Relaxed);
                            return Err(OpError::Precondition(
                                "stopped between slot groups: this actor may no longer act".into(),
                            ));
                        }
                        let group: Vec<(u16, SlotState)> = queue
                            .lock()
                            .map(|mut q| {
                                let n = q.len().min(group_size);
                                q.drain(..n).collect::<Vec<u16>>()
                            })
                            .unwrap_or_default()
                            .into_iter()
                            .filter_map(|slot| states.get(&slot).map(|st| (slot, st.clone())))
                            .collect();
                        if group.is_empty() {
                            return Ok(());
                        }
                        match mover.run_group(&group).await {
                            Ok(reports) => {
                                if let Ok(mut t) = totals.lock() {
                                    for r in reports {
                                        t.keys_moved += r.keys_moved;
                                        match r.step {
                                            StepOutcome::Applied => t.slots_moved += 1,
                                            StepOutcome::AlreadyDone => t.slots_already_done += 1,
                                        }
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

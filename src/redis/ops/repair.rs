//! Repairing open slots left by a crash (reference §3.4, S15, S16), the cases
//! `redis-cli --cluster fix` handles:
//!
//! 1. migrating on the owner and importing on the target: the move is finished;
//! 2. importing on some nodes, migrating nowhere: their keys go back to the owner ("cold"
//!    move) and the markers are cleared;
//! 3. migrating on the owner, importing on several nodes: keys of the stray importers go to the
//!    migrating target, their markers are cleared, and the move is finished;
//! 4. a marker without a counterpart: keys (if any) go to the owner and the marker is cleared
//!    (`SETSLOT STABLE`). A target that lost its IMPORTING marker in a failover gets it back
//!    and the move is finished instead.
//!
//! A slot with no owner at all is given to the master holding most of its keys. Like
//! redis-cli, the repair refuses while a master that might hold keys is unreachable.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use futures::future::join_all;

use crate::redis::command::Cmd;
use crate::redis::ids::{NodeId, SlotRange, ranges_from_slots};
use crate::redis::model::ClusterView;
use crate::redis::ops::migrate::{BatchOptions, BatchSizer, ConflictPolicy, KeyMover};
use crate::redis::ops::reshard::MoveOptions;
use crate::redis::ops::{ClusterAdmin, OpError};
use crate::redis::parse::cluster_nodes::OpenSlotState;
use crate::redis::reply;

/// One thing the repair did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepairAction {
    /// The slot had no owner and was assigned.
    Assigned {
        /// The slot.
        slot: u16,
        /// Its new owner.
        owner: NodeId,
    },
    /// Keys of the slot were moved from a node that should not hold them to the owner (or,
    /// when a move is being finished, straight to its target).
    KeysMoved {
        /// The slot.
        slot: u16,
        /// Where the keys were.
        from: NodeId,
        /// Where they went.
        to: NodeId,
        /// How many keys moved.
        keys: u64,
    },
    /// An interrupted migration was completed.
    MoveFinished {
        /// The slot.
        slot: u16,
        /// The old owner.
        from: NodeId,
        /// The new owner.
        to: NodeId,
        /// Keys moved by the repair.
        keys: u64,
    },
    /// A marker was cleared with `SETSLOT STABLE`.
    Stabilized {
        /// The slot.
        slot: u16,
        /// The node whose marker was cleared.
        node: NodeId,
    },
}

/// Options of the repair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepairOptions {
    /// MIGRATE batch sizing for keys that move.
    pub batch: BatchOptions,
    /// Keys that a non-owner holds and the owner also holds, with different values, where no
    /// MIGRATING marker says which copy is newer. `Refuse` (default) stops, like redis-cli
    /// without `--cluster-replace`.
    pub unrelated_conflicts: ConflictPolicy,
}

/// Masters known to some observed node (not failed, not in handshake) that did not answer.
/// Masters some node lists that no observed node is: they may hold keys of open slots, so
/// nothing may close those slots until they answer or are forgotten.
pub fn unreachable_masters(view: &ClusterView) -> Vec<NodeId> {
    let observed: BTreeSet<&NodeId> = view.nodes.iter().map(|n| n.id()).collect();
    let mut out = BTreeSet::new();
    for node in &view.nodes {
        for peer in &node.peers {
            if peer.is_master() && !peer.flags.handshake && !observed.contains(&peer.id) {
                out.insert(peer.id.clone());
            }
        }
    }
    out.into_iter().collect()
}

impl ClusterAdmin {
    async fn count_keys(&self, addr: SocketAddr, slot: u16) -> Result<u64, OpError> {
        let cmd = Cmd::countkeysinslot(slot);
        let frame = self.call_once(addr, &cmd).await?;
        reply::count(&cmd, frame).map_err(OpError::node(addr))
    }

    async fn setslot_stable(&self, addr: SocketAddr, slot: u16) -> Result<(), OpError> {
        let cmd = Cmd::setslot_stable(slot);
        let frame = self.call_once(addr, &cmd).await?;
        reply::ok(&cmd, frame).map_err(OpError::node(addr))
    }

    /// Moves every key of `slot` from `from` to the owner `to`, which serves the slot.
    async fn return_keys(
        &self,
        view: &ClusterView,
        slot: u16,
        from: &NodeId,
        to: &NodeId,
        conflicts: ConflictPolicy,
        batch: BatchOptions,
    ) -> Result<u64, OpError> {
        let from_addr = Self::require(view, from)?.addr;
        let to_addr = Self::require(view, to)?.addr;
        let mut source = self.connect(from_addr).await?;
        let mut target = self.connect(to_addr).await?;
        let mut mover = KeyMover {
            source: &mut source,
            source_id: from,
            target: &mut target,
            target_id: to,
            options: self.options(),
            conflicts,
            progress: None,
            lanes: None,
        };
        mover.drain(slot, &mut BatchSizer::new(batch)).await
    }

    /// Repairs every open slot (see the module docs). Returns what was done; an empty list
    /// means nothing was open. Safe to repeat.
    pub async fn fix_open_slots(
        &self,
        options: &RepairOptions,
    ) -> Result<Vec<RepairAction>, OpError> {
        let view = self.observe().await;
        let open: BTreeSet<u16> = view.open_slots().iter().map(|o| o.slot).collect();
        let mut actions = Vec::new();
        if open.is_empty() {
            return Ok(actions);
        }
        let missing = unreachable_masters(&view);
        if let Some(first) = missing.first() {
            return Err(OpError::Precondition(format!(
                "{} master(s) unreachable (e.g. {}); they may hold keys of the open slots",
                missing.len(),
                first.short()
            )));
        }
        for slot in open {
            self.fix_slot(&view, slot, options, &mut actions).await?;
        }
        Ok(actions)
    }

    async fn fix_slot(
        &self,
        view: &ClusterView,
        slot: u16,
        options: &RepairOptions,
        actions: &mut Vec<RepairAction>,
    ) -> Result<(), OpError> {
        let claimants: Vec<NodeId> = view
            .masters()
            .filter(|m| m.myself.owns(slot))
            .map(|m| m.id().clone())
            .collect();
        if claimants.len() > 1 {
            return Err(OpError::Precondition(format!(
                "slot {slot} is claimed by {} masters; wait for the epochs to settle",
                claimants.len()
            )));
        }
        let counts: BTreeMap<NodeId, u64> = {
            let masters: Vec<_> = view.masters().collect();
            let results = join_all(masters.iter().map(|m| self.count_keys(m.addr, slot))).await;
            let mut counts = BTreeMap::new();
            for (m, r) in masters.iter().zip(results) {
                counts.insert(m.id().clone(), r?);
            }
            counts
        };
        let owner = match claimants.into_iter().next() {
            Some(owner) => owner,
            None => {
                let owner = self.assign_orphan(view, slot, &counts).await?;
                actions.push(RepairAction::Assigned {
                    slot,
                    owner: owner.clone(),
                });
                owner
            }
        };
        let owner_obs = Self::require(view, &owner)?;
        let migrating_to = match owner_obs.myself.open_state(slot) {
            Some(OpenSlotState::Migrating { to }) => Some(to.clone()),
            _ => None,
        };
        let finish_to = migrating_to
            .as_ref()
            .filter(|to| view.node(to).is_some_and(|n| n.is_master()))
            .cloned();
        if let (Some(to), None) = (&migrating_to, &finish_to)
            && view.known_ids().contains(to)
        {
            return Err(OpError::Precondition(format!(
                "slot {slot} is migrating from {} to {}, which is unreachable or not a master",
                owner.short(),
                to.short()
            )));
        }
        // Keys on nodes other than the owner go to the owner, or straight to the target when a
        // move is being finished: a MIGRATING owner answers ASK to a RESTORE of a key it does
        // not have, while an IMPORTING target accepts it. The copy on a node that was
        // MIGRATING the slot is the newer one.
        let destination = finish_to.clone().unwrap_or_else(|| owner.clone());
        if let Some(to) = &finish_to {
            let target = Self::require(view, to)?;
            let importing = matches!(
                target.myself.open_state(slot),
                Some(OpenSlotState::Importing { from }) if *from == owner
            );
            let strays = counts.iter().any(|(n, k)| *k > 0 && *n != owner && n != to);
            if strays && !importing {
                let cmd = Cmd::setslot_importing(slot, &owner);
                let frame = self.call_once(target.addr, &cmd).await?;
                reply::ok(&cmd, frame).map_err(OpError::node(target.addr))?;
            }
        }
        for (node, keys) in &counts {
            if *keys == 0 || *node == owner || *node == destination {
                continue;
            }
            let node_obs = Self::require(view, node)?;
            let policy = match node_obs.myself.open_state(slot) {
                Some(OpenSlotState::Migrating { to }) if *to == destination => {
                    ConflictPolicy::SourceWins
                }
                _ => options.unrelated_conflicts,
            };
            let moved = self
                .return_keys(view, slot, node, &destination, policy, options.batch)
                .await?;
            actions.push(RepairAction::KeysMoved {
                slot,
                from: node.clone(),
                to: destination.clone(),
                keys: moved,
            });
        }
        // Clear every marker except the pair that describes the move being finished.
        for node in &view.nodes {
            let Some(state) = node.myself.open_state(slot) else {
                continue;
            };
            let keep = match (state, &finish_to) {
                (OpenSlotState::Migrating { to }, Some(f)) => node.id() == &owner && to == f,
                (OpenSlotState::Importing { from }, Some(f)) => node.id() == f && *from == owner,
                _ => false,
            };
            if !keep {
                self.setslot_stable(node.addr, slot).await?;
                actions.push(RepairAction::Stabilized {
                    slot,
                    node: node.id().clone(),
                });
            }
        }
        if let Some(to) = finish_to {
            let report = self
                .move_slot(
                    slot,
                    &owner,
                    &to,
                    &MoveOptions {
                        batch: options.batch,
                        conflicts: ConflictPolicy::SourceWins,
                    },
                    None,
                )
                .await?;
            actions.push(RepairAction::MoveFinished {
                slot,
                from: owner,
                to,
                keys: report.keys_moved,
            });
        }
        Ok(())
    }

    /// Gives an unowned slot to the master holding most of its keys (the lowest id on ties),
    /// or to the master with the fewest slots when nobody holds any.
    async fn assign_orphan(
        &self,
        view: &ClusterView,
        slot: u16,
        counts: &BTreeMap<NodeId, u64>,
    ) -> Result<NodeId, OpError> {
        let by_keys = counts
            .iter()
            .filter(|(_, k)| **k > 0)
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(id, _)| id.clone());
        let owner = match by_keys {
            Some(owner) => owner,
            None => view
                .slot_counts()
                .into_iter()
                .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
                .map(|(id, _)| id)
                .ok_or_else(|| OpError::Precondition("no master is reachable".to_owned()))?,
        };
        let addr = Self::require(view, &owner)?.addr;
        let cmd = Cmd::cluster_addslotsrange(&[SlotRange::single(slot)]);
        let frame = self.call_once(addr, &cmd).await?;
        reply::ok(&cmd, frame).map_err(OpError::node(addr))?;
        Ok(owner)
    }

    /// Assigns every slot nobody serves (for example after forgetting a master lost with all
    /// its replicas, reference S6 (c)): to the master holding its keys if any, else spread over
    /// the masters with the fewest slots. Keys held by other masters are moved to the new
    /// owner. Refuses while a master is unreachable.
    pub async fn fix_uncovered_slots(
        &self,
        options: &RepairOptions,
    ) -> Result<Vec<RepairAction>, OpError> {
        let view = self.observe().await;
        let uncovered: Vec<u16> = view
            .uncovered_slots()
            .iter()
            .flat_map(SlotRange::slots)
            .collect();
        if uncovered.is_empty() {
            return Ok(Vec::new());
        }
        let missing = unreachable_masters(&view);
        if let Some(first) = missing.first() {
            return Err(OpError::Precondition(format!(
                "{} master(s) unreachable (e.g. {}); they may hold keys of uncovered slots",
                missing.len(),
                first.short()
            )));
        }
        let masters: Vec<_> = view.masters().collect();
        if masters.is_empty() {
            return Err(OpError::Precondition("no master is reachable".to_owned()));
        }
        // Keys first: one pipelined COUNTKEYSINSLOT per uncovered slot on each master.
        let mut holders: BTreeMap<u16, Vec<(NodeId, u64)>> = BTreeMap::new();
        for m in &masters {
            let cmds: Vec<Cmd> = uncovered.iter().map(|s| Cmd::countkeysinslot(*s)).collect();
            let mut client = self.connect(m.addr).await?;
            let replies = client
                .pipeline(&cmds)
                .await
                .map_err(OpError::node(m.addr))?;
            for ((slot, cmd), r) in uncovered.iter().zip(&cmds).zip(replies) {
                let n = reply::count(cmd, r.map_err(OpError::node(m.addr))?)
                    .map_err(OpError::node(m.addr))?;
                if n > 0 {
                    holders.entry(*slot).or_default().push((m.id().clone(), n));
                }
            }
        }
        let mut load: BTreeMap<NodeId, usize> = view.slot_counts();
        let mut plan: BTreeMap<NodeId, Vec<u16>> = BTreeMap::new();
        for slot in &uncovered {
            let owner = match holders.get(slot).and_then(|h| {
                h.iter()
                    .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
                    .map(|(id, _)| id.clone())
            }) {
                Some(owner) => owner,
                None => load
                    .iter()
                    .min_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)))
                    .map(|(id, _)| id.clone())
                    .ok_or_else(|| OpError::Precondition("no master".to_owned()))?,
            };
            *load.entry(owner.clone()).or_default() += 1;
            plan.entry(owner).or_default().push(*slot);
        }
        let mut actions = Vec::new();
        for (owner, slots) in &plan {
            let addr = Self::require(&view, owner)?.addr;
            let cmd = Cmd::cluster_addslotsrange(&ranges_from_slots(slots.iter().copied()));
            let frame = self.call_once(addr, &cmd).await?;
            reply::ok(&cmd, frame).map_err(OpError::node(addr))?;
            actions.extend(slots.iter().map(|slot| RepairAction::Assigned {
                slot: *slot,
                owner: owner.clone(),
            }));
            for slot in slots {
                for (holder, _) in holders.get(slot).into_iter().flatten() {
                    if holder == owner {
                        continue;
                    }
                    let keys = self
                        .return_keys(
                            &view,
                            *slot,
                            holder,
                            owner,
                            options.unrelated_conflicts,
                            options.batch,
                        )
                        .await?;
                    actions.push(RepairAction::KeysMoved {
                        slot: *slot,
                        from: holder.clone(),
                        to: owner.clone(),
                        keys,
                    });
                }
            }
        }
        Ok(actions)
    }
}

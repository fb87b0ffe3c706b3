//! Promoting a follower: `CLUSTER FAILOVER` in its three modes, with the safety checks from
//! the reference (§1.6, §2.5, S3, S8, S10).
//!
//! * Graceful (default) loses nothing: the leader pauses writes until the follower has caught
//!   up. It needs the leader alive and a majority of masters that know the follower.
//! * FORCE skips the catch-up and loses whatever the follower had not received. It is only
//!   allowed with a [`LeaderGone`] proof that the *cluster* (not just the operator) has marked
//!   the leader FAIL, a reachable majority of masters, and an [`AcceptedRisk`].
//! * TAKEOVER skips the election too. It is only allowed when no majority of masters is
//!   reachable (otherwise FORCE is the right tool) and with an accepted split-brain risk, or,
//!   as [`FailoverMode::ElectionStalled`], when a majority of the voting masters flags the
//!   leader FAIL and the shard has no other follower that could stand: then the majority's
//!   agreement is there and only the vote is skipped, which a split (several shards'
//!   followers standing in one epoch) denied and Redis 7.0 retries only after 4 × node
//!   timeout.
//!
//! For FORCE and TAKEOVER the proof is re-established on a fresh observation right before the
//! command is sent, so a proof that went stale (the leader came back) is refused.

use std::time::{Duration, Instant};

use crate::redis::command::Cmd;
use crate::redis::ids::NodeId;
use crate::redis::model::{ClusterView, NodeObservation};
use crate::redis::ops::{ClusterAdmin, OpError, StepOutcome};
use crate::redis::reply;

mod proof;

use proof::check_stalled;
pub use proof::{LeaderGone, rivals};

/// The kind of data-loss risk the caller accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RiskKind {
    /// Writes the follower had not received are lost (FORCE).
    LoseUnreplicatedWrites,
    /// In addition, the old leader may still be serving on the other side of a partition and
    /// the bumped epoch may collide (TAKEOVER). Implies the lesser risk.
    SplitBrainAndEpochCollision,
}

/// An explicit statement that the caller accepts a data-loss risk, with the reason (it is
/// logged and should end up in an Event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedRisk {
    /// What is accepted.
    pub kind: RiskKind,
    /// Why, in words a human reviewing the incident will understand. Must not be empty.
    pub reason: String,
}

/// How to fail over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailoverMode {
    /// `CLUSTER FAILOVER`: coordinated with the live leader, no data loss.
    Graceful,
    /// `CLUSTER FAILOVER FORCE`: the leader is gone and a majority of masters is reachable.
    Force {
        /// That the cluster agreed the leader failed.
        proof: LeaderGone,
        /// At least [`RiskKind::LoseUnreplicatedWrites`].
        risk: AcceptedRisk,
    },
    /// `CLUSTER FAILOVER TAKEOVER`: the leader is gone and no majority of masters is reachable.
    Takeover {
        /// That the leader is gone as far as every reachable node can tell.
        proof: LeaderGone,
        /// [`RiskKind::SplitBrainAndEpochCollision`].
        risk: AcceptedRisk,
    },
    /// `CLUSTER FAILOVER TAKEOVER` with a majority reachable: a majority of the voting masters
    /// flags the leader FAIL, and the follower is its shard's only one that could stand, yet it
    /// still follows. Its election was denied (a split vote: several shards' followers standing
    /// in one epoch, and a master votes once per epoch), and Redis 7.0 lets it, or a FORCE,
    /// stand again only 4 × node timeout after its first attempt.
    ///
    /// Why this risks no more than FORCE: the majority already agreed the leader failed (what
    /// the votes would check), and no other node can claim the same slots, so the only epoch
    /// collision possible is with another shard's new master over other slots, which Redis
    /// resolves by bumping one of them. Writes the follower had not received are lost, as
    /// with any failover of a dead leader.
    ElectionStalled {
        /// That the leader is gone, with a majority of the voting masters flagging it FAIL.
        proof: LeaderGone,
        /// At least [`RiskKind::LoseUnreplicatedWrites`].
        risk: AcceptedRisk,
    },
}

impl FailoverMode {
    fn name(&self) -> &'static str {
        match self {
            Self::Graceful => "graceful",
            Self::Force { .. } => "FORCE",
            Self::Takeover { .. } | Self::ElectionStalled { .. } => "TAKEOVER",
        }
    }
}

/// What a failover did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverOutcome {
    /// `AlreadyDone` when the follower already was a master serving slots.
    pub step: StepOutcome,
    /// The promoted node.
    pub new_leader: NodeId,
    /// The leader it replaced, when known.
    pub old_leader: Option<NodeId>,
    /// Whether the old leader was seen demoting itself to a follower (graceful mode only; a
    /// gone leader cannot be observed).
    pub old_leader_demoted: bool,
    /// Time from sending the command to seeing the promotion.
    pub elapsed: Duration,
}

/// Masters that serve slots and answered, other than `except`.
fn reachable_voters(view: &ClusterView, except: &NodeId) -> usize {
    let voters = view.voting_masters();
    view.masters()
        .filter(|m| m.id() != except && voters.contains(m.id()))
        .count()
}

/// The replica of `leader` with the highest processed offset among those that answered.
fn best_offset_among_replicas(view: &ClusterView, leader: &NodeId) -> Option<(NodeId, u64)> {
    view.replicas_of(leader)
        .map(|r| (r.id().clone(), r.replication.master_repl_offset))
        .max_by_key(|(_, offset)| *offset)
}

fn check_risk(mode: &FailoverMode, risk: &AcceptedRisk, needed: RiskKind) -> Result<(), OpError> {
    if risk.reason.trim().is_empty() {
        return Err(OpError::Refused(format!(
            "{} needs a stated reason for accepting the risk",
            mode.name()
        )));
    }
    if risk.kind < needed {
        return Err(OpError::Refused(format!(
            "{} risks {needed:?}, but only {:?} was accepted",
            mode.name(),
            risk.kind
        )));
    }
    Ok(())
}

/// Checks shared by FORCE and TAKEOVER: the proof is about this follower's leader and still
/// holds now, and the follower is the most up-to-date candidate with real data.
fn check_gone_leader(
    view: &ClusterView,
    replica: &NodeObservation,
    leader: &NodeId,
    proof: &LeaderGone,
) -> Result<LeaderGone, OpError> {
    if proof.leader() != leader {
        return Err(OpError::Refused(format!(
            "the proof is about {}, but {} follows {}",
            proof.leader().short(),
            replica.id().short(),
            leader.short()
        )));
    }
    let fresh = LeaderGone::establish(view, leader)
        .map_err(|e| OpError::Refused(format!("the proof no longer holds: {e}")))?;
    if replica.replication.master_repl_offset == 0 {
        return Err(OpError::Refused(format!(
            "{} never synced from {}; promoting it would wipe the shard",
            replica.id().short(),
            leader.short()
        )));
    }
    if let Some((best, offset)) = best_offset_among_replicas(view, leader)
        && offset > replica.replication.master_repl_offset
    {
        return Err(OpError::Refused(format!(
            "{} has a higher replication offset ({offset} > {}); promote it instead",
            best.short(),
            replica.replication.master_repl_offset
        )));
    }
    Ok(fresh)
}

impl ClusterAdmin {
    /// Promotes the follower `replica` in the given mode, after checking the mode's safety
    /// conditions on a fresh observation, and waits (bounded) until the follower reports
    /// itself a master serving slots.
    pub async fn failover(
        &self,
        replica: &NodeId,
        mode: FailoverMode,
    ) -> Result<FailoverOutcome, OpError> {
        let view = self.observe().await;
        let me = Self::require(&view, replica)?;
        if me.is_master() {
            if !me.myself.slots.is_empty() {
                return Ok(FailoverOutcome {
                    step: StepOutcome::AlreadyDone,
                    new_leader: replica.clone(),
                    old_leader: None,
                    old_leader_demoted: false,
                    elapsed: Duration::ZERO,
                });
            }
            return Err(OpError::Precondition(format!(
                "{} is a master without slots, not a follower",
                replica.short()
            )));
        }
        let leader =
            me.myself.master_id.clone().ok_or_else(|| {
                OpError::Precondition(format!("{} has no master", replica.short()))
            })?;
        let (cmd, extra_wait) = match &mode {
            FailoverMode::Graceful => {
                self.check_graceful(&view, me, &leader)?;
                (Cmd::cluster("FAILOVER"), Duration::ZERO)
            }
            FailoverMode::Force { proof, risk } => {
                check_risk(&mode, risk, RiskKind::LoseUnreplicatedWrites)?;
                let fresh = check_gone_leader(&view, me, &leader, proof)?;
                if !fresh.agreed_by_cluster() && !fresh.unreachable_for_majority() {
                    return Err(OpError::Refused(format!(
                        "no node reports {} as FAIL and no majority of voting masters reports it \
                         unreachable; wait for the cluster to agree",
                        leader.short()
                    )));
                }
                let voters = reachable_voters(&view, &leader);
                if voters < view.quorum() {
                    return Err(OpError::Refused(format!(
                        "only {voters} voting master(s) reachable, {} needed: FORCE cannot win an election",
                        view.quorum()
                    )));
                }
                // The election can take up to the vote timeout, max(2·NT, 2 s), plus retries.
                let nt = self.node_timeout(me.addr).await;
                (
                    Cmd::cluster("FAILOVER").arg("FORCE"),
                    (nt * 2).max(Duration::from_secs(2)) * 2,
                )
            }
            FailoverMode::Takeover { proof, risk } => {
                check_risk(&mode, risk, RiskKind::SplitBrainAndEpochCollision)?;
                check_gone_leader(&view, me, &leader, proof)?;
                let voters = reachable_voters(&view, &leader);
                if voters >= view.quorum() {
                    return Err(OpError::Refused(format!(
                        "{voters} voting masters are reachable (quorum {}): use FORCE, which keeps \
                         the election, instead of TAKEOVER",
                        view.quorum()
                    )));
                }
                (Cmd::cluster("FAILOVER").arg("TAKEOVER"), Duration::ZERO)
            }
            FailoverMode::ElectionStalled { proof, risk } => {
                check_risk(&mode, risk, RiskKind::LoseUnreplicatedWrites)?;
                let fresh = check_gone_leader(&view, me, &leader, proof)?;
                check_stalled(&view, replica, &leader, &fresh)?;
                let voters = reachable_voters(&view, &leader);
                if voters < view.quorum() {
                    return Err(OpError::Refused(format!(
                        "only {voters} voting master(s) reachable, {} needed: this is not a stalled \
                         election but a lost quorum (the user's accept-takeover)",
                        view.quorum()
                    )));
                }
                (Cmd::cluster("FAILOVER").arg("TAKEOVER"), Duration::ZERO)
            }
        };
        tracing::info!(
            replica = %replica,
            leader = %leader,
            mode = mode.name(),
            risk = ?match &mode {
                FailoverMode::Graceful => None,
                FailoverMode::Force { risk, .. }
                | FailoverMode::Takeover { risk, .. }
                | FailoverMode::ElectionStalled { risk, .. } => Some(risk),
            },
            "sending CLUSTER FAILOVER"
        );
        let old_epoch = leader_epoch(&view, &leader);
        // A TAKEOVER bumps the epoch itself.
        if matches!(mode, FailoverMode::Graceful | FailoverMode::Force { .. }) {
            self.outrank_before_promotion(me.addr).await?;
        }
        let started = Instant::now();
        let frame = self.call_once(me.addr, &cmd).await?;
        reply::ok(&cmd, frame).map_err(OpError::node(me.addr))?;
        // A manual failover must finish within CLUSTER_MF_TIMEOUT (5 s) or Redis aborts it.
        let limit = Duration::from_secs(7) + extra_wait;
        let replica_addr = me.addr;
        let epoch = self
            .poll_until("the follower to become a master", limit, || async {
                let now = self.observe_node(replica_addr).await;
                Ok(now
                    .ok()
                    .filter(|n| n.is_master() && !n.myself.slots.is_empty())
                    .map(|n| n.myself.config_epoch))
            })
            .await
            .map_err(|e| match e {
                OpError::NotConverged { waited, .. } => OpError::NotConverged {
                    what: format!(
                        "{} failover of {} (retry no sooner than 2×cluster-node-timeout: masters \
                     that voted are locked for that long)",
                        mode.name(),
                        replica.short()
                    ),
                    waited,
                },
                other => other,
            })?;
        let elapsed = started.elapsed();
        if epoch <= old_epoch {
            return Err(OpError::NotConverged {
                what: format!(
                    "{} claims the slots at config epoch {epoch}, not above the old leader's \
                     {old_epoch}: a hollow promotion the other nodes ignore (Redis 7.0 reused an \
                     election this follower won within 2×cluster-node-timeout); retry after that",
                    replica.short()
                ),
                waited: elapsed,
            });
        }
        let old_leader_demoted = match (&mode, view.node(&leader)) {
            (FailoverMode::Graceful, Some(old)) => {
                let old_addr = old.addr;
                self.poll_until(
                    "the old leader to follow",
                    Duration::from_secs(5),
                    || async {
                        let now = self.observe_node(old_addr).await;
                        Ok(now
                            .ok()
                            .filter(|n| {
                                !n.is_master() && n.myself.master_id.as_ref() == Some(replica)
                            })
                            .map(|_| true))
                    },
                )
                .await
                .unwrap_or(false)
            }
            _ => false,
        };
        Ok(FailoverOutcome {
            step: StepOutcome::Applied,
            new_leader: replica.clone(),
            old_leader: Some(leader),
            old_leader_demoted,
            elapsed,
        })
    }

    fn check_graceful(
        &self,
        view: &ClusterView,
        replica: &NodeObservation,
        leader: &NodeId,
    ) -> Result<(), OpError> {
        let Some(master) = view.node(leader) else {
            return Err(OpError::Precondition(format!(
                "leader {} is unreachable; a graceful failover needs it (FORCE needs proof it is gone)",
                leader.short()
            )));
        };
        if !master.is_master() {
            return Err(OpError::Precondition(format!(
                "{} is not a master any more",
                leader.short()
            )));
        }
        if view.failing_nodes().contains_key(leader) {
            return Err(OpError::Precondition(format!(
                "leader {} is flagged failing by some node",
                leader.short()
            )));
        }
        if !master.myself.open_slots.is_empty() {
            return Err(OpError::Precondition(format!(
                "leader {} has open slots; no planned failover during a migration",
                leader.short()
            )));
        }
        let link = replica.replication.replica_link();
        if !link.is_some_and(|l| l.link_up && !l.sync_in_progress) {
            return Err(OpError::Precondition(format!(
                "{} is not streaming from its leader (link down or full sync running)",
                replica.id().short()
            )));
        }
        // Masters only vote for a follower they know as a follower of that leader.
        let aware = view.masters_aware_of_follower(replica.id(), leader);
        if aware < view.quorum() {
            return Err(OpError::Precondition(format!(
                "only {aware} voting master(s) know {} as a follower of {} ({} needed)",
                replica.id().short(),
                leader.short(),
                view.quorum()
            )));
        }
        Ok(())
    }

    /// Gives the follower at `addr` a config epoch above every epoch it knows
    /// (`CLUSTER BUMPEPOCH`), right before it is asked to take over.
    ///
    /// Redis 7.0 keeps a replica's election state after it wins (reset in Valkey 8.0,
    /// valkey-io/valkey#782 and #1711). Asked to fail over again within 2×cluster-node-timeout
    /// of that win (a handback, then its leader dies), it "wins" at once without a vote and
    /// keeps its old config epoch, which the other nodes rank below the old leader's. They keep
    /// routing to the old leader and tell the follower to follow it again; when the old leader
    /// comes back without its data, the follower copies the empty dataset (found by the e2e
    /// suite: 390 acknowledged writes lost; `tests/redis_failover_epochs.rs`). With the bumped
    /// epoch, even that stale win outranks the old leader. Otherwise nothing changes: a follower's
    /// own epoch is not announced while it follows, and a real election takes a newer one.
    async fn outrank_before_promotion(&self, addr: std::net::SocketAddr) -> Result<(), OpError> {
        let cmd = Cmd::cluster("BUMPEPOCH");
        let frame = self.call_once(addr, &cmd).await?;
        let answer = reply::text(&cmd, frame).map_err(OpError::node(addr))?;
        tracing::debug!(%addr, answer, "follower's config epoch before its promotion");
        Ok(())
    }

    /// `cluster-node-timeout` of a node, defaulting to Redis's 15 s when it cannot be read.
    async fn node_timeout(&self, addr: std::net::SocketAddr) -> Duration {
        let cmd = Cmd::new("CONFIG").arg("GET").arg("cluster-node-timeout");
        let value = match self.call_once(addr, &cmd).await {
            Ok(frame) => reply::bytes_array(&cmd, frame).ok(),
            Err(_) => None,
        };
        value
            .and_then(|pair| pair.get(1).cloned())
            .and_then(|v| {
                std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
            })
            .map_or(Duration::from_secs(15), Duration::from_millis)
    }
}

/// The highest config epoch any node records for `leader` (its own line if it answers).
fn leader_epoch(view: &ClusterView, leader: &NodeId) -> u64 {
    view.nodes
        .iter()
        .filter_map(|n| n.sees(leader))
        .map(|e| e.config_epoch)
        .max()
        .unwrap_or(0)
}

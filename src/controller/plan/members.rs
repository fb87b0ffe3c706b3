//! Members: the scheduler's placement and its `changes` (create / failover / remove), carried
//! out with the members' real health. A member whose Pod is gone but whose PVC is intact on a
//! usable node is still a member: it is recreated on that node with its identity and data.
//! Gates inside: never on a shard awaiting its volumes (nothing created there but on those
//! volumes, nothing removed); planned leader moves never while a shard has no serving leader.

use redis_scheduler::{Change, Placement};

use super::facts::Facts;
use super::facts::promotion::{Why, follower_to_promote};
use super::step::{Action, FailoverKind, NewMember, Step};
use crate::controller::observe::pods::Member;
use crate::controller::observe::revision::{aof_off, outdated};

/// The next membership step, if any.
pub fn step(f: &Facts<'_>) -> Option<Step> {
    let placement = f.placement.as_ref().ok()?;
    revive(f).or_else(|| next_change(f, placement))
}

/// Held claims without a Pod get one on their node, once no stopping Pod still uses them
/// (two redis-servers on one data directory would corrupt it).
fn revive(f: &Facts<'_>) -> Option<Step> {
    let obs = f.obs;
    let revive: Vec<NewMember> = f
        .held
        .iter()
        .filter(|c| {
            !obs.members
                .iter()
                .any(|m| !m.finished() && m.claim() == Some(c.name.as_str()))
        })
        .filter(|c| c.node.as_deref().is_some_and(|n| obs.node_ready(n)))
        .filter_map(|c| {
            let node = c.node.clone()?;
            Some(NewMember {
                shard: c.shard,
                member: c.member,
                zone: obs.zone_of(&node).to_string(),
                reason: format!(
                    "recreated on {node} with its volume {} (same identity and data)",
                    c.name
                ),
                node,
                reuse_claim: Some(c.name.clone()),
                replaces: None,
            })
        })
        .collect();
    (!revive.is_empty()).then(|| {
        let n = revive.len();
        Step::new(
            Action::CreateMembers(revive),
            "ReplacingMembers",
            format!("recreating {n} member pod(s) on their volumes' nodes"),
        )
    })
}

/// The live member of `shard` on `node`.
fn member_on<'a>(f: &Facts<'a>, shard: u32, node: &str) -> Option<&'a Member> {
    f.obs
        .live()
        .find(|m| u32::try_from(m.shard).ok() == Some(shard) && m.node() == Some(node))
}

/// What the placement's changes add up to in this pass.
enum Next {
    /// Keep going through the changes.
    Continue,
    /// Stop looking: nothing more this pass (or what was collected).
    Stop,
    /// This step, now.
    Decide(Step),
}

/// The scheduler's next changes: creates together, or removes together, or one leader move.
fn next_change(f: &Facts<'_>, placement: &Placement) -> Option<Step> {
    let mut creates: Vec<NewMember> = Vec::new();
    let mut deletes: Vec<(String, String)> = Vec::new();
    for change in &placement.changes {
        let next = match change {
            Change::Create { .. } if !deletes.is_empty() => Next::Stop,
            Change::Create { .. } => create(f, change, &mut creates),
            Change::Remove { .. } if !creates.is_empty() => Next::Stop,
            Change::Remove { .. } => remove(f, change, &mut deletes),
            Change::Failover { .. } if !creates.is_empty() || !deletes.is_empty() => Next::Stop,
            Change::Failover { .. } => rebalance(f, change),
        };
        match next {
            Next::Continue => {}
            Next::Stop => break,
            Next::Decide(step) => return Some(step),
        }
    }
    if !creates.is_empty() {
        let n = creates.len();
        return Some(Step::new(
            Action::CreateMembers(creates),
            "CreatingMembers",
            format!("creating {n} member pod(s)"),
        ));
    }
    (!deletes.is_empty()).then(|| {
        let n = deletes.len();
        Step::new(
            Action::DeletePods(deletes),
            "RemovingMembers",
            format!("removing {n} member pod(s) the placement drops"),
        )
    })
}

/// A member to create. On a shard awaiting its volumes only one recreated on those volumes: a
/// new empty member would take the seat its volume needs to come back to.
fn create(f: &Facts<'_>, change: &Change, creates: &mut Vec<NewMember>) -> Next {
    let Change::Create {
        shard,
        node,
        zone,
        reason,
        ..
    } = change
    else {
        return Next::Continue;
    };
    let shard = usize::try_from(*shard).unwrap_or(usize::MAX);
    let (member, reuse_claim) = new_member(f, shard, node, creates);
    let on_awaited_volume = f
        .awaited
        .iter()
        .flat_map(|a| a.claims.iter())
        .any(|c| Some(c.name.as_str()) == reuse_claim.as_deref());
    if f.awaits(shard) && !on_awaited_volume {
        return Next::Continue;
    }
    creates.push(NewMember {
        shard,
        member,
        node: node.clone(),
        zone: zone.clone(),
        reuse_claim,
        replaces: None,
        reason: reason.clone(),
    });
    Next::Continue
}

/// A member to delete: never on a shard awaiting its volumes (that could lose the data), a
/// shard beyond `spec.leaders` only whole, drained and past its grace period, a leader only
/// after its failover, never one the cluster still routes slots to.
fn remove(f: &Facts<'_>, change: &Change, deletes: &mut Vec<(String, String)>) -> Next {
    let Change::Remove {
        shard,
        node,
        reason,
        ..
    } = change
    else {
        return Next::Continue;
    };
    let Some(m) = member_on(f, *shard, node) else {
        // A held claim the placement drops: it becomes an orphan (status).
        return Next::Continue;
    };
    // A rolling update's surge pair is the rollout's: the old member retires once its
    // replacement is in sync, and the replacement stays (`plan::surge`).
    if f.awaits(m.shard) || super::facts::surge::paired(&f.surges, m) {
        return Next::Continue;
    }
    // A shard beyond spec.leaders leaves whole, and only once the scale concern drained it
    // (its master holds no slot and no key) and its grace period since is over: meanwhile
    // clients still sending to it get MOVED and refresh their slot maps (`drain`).
    if m.shard >= f.obs.shape.leaders && !super::drain::over(f, m.shard) {
        return Next::Continue;
    }
    let serving = f.obs.view_of(m).is_some_and(|v| v.is_serving_master());
    if serving && m.node().is_some_and(|n| f.obs.node_ready(n)) {
        // A leader leaves only after its failover (ordered earlier) happened.
        return Next::Continue;
    }
    // Nor one the cluster still routes slots to, on a node that is not Ready: a partition is
    // not a crash. Its process may run on behind the cut with the shard's newest writes, and
    // the deletion would stop it the moment the partition heals, before any follower took
    // over (the soak's round 12: two such leaders gone, QuorumLost). It leaves once its slots
    // moved: Redis's own election, the recovery's FORCE, or the takeover the user accepts.
    if f.owns_slots(m) {
        return Next::Continue;
    }
    if leaves_shard_short(f, m) {
        return Next::Continue;
    }
    deletes.push((m.name().to_string(), reason.clone()));
    Next::Continue
}

/// Whether removing `m`, a follower in sync, would leave its kept shard fewer followers in
/// sync than the spec wants. A follower the placement moves (off a cordoned node, for the
/// spread) has its replacement created first; until that one has the data, `m` is one of the
/// copies the shard's writes rely on: its leader could not acknowledge a `WAIT 1` write
/// without it, and a crash of the leader would lose what it alone held. A scale-in's shard
/// leaves whole once drained, and a follower not in sync holds no copy worth keeping.
fn leaves_shard_short(f: &Facts<'_>, m: &Member) -> bool {
    use super::facts::shard::{in_sync, shard_leader};
    let obs = f.obs;
    if m.shard >= obs.shape.leaders {
        return false;
    }
    let Some(leader) = shard_leader(obs, m.shard) else {
        return false;
    };
    let synced = |o: &Member| obs.view_of(o).is_some_and(|v| in_sync(v, leader));
    if !synced(m) {
        return false;
    }
    let others = obs
        .live()
        .filter(|o| o.shard == m.shard && o.name() != m.name() && synced(o))
        .count();
    others < obs.shape.followers
}

/// A planned leader move (the spread). Gate: every shard has a serving leader: while one does
/// not, the majority that must vote for it may not exist, and recovery comes first.
fn rebalance(f: &Facts<'_>, change: &Change) -> Next {
    let Change::Failover {
        shard, to, reason, ..
    } = change
    else {
        return Next::Continue;
    };
    if !f.every_shard_led() {
        return Next::Stop;
    }
    let index = usize::try_from(*shard).unwrap_or(usize::MAX);
    let Some(leader) = f.leader(index) else {
        return Next::Continue;
    };
    let Some(target) = member_on(f, *shard, to) else {
        return Next::Continue;
    };
    // A member about to be replaced by the rolling update does not take the lead: it would
    // hand it straight back. The move happens once it is updated.
    if f.rolling() && outdated(target, &f.obs.target) {
        return Next::Stop;
    }
    // A member that cannot write to its disk would refuse writes as leader: the spread
    // waits until its disk works again (recovery moved the lead away from it).
    // A follower that started from its shutdown RDB leads only once its AOF is back on (the
    // config concern, after this one, does that): the spread waits a pass.
    match f.obs.view_of(target) {
        None => return Next::Continue,
        Some(v) if v.persistence.failure().is_some() => return Next::Continue,
        Some(v) if aof_off(v, &f.obs.target) => return Next::Continue,
        Some(_) => {}
    }
    let Some((v, _)) = follower_to_promote(f.obs, Why::Rebalance { leader, target }) else {
        // The target must first be attached and synced (the bootstrap's steps): nothing
        // else of the placement is done meanwhile.
        return Next::Stop;
    };
    Next::Decide(Step::new(
        Action::Failover {
            shard: index,
            to: v.id().clone(),
            kind: FailoverKind::Graceful,
            reason: reason.clone(),
        },
        "RebalancingLeaders",
        format!("shard {index}: {reason}"),
    ))
}

/// Ordinal (and claim to reuse) of a new member of `shard` on `node`: an intact claim of the
/// shard on that node whose identity is still known keeps its ordinal, and so does a claim of
/// the shard no Pod ever used (a Pod whose creation failed after its claim was made: reusing it
/// keeps the claims bounded while the API refuses the Pod); otherwise the lowest ordinal no
/// live member, held claim or other new member has. Either way an ordinal is held once: a
/// free claim whose ordinal a live member, a held claim or another new member already has is
/// not reused (two members of a shard with one identity, seen in the soak).
pub(super) fn new_member(
    f: &Facts<'_>,
    shard: usize,
    node: &str,
    pending: &[NewMember],
) -> (usize, Option<String>) {
    let obs = f.obs;
    let known = obs.view.known_ids();
    // The claim's own ordinal is taken by something other than the claim itself.
    let taken = |c: &crate::controller::observe::Claim| {
        obs.live().any(|m| m.shard == shard && m.member == c.member)
            || f.held
                .iter()
                .any(|h| h.shard == shard && h.member == c.member && h.name != c.name)
            || pending
                .iter()
                .any(|p| p.shard == shard && p.member == c.member)
    };
    let reusable = obs.claims.iter().find(|c| {
        c.shard == shard
            && !taken(c)
            && !c.deleting
            && (c.node.as_deref() == Some(node) || (c.node.is_none() && c.node_id.is_none()))
            && c.node_id.as_ref().is_none_or(|id| known.contains(id))
            && !obs
                .members
                .iter()
                .any(|m| m.claim() == Some(c.name.as_str()))
            && !pending
                .iter()
                .any(|p| p.reuse_claim.as_deref() == Some(c.name.as_str()))
    });
    if let Some(c) = reusable {
        return (c.member, Some(c.name.clone()));
    }
    let mut used: Vec<usize> = obs
        .live()
        .filter(|m| m.shard == shard)
        .map(|m| m.member)
        .chain(f.held.iter().filter(|c| c.shard == shard).map(|c| c.member))
        .chain(
            pending
                .iter()
                .filter(|p| p.shard == shard)
                .map(|p| p.member),
        )
        .collect();
    used.sort_unstable();
    let member = (0..=used.len())
        .find(|o| !used.contains(o))
        .unwrap_or(used.len());
    (member, None)
}

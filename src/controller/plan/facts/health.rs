//! The health assessment: what is wrong now (the `Degraded` problems, most severe first), what
//! the cluster waits for, and whether it is Ready. Computed once from the observation,
//! whichever step is then taken.

use std::collections::BTreeSet;
use std::time::Duration;

use super::formation::Formation;
use super::gone::Gone;
use super::loss::{Awaited, data_gone, fmt_ranges, lost_followers, quorum_lost, slot_ranges};
use super::shard::{in_sync, shard_leader, shard_of};
use super::surge;
use crate::controller::observe::Observed;
use crate::controller::observe::break_glass::{ACCEPT_DATA_LOSS, ACCEPT_TAKEOVER};
use crate::controller::observe::pods::Member;
use crate::controller::plan::step::Problem;
use crate::redis::ids::NodeId;

/// What is wrong and what the cluster waits for.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Losses only a human can accept (QuorumLost, DataLoss, DataUnavailable): they come first.
    pub losses: Vec<Problem>,
    /// The formation is blocked (a later recovery step or a human must resolve it).
    pub blocked: Option<Problem>,
    /// Everything else that is wrong, in a fixed order.
    pub others: Vec<Problem>,
    /// CamelCase reason of what the cluster waits for (`ClusterReady` when nothing).
    pub waiting: &'static str,
    /// In words.
    pub message: String,
    /// Every slot served, every member present, answering and in sync, all pods ready, and
    /// nothing wrong but a zone without ready nodes (a cluster whole again in the surviving
    /// zones is Ready, and Degraded says the zone is missing).
    pub ready: bool,
    /// Every slot is served with the redundancy the spec asks for, though not everything is
    /// done: a scale-out's new shards are still joining. What `Ready` says to users (their
    /// alerts must not fire on a planned scale); never a gate for the operator's own steps.
    pub serving: bool,
    /// Ready but for gossip about a follower's role ([`Formation::WaitRoles`]): slots may
    /// move (scale), nothing else waits less.
    pub settling: bool,
}

/// Assesses the cluster. `formation` is `None` when no placement exists; `surging` holds a
/// rolling update's surge pairs and the identities it retired ([`surge::pairs`],
/// [`surge::retired_ids`]).
pub fn assess(
    obs: &Observed,
    owners: &[Option<NodeId>],
    gone: &[Gone],
    awaited: &[Awaited<'_>],
    formation: Option<&Formation>,
    surging: (&[surge::Surge<'_>], &[NodeId]),
) -> Health {
    let (surges, retired) = surging;
    // A rolling update's replacements, joining and syncing beside the members they replace.
    let joining: BTreeSet<&str> = surges.iter().map(|p| p.replacement.name()).collect();
    let losses = losses(obs, owners, gone, awaited);
    let covered = covered(obs, gone, awaited, retired);
    let others = others(obs, owners, gone, &covered, &joining);
    let (waiting, message, formed) = waiting(obs, formation);
    let blocked = match formation {
        Some(Formation::Blocked(m)) => Some(Problem::new("Blocked", m.clone())),
        _ => None,
    };
    let ready = formed && losses.iter().chain(&others).all(not_unhealthy);
    let settling = matches!(formation, Some(Formation::WaitRoles(_)))
        && formed_and_ready(obs)
        && losses.iter().chain(&others).all(not_unhealthy);
    // Formed and every Pod ready, yet not Ready because of a problem: that problem is what it
    // waits for. Ready=False must never say "ClusterReady, all slots served" (seen in the
    // soak with StaleIdentity, and with a failing disk no handover could fix).
    let (waiting, message) = match losses.iter().chain(&others).find(|p| !not_unhealthy(p)) {
        Some(p) if !ready && waiting == "ClusterReady" => (p.reason, p.message.clone()),
        _ => (waiting, message),
    };
    let serving = ready
        // The formation's block is not looked at: while a new shard has no Pods it "has no
        // member that can lead"; a block on a serving shard fails shard_whole.
        || (losses.is_empty()
            && others.iter().all(not_unhealthy)
            && (serving_while_joining(obs, owners) || serving_while_surging(obs, &joining)));
    Health {
        losses,
        blocked,
        others,
        waiting,
        message,
        ready,
        serving,
        settling,
    }
}

/// Problems that leave a cluster Ready: a zone without ready nodes once the cluster is whole
/// in the others, and a malformed break-glass annotation (about the annotation, not the
/// cluster: a recovered cluster with a leftover typo serves, and says Degraded why).
fn not_unhealthy(p: &Problem) -> bool {
    matches!(p.reason, "ZoneUnavailable" | "BreakGlassInvalid")
}

/// Wanted shards that own no slot: a scale-out's new shards, until slots move to them. (A
/// shard whose leader is lost still owns its slots through the lost identity; slots nobody
/// owns make the cluster not serving anyway.)
fn new_shards(obs: &Observed, owners: &[Option<NodeId>]) -> BTreeSet<usize> {
    let held = owning_shards(obs, owners);
    (0..obs.shape.leaders)
        .filter(|s| !held.contains(s))
        .collect()
}

/// The shards of the slots' owners. Each distinct owner is looked up once, not once per slot:
/// [`shard_of`] scans the members, and 16384 of those scans were most of a pass at 50×2.
fn owning_shards(obs: &Observed, owners: &[Option<NodeId>]) -> BTreeSet<usize> {
    distinct_owners(owners)
        .into_iter()
        .filter_map(|id| shard_of(obs, id))
        .collect()
}

/// The distinct owners of `owners` (runs of one owner are skipped whole, so this is one cheap
/// pass over the slots).
pub(crate) fn distinct_owners(owners: &[Option<NodeId>]) -> BTreeSet<&NodeId> {
    let mut out = BTreeSet::new();
    let mut last: Option<&NodeId> = None;
    for id in owners.iter().flatten() {
        if last != Some(id) {
            out.insert(id);
            last = Some(id);
        }
    }
    out
}

/// Every slot has an owner in a shard that is whole (its leader serving, every member present
/// and Pod-ready, the spec's number of followers in sync), and some shard is still new.
fn serving_while_joining(obs: &Observed, owners: &[Option<NodeId>]) -> bool {
    let fresh = new_shards(obs, owners);
    if fresh.is_empty() || owners.iter().any(Option::is_none) {
        return false;
    }
    let owning = owning_shards(obs, owners);
    !owning.is_empty() && owning.iter().all(|&s| shard_whole(obs, s))
}

/// A rolling update's replacements are joining and syncing, and every shard is whole without
/// them: the cluster serves with all the redundancy the spec asks for (that is the surge's
/// point), so `Ready` stays True while the replacements are not done.
fn serving_while_surging(obs: &Observed, joining: &BTreeSet<&str>) -> bool {
    !joining.is_empty() && (0..obs.shape.leaders).all(|s| shard_whole_without(obs, s, joining))
}

/// The shard's leader serves, it has exactly its members, all Pod-ready, with the spec's
/// number of followers in sync.
fn shard_whole(obs: &Observed, shard: usize) -> bool {
    shard_whole_without(obs, shard, &BTreeSet::new())
}

/// [`shard_whole`] with the Pods named in `skip` left out.
fn shard_whole_without(obs: &Observed, shard: usize, skip: &BTreeSet<&str>) -> bool {
    let Some(leader) = shard_leader(obs, shard) else {
        return false;
    };
    let members: Vec<_> = obs
        .live()
        .filter(|m| m.shard == shard && !skip.contains(m.name()))
        .collect();
    let synced = members
        .iter()
        .filter_map(|m| obs.view_of(m))
        .filter(|v| v.id() != leader.id() && in_sync(v, leader))
        .count();
    members.len() == obs.shape.followers + 1
        && members.iter().all(|m| m.ready())
        && synced >= obs.shape.followers
}

/// What the formation waits for, and whether the cluster is formed with every Pod ready.
fn waiting(obs: &Observed, formation: Option<&Formation>) -> (&'static str, String, bool) {
    let Some(formation) = formation else {
        return ("PlacementUnsatisfiable", String::new(), false);
    };
    match formation {
        Formation::Done => formed(obs),
        // Formed but for gossip about a follower's role: what `Done` would say once it spreads
        // (`settling` when that is Ready).
        Formation::WaitRoles(m) if formed_and_ready(obs) => ("WaitingForSync", m.clone(), false),
        Formation::WaitRoles(_) => formed(obs),
        Formation::WaitMembers(m) => ("WaitingForMembers", m.clone(), false),
        Formation::Meet(pairs) => (
            "JoiningMembers",
            format!("introducing {} member pairs (CLUSTER MEET)", pairs.len()),
            false,
        ),
        Formation::WaitGossip(m, _) => ("JoiningMembers", m.clone(), false),
        Formation::AddSlots(a) => (
            "AssigningSlots",
            format!("assigning slots to {} shard leaders", a.len()),
            false,
        ),
        Formation::Replicate(r) => (
            "AttachingFollowers",
            format!("attaching {} followers", r.len()),
            false,
        ),
        Formation::WaitSync(m) => ("WaitingForSync", m.clone(), false),
        Formation::Blocked(m) => ("Blocked", m.clone(), false),
    }
}

/// Every member exists and its Pod is ready.
fn formed_and_ready(obs: &Observed) -> bool {
    formed(obs).2
}

/// What a formed cluster waits for: every member to exist and its Pod to be ready.
fn formed(obs: &Observed) -> (&'static str, String, bool) {
    let live: Vec<_> = obs.live().collect();
    let not_ready: Vec<&str> = live
        .iter()
        .filter(|m| !m.ready())
        .map(|m| m.name())
        .collect();
    if live.len() < obs.shape.members() {
        (
            "WaitingForMembers",
            format!("{} of {} members exist", live.len(), obs.shape.members()),
            false,
        )
    } else if !not_ready.is_empty() {
        (
            "WaitingForPods",
            format!(
                "cluster formed; waiting for pods to pass readiness: {}",
                not_ready.join(", ")
            ),
            false,
        )
    } else {
        (
            "ClusterReady",
            "all slots served, every follower in sync".into(),
            true,
        )
    }
}

/// The problems only a human can accept, most severe first.
fn losses(
    obs: &Observed,
    owners: &[Option<NodeId>],
    gone: &[Gone],
    awaited: &[Awaited<'_>],
) -> Vec<Problem> {
    let cluster = &obs.name;
    let mut out = Vec::new();
    let lost = quorum_lost(obs, gone);
    if !lost.is_empty() {
        let ids: Vec<&str> = lost.iter().map(|g| g.id.short()).collect();
        out.push(Problem::new(
            "QuorumLost",
            format!(
                "{} of {} leaders are lost ({}): Redis cannot elect replacements without a majority. \
                 To promote their followers without an election (writes they had not replicated are \
                 lost, and a leader alive behind a partition would serve the same slots): \
                 kubectl annotate rediscluster {cluster} {ACCEPT_TAKEOVER}={}",
                lost.len(),
                obs.view.voting_masters().len(),
                ids.join(", "),
                ids.join(",")
            ),
        ));
    }
    for g in gone.iter().filter(|g| data_gone(obs, g)) {
        let shard =
            super::shard::shard_of(obs, &g.id).map_or_else(|| "?".to_string(), |s| s.to_string());
        out.push(Problem::new(
            "DataLoss",
            format!(
                "shard {shard} lost its leader {} and every follower with its data; slots {} are \
                 not served and nothing is reassigned automatically. To serve them again EMPTY: \
                 kubectl annotate rediscluster {cluster} {ACCEPT_DATA_LOSS}={}",
                g.id.short(),
                fmt_ranges(&slot_ranges(owners, &g.id)),
                g.id.short()
            ),
        ));
    }
    for a in awaited {
        let volumes: Vec<String> = a
            .claims
            .iter()
            .map(|c| match c.node.as_deref() {
                Some(n) if obs.node_ready(n) => format!("{} on {n}", c.name),
                Some(n) if obs.nodes.contains_key(n) => format!("{} on {n}, not ready", c.name),
                Some(n) => format!("{} on {n}, which no longer exists", c.name),
                None => format!("{} on no node", c.name),
            })
            .collect();
        out.push(Problem::new(
            "DataUnavailable",
            format!(
                "shard {} lost its leader {} and every follower with its data; slots {} are not \
                 served until a member returns with its volume ({}); nothing is reassigned \
                 meanwhile. If those volumes are gone for good, delete their PVCs and the \
                 DataLoss condition will say how to serve the slots empty",
                a.shard,
                a.leader.id.short(),
                fmt_ranges(&slot_ranges(owners, &a.leader.id)),
                volumes.join(", ")
            ),
        ));
    }
    out
}

/// Ids the loss problems are about (their plain "LeaderLost" line is left out).
fn covered(
    obs: &Observed,
    gone: &[Gone],
    awaited: &[Awaited<'_>],
    retired: &[NodeId],
) -> Vec<NodeId> {
    let mut ids: Vec<_> = quorum_lost(obs, gone)
        .iter()
        .map(|g| g.id.clone())
        .collect();
    ids.extend(
        gone.iter()
            .filter(|g| data_gone(obs, g))
            .map(|g| g.id.clone()),
    );
    for a in awaited {
        ids.push(a.leader.id.clone());
        ids.extend(lost_followers(obs, &a.leader.id));
    }
    // Retired by the rolling update once their replacements were in sync: forgotten at once.
    ids.extend_from_slice(retired);
    ids
}

/// Zones that hold (or held) members of this cluster and have no ready node now.
pub fn unavailable_zones(obs: &Observed) -> Vec<String> {
    let mut zones: Vec<String> = obs
        .members
        .iter()
        .filter_map(|m| m.node())
        .chain(obs.claims.iter().filter_map(|c| c.node.as_deref()))
        .map(|n| obs.zone_of(n).to_string())
        .filter(|z| !z.is_empty())
        .filter(|z| !obs.nodes.values().any(|n| n.ready && &n.zone == z))
        .collect();
    zones.sort();
    zones.dedup();
    zones
}

/// Everything else that is wrong now, computed from the observation alone.
fn others(
    obs: &Observed,
    owners: &[Option<NodeId>],
    gone: &[Gone],
    covered: &[NodeId],
    joining: &BTreeSet<&str>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    // A typo in a break-glass annotation (set by a human during an outage, who waits for the
    // operator to act on it) must say so at once; it stops nothing else, recovery included.
    if !obs.break_glass.malformed.is_empty() {
        out.push(Problem::new(
            "BreakGlassInvalid",
            format!(
                "break-glass annotations must list node ids (or prefixes of 8 to 40 hex digits), separated by commas; ignored: {}",
                obs.break_glass.malformed.join(", ")
            ),
        ));
    }
    // A cluster still being built is not degraded; one that served slots (or whose volumes
    // carry identities) and lost something is.
    let formed =
        !obs.view.voting_masters().is_empty() || obs.claims.iter().any(|c| c.node_id.is_some());
    if !formed {
        return out;
    }
    // A scale-out's new shards are being built, not missing.
    let fresh = new_shards(obs, owners);
    let live: Vec<_> = obs.live().filter(|m| !fresh.contains(&m.shard)).collect();
    let want = obs.shape.members() - fresh.len() * (obs.shape.followers + 1);
    if live.len() < want && !live.is_empty() {
        out.push(Problem::new(
            "MembersMissing",
            format!("{} of {want} members exist", live.len()),
        ));
    }
    for zone in unavailable_zones(obs) {
        out.push(Problem::new(
            "ZoneUnavailable",
            format!("zone {zone} has no ready node; its members are re-placed in the other zones"),
        ));
    }
    for g in gone.iter().filter(|g| !covered.contains(&g.id)) {
        out.push(if g.slots > 0 {
            Problem::new(
                "LeaderLost",
                format!(
                    "leader {} of {} slots is not answering: {}",
                    g.id.short(),
                    g.slots,
                    g.describe()
                ),
            )
        } else {
            Problem::new(
                "StaleIdentity",
                format!("gone member still listed by the cluster: {}", g.describe()),
            )
        });
    }
    // A rolling update's replacement is not a member before it answers (it is starting).
    let silent: Vec<&str> = live
        .iter()
        .filter(|m| obs.view_of(m).is_none() && !joining.contains(&m.name()))
        .map(|m| m.name())
        .collect();
    if !silent.is_empty() {
        out.push(Problem::new(
            "MembersNotAnswering",
            format!("not answering: {}", silent.join(", ")),
        ));
    }
    let open = obs.view.open_slots();
    if !open.is_empty() {
        out.push(Problem::new(
            "OpenSlots",
            format!("{} slot(s) left migrating or importing", open.len()),
        ));
    }
    out.extend(unsynced(obs, &live));
    let unpersisted: Vec<String> = live
        .iter()
        .filter_map(|m| {
            let failure = obs.view_of(m)?.persistence.failure()?;
            Some(format!("{}: {failure}", m.name()))
        })
        .collect();
    if !unpersisted.is_empty() {
        out.push(Problem::new(
            PERSISTENCE_FAILING,
            format!(
                "cannot write to disk ({}); a leader among them refuses writes (MISCONF) until it hands over",
                unpersisted.join("; ")
            ),
        ));
    }
    out
}

/// The reason of a member that cannot write its disk.
pub const PERSISTENCE_FAILING: &str = "PersistenceFailing";

/// How long a follower may go without a link to its answering leader before that is a
/// problem: a full sync of several GB fits, a sync that fails again and again does not.
pub const SYNC_STALLED: Duration = Duration::from_secs(60);

/// Followers cut off from their answering leader for [`SYNC_STALLED`] or longer, by their own
/// `master_link_down_since_seconds`, or, for one that never linked since it started (Redis
/// reports -1 then), by how long its container has run. A full sync failing again and again
/// (a full disk on the follower, which Redis shows only in its log; a sync larger than
/// `client-output-buffer-limit replica`) would otherwise leave the shard without redundancy
/// with nothing in the status but `WaitingForSync`.
fn unsynced(obs: &Observed, live: &[&Member]) -> Option<Problem> {
    let now = obs.now;
    let stalled: Vec<String> = live
        .iter()
        .filter_map(|m| {
            let v = obs.view_of(m)?;
            let link = v.replication.replica_link()?;
            let leader = obs.view.node(v.myself.master_id.as_ref()?)?;
            if link.link_up || !leader.is_serving_master() {
                return None;
            }
            let (cut_off, how) = match link.link_down_since_seconds {
                Some(s) => (Duration::from_secs(s), "link down"),
                None => (
                    Duration::try_from(now.duration_since(m.running_since()?)).ok()?,
                    "never linked since its start",
                ),
            };
            (cut_off >= SYNC_STALLED).then(|| {
                format!(
                    "{} (shard {}, {how}, {} s{})",
                    m.name(),
                    m.shard,
                    cut_off.as_secs(),
                    if link.sync_in_progress {
                        ", a full sync running"
                    } else {
                        ""
                    }
                )
            })
        })
        .collect();
    (!stalled.is_empty()).then(|| {
        Problem::new(
            FOLLOWER_NOT_SYNCING,
            format!(
                "not replicating from their leader for {} s or more: {}; a full sync failing again and again? The member's log says why (a full disk, client-output-buffer-limit replica)",
                SYNC_STALLED.as_secs(),
                stalled.join(", ")
            ),
        )
    })
}

/// The reason of followers long cut off from their leader ([`unsynced`]).
pub const FOLLOWER_NOT_SYNCING: &str = "FollowerNotSyncing";

//! Facts: everything the concerns share, computed once per reconcile from the observation.
//! Each question has one answer here: who leads a shard ([`Facts::leader`]), who is gone and
//! who says so ([`gone`]), which claims stand for a member ([`claims`]), which shards await
//! their volumes ([`loss`]), which members are outdated, whether a follower is in sync
//! ([`in_sync`]), who owns a slot ([`Facts::owners`]), how far the cluster is from formed
//! ([`formation`]), which surge member replaces which outdated one ([`surge`]), and what is
//! wrong and whether it is Ready ([`health`]).

pub mod claims;
pub mod formation;
pub mod gone;
pub mod health;
pub mod loss;
pub mod promotion;
pub mod seats;
pub mod shard;
pub mod surge;
pub mod unready;

use redis_scheduler::Placement;

use crate::controller::observe::pods::Member;
use crate::controller::observe::redis::NodeView;
use crate::controller::observe::revision::outdated;
use crate::controller::observe::{Claim, Observed};
use crate::redis::ids::NodeId;
use formation::Formation;
use gone::Gone;
use health::Health;
use loss::Awaited;
pub use shard::{in_sync, serving_leader, shard_leader, shard_of};

/// The member Pods whose Redis refused the password: they run with another one than the
/// Secret holds now (edited, switched, deleted and regenerated).
fn refusing_password(obs: &Observed) -> Vec<String> {
    use crate::redis::RedisError;
    obs.view
        .unreachable
        .iter()
        .filter(|u| {
            matches!(
                u.error,
                RedisError::AuthRefused { .. } | RedisError::NoAuth(_)
            )
        })
        .filter_map(|u| obs.member_at(u.addr).map(|m| m.name().to_string()))
        .collect()
}

/// The shared facts of one reconcile.
#[derive(Debug)]
pub struct Facts<'a> {
    /// The observation they come from.
    pub obs: &'a Observed,
    /// The placement over the nodes as they are now, or why none exists.
    pub placement: Result<Placement, String>,
    /// Who owns each slot ([`crate::redis::model::slot_owners_of`]).
    pub owners: Vec<Option<NodeId>>,
    /// PVCs standing for members whose Pods are gone ([`claims::held`]).
    pub held: Vec<&'a Claim>,
    /// Identities the cluster lists that no member answers as.
    pub gone: Vec<Gone>,
    /// Shards waiting for their volumes (S6 with PVCs).
    pub awaited: Vec<Awaited<'a>>,
    /// Live members built from an older revision.
    pub outdated: Vec<&'a Member>,
    /// A rolling update's surge pairs under way ([`surge::pairs`]).
    pub surges: Vec<surge::Surge<'a>>,
    /// Identities a rolling update retired ([`surge::retired_ids`]).
    pub retired: Vec<NodeId>,
    /// How far the cluster is from formed (`None` without a placement).
    pub formation: Option<Formation>,
    /// What is wrong, what the cluster waits for, Ready or not.
    pub health: Health,
    /// PVCs of members that are gone and that no member will use again.
    pub orphaned_claims: Vec<String>,
    /// Member Pods whose Redis refused the password (`WRONGPASS`, `NOAUTH`).
    pub refusing_password: Vec<String>,
}

impl<'a> Facts<'a> {
    /// Computes the facts.
    pub fn of(obs: &'a Observed) -> Self {
        let owners = obs.view.slot_owners();
        let held = claims::held(obs);
        let gone = gone::identities(obs, &owners, &held);
        let awaited = loss::awaited(obs, &gone);
        let placement = seats::placement(obs, &held);
        let formation = placement
            .as_ref()
            .ok()
            .map(|p| formation::next_step(&seats::shards(obs, p)));
        let surges = surge::pairs(obs);
        let retired = surge::retired_ids(obs);
        let health = health::assess(
            obs,
            &owners,
            &gone,
            &awaited,
            formation.as_ref(),
            (&surges, &retired),
        );
        let orphaned_claims = claims::orphaned(obs, &held);
        let refusing_password = refusing_password(obs);
        Self {
            outdated: obs.live().filter(|m| outdated(m, &obs.target)).collect(),
            surges,
            retired,
            obs,
            placement,
            owners,
            held,
            gone,
            awaited,
            formation,
            health,
            orphaned_claims,
            refusing_password,
        }
    }

    /// The serving leader of `shard`, as its own member reports it (a Terminating Pod that
    /// still leads counts: it has yet to hand over).
    pub fn leader(&self, shard: usize) -> Option<&'a NodeView> {
        shard_leader(self.obs, shard)
    }

    /// Whether the cluster still routes slots to `m`: its identity (as it answers, or as the
    /// answering members list its address when it does not) owns a slot in
    /// [`Facts::owners`]. The cluster's view, not the member's own: a leader cut off behind a
    /// partition answers nobody, and still owns its slots until its shard fails over.
    pub fn owns_slots(&self, m: &Member) -> bool {
        if let Some(v) = self.obs.view_of(m) {
            return self.owners.iter().flatten().any(|o| o == v.id());
        }
        let Some(addr) = crate::controller::observe::redis::addr_of(m) else {
            return false;
        };
        self.gone
            .iter()
            .any(|g| g.addr == Some(addr) && g.slots > 0)
    }

    /// Whether every wanted shard has a serving leader.
    pub fn every_shard_led(&self) -> bool {
        (0..self.obs.shape.leaders).all(|s| self.leader(s).is_some())
    }

    /// Whether a rolling update is under way and allowed to move.
    pub fn rolling(&self) -> bool {
        self.obs.target.rolling && !self.obs.target.paused && !self.outdated.is_empty()
    }

    /// Live members of the target revision. A surge replacement counts once its predecessor
    /// retired: until then the pair holds one seat, the predecessor's (outdated).
    pub fn updated(&self) -> usize {
        self.obs
            .live()
            .filter(|m| !self.outdated.iter().any(|o| o.name() == m.name()))
            .filter(|m| !self.surges.iter().any(|p| p.replacement.name() == m.name()))
            .count()
    }

    /// Whether the shard waits for its volumes.
    pub fn awaits(&self, shard: usize) -> bool {
        self.awaited.iter().any(|a| a.shard == shard)
    }

    /// Every problem, most severe first, with the formation's block when `with_blocked`.
    pub fn problems(&self, with_blocked: bool) -> Vec<crate::controller::plan::step::Problem> {
        let h = &self.health;
        h.losses
            .iter()
            .chain(h.blocked.iter().filter(|_| with_blocked))
            .chain(&h.others)
            .cloned()
            .collect()
    }
}

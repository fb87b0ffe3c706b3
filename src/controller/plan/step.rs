//! What a plan can decide: the one step a reconcile takes ([`Action`]), and what a concern
//! returns when it has work ([`Step`]). Pure data, no decisions.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::controller::observe::passwords::Password;
use crate::redis::ids::{NodeId, SlotRange};
use crate::redis::ops::distribution::SlotMove;
use crate::redis::ops::meet::MeetPair;

/// A member to create: where, with which identity and volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMember {
    /// Shard index.
    pub shard: usize,
    /// Member ordinal.
    pub member: usize,
    /// Node the placement chose.
    pub node: String,
    /// Its zone.
    pub zone: String,
    /// An existing PVC to reuse (identity and data), or `None` for a new one.
    pub reuse_claim: Option<String>,
    /// The outdated member this one replaces (a rolling update's surge member): its Pod and
    /// its Redis identity.
    pub replaces: Option<(String, Option<NodeId>)>,
    /// Why (for the Event).
    pub reason: String,
}

/// A follower to promote over its gone leader, one of several in one step
/// ([`Action::StalledElections`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    /// Shard.
    pub shard: usize,
    /// The follower to promote.
    pub to: NodeId,
    /// Why, for the Event.
    pub reason: String,
}

/// The passwords one member should start and stop accepting, by SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordChange {
    /// The member's Pod.
    pub pod: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Hashes to accept.
    pub add: Vec<String>,
    /// Hashes to refuse.
    pub remove: Vec<String>,
}

/// How a failover is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverKind {
    /// `CLUSTER FAILOVER`: the leader is alive and hands over with no write lost.
    Graceful,
    /// `CLUSTER FAILOVER FORCE`: the leader's death is confirmed by Kubernetes and by a
    /// majority of the voting masters.
    Force,
    /// `CLUSTER FAILOVER TAKEOVER`: no majority is left to vote; only with the user's
    /// explicit acceptance (`accept-takeover`).
    Takeover,
    /// `CLUSTER FAILOVER TAKEOVER` with a majority reachable: the majority flags the leader
    /// FAIL, the follower is the only one that could stand, and its election was denied
    /// ([`crate::redis::ops::failover::FailoverMode::ElectionStalled`]).
    StalledElection,
}

/// The one step a reconcile takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing to change: the cluster is healthy, or it converges by itself, or it waits on
    /// something outside the operator's reach (the message says what).
    Wait,
    /// Create the generated password Secret (the spec names none and it does not exist).
    CreateAuthSecret,
    /// Create the auth state Secret with the password the members accept now.
    CreateAuthState(Password),
    /// Make members accept and refuse passwords by their hash (`ACL SETUSER default`).
    SetPasswords(Vec<PasswordChange>),
    /// Switch members' `masterauth` (what they authenticate to their leader with) to the
    /// password every member accepts now: (pod, address).
    SetMasterauth {
        /// The members to switch.
        members: Vec<(String, SocketAddr)>,
        /// The new password.
        password: Password,
    },
    /// Record a rotation: `password` becomes the active one (the operator and new members use
    /// it), and `previous` stays accepted until `until`.
    RecordRotation {
        /// The new active password.
        password: Password,
        /// The one it replaces.
        previous: Password,
        /// The end of the grace period.
        until: jiff::Timestamp,
    },
    /// Forget the previous password: its grace period is over and no member accepts it.
    ForgetPreviousPassword,
    /// Create member Pods (and PVCs).
    CreateMembers(Vec<NewMember>),
    /// Delete member Pods: (pod, why).
    DeletePods(Vec<(String, String)>),
    /// Replace outdated member Pods (rolling update): delete them, so they come back from the
    /// current spec (on their volume's node when they have one): (pod, why).
    Restart(Vec<(String, String)>),
    /// Apply runtime-settable config (`CONFIG SET`) and record it on each Pod:
    /// (pod, address, container restart count).
    ApplyConfig {
        /// Members to apply it to.
        members: Vec<(String, SocketAddr, i32)>,
        /// The settings.
        config: BTreeMap<String, String>,
    },
    /// Turn the AOF back on (`CONFIG SET appendonly yes`, a rewrite of the dataset) on members
    /// that started from their shutdown RDB and whose resync is settled: (pod, address).
    ResumeAof(Vec<(String, SocketAddr)>),
    /// Make members re-read their TLS files (`CONFIG SET tls-cert-file …`, no restart): they
    /// present another certificate than the Secret's.
    ReloadTls {
        /// (pod, address) of each member to reload.
        members: Vec<(String, SocketAddr)>,
        /// The Secret's certificate they should present afterwards (SHA-256, hex).
        fingerprint: String,
    },
    /// Delete PVCs no member uses any more (retention policy Delete): (claim, why).
    DeleteClaims(Vec<(String, String)>),
    /// Promote `to` (a follower of `shard`).
    Failover {
        /// Shard.
        shard: usize,
        /// The follower to promote.
        to: NodeId,
        /// Graceful or FORCE.
        kind: FailoverKind,
        /// Why, for the Event.
        reason: String,
    },
    /// Promote, side by side, the only follower of each shard whose election stalled
    /// ([`FailoverKind::StalledElection`], each with its own proof). A zone crash stalls the
    /// elections of several shards at once; they share no shard, claim disjoint slots and need
    /// no vote, so one cannot deny another, and one pass each would add a pass's time to the
    /// outage of every shard after the first.
    StalledElections(Vec<Promotion>),
    /// Forget identities that are gone for good, on every member.
    Forget(Vec<(NodeId, String)>),
    /// Forget leaders lost with their data, releasing their slots to be served empty (only
    /// with the user's explicit acceptance, `accept-data-loss`).
    ReleaseSlots(Vec<(NodeId, String)>),
    /// Introduce members that do not know each other (or each other's current address).
    Meet(Vec<MeetPair>),
    /// Assign slot ranges to shard leaders: (leader address, shard, ranges).
    AddSlots(Vec<(SocketAddr, usize, Vec<SlotRange>)>),
    /// Attach followers: (follower address, shard, leader id).
    Replicate(Vec<(SocketAddr, usize, NodeId)>),
    /// Close slots left open by an interrupted migration.
    FixOpenSlots,
    /// Move a batch of slots (scaling): the moves, and how many remain including them.
    Reshard {
        /// This step's moves.
        moves: Vec<SlotMove>,
        /// Slots still to move before this step.
        remaining: usize,
        /// The number of shards the slots are spread over when done.
        to_leaders: usize,
    },
    /// Record each member's Redis identity on its PVC: (claim, id).
    RecordIdentities(Vec<(String, NodeId)>),
    /// Record on the Pods of shards a scale-in removes that their master holds no slot and no
    /// key since `at`: their scale-in grace period runs from it (`plan::drain`).
    MarkDrained {
        /// (pod, shard).
        pods: Vec<(String, usize)>,
        /// The moment recorded.
        at: jiff::Timestamp,
        /// When their grace period is over (for the Event).
        until: jiff::Timestamp,
    },
    /// Clear that record from Pods whose shard holds slots again: (pod, shard).
    ClearDrained(Vec<(String, usize)>),
}

impl Action {
    /// Whether the step changes anything.
    pub fn is_change(&self) -> bool {
        !matches!(self, Action::Wait)
    }
}

/// One thing that is wrong, with a CamelCase reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Reason for the Degraded condition when this is the most severe problem.
    pub reason: &'static str,
    /// In words.
    pub message: String,
}

impl Problem {
    /// Shorthand constructor.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// What a concern decided: the action, why, and whether it is a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The action.
    pub action: Action,
    /// CamelCase reason of the step (or of what is awaited).
    pub reason: &'static str,
    /// What the step does or what is awaited, for humans.
    pub message: String,
    /// The spec cannot be carried out as it is: nothing is done about it until it changes
    /// (`Progressing=False` with the reason, a Warning Event once).
    pub refused: bool,
    /// What the refusal makes wrong (`Degraded`), if anything.
    pub problem: Option<Problem>,
}

impl Step {
    /// A step that does something.
    pub fn new(action: Action, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            action,
            reason,
            message: message.into(),
            refused: false,
            problem: None,
        }
    }

    /// A refusal: nothing is done until the spec changes; `reason` is also the problem's.
    pub fn refuse(reason: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            action: Action::Wait,
            reason,
            problem: Some(Problem::new(reason, message.clone())),
            message,
            refused: true,
        }
    }
}

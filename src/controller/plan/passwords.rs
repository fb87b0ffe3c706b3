//! Password rotation without downtime. When the Secret's password changes, in this order, each
//! step only once the one before holds on every member seen:
//! 1. every member accepts the new password beside the old (`ACL SETUSER default #<hash>`);
//! 2. every member authenticates to its leader with it (`masterauth`): a replica whose
//!    `masterauth` its leader does not accept loses replication at the next reconnect, so this
//!    waits for step 1 on all;
//! 3. the operator records it as the active password (the operator and members created from
//!    then on use it) and keeps the old one as `previous` for the grace period;
//! 4. during the grace period a member that restarted (it starts with the active password
//!    only) accepts the previous one again; after it, members stop accepting it, and then the
//!    record forgets it.
//!
//! Passwords nobody should accept (a Secret changed twice before a rotation finished) are
//! removed, never one a member still authenticates to its leader with.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::facts::Facts;
use super::step::{Action, PasswordChange, Step};
use crate::controller::observe::Observed;
use crate::controller::observe::passwords::{AuthState, Password};
use crate::controller::observe::pods::Member;
use crate::controller::observe::redis::addr_of;
use crate::redis::ops::acl::MemberAuth;

/// The reason of every rotation step and of its waits.
pub const ROTATING: &str = "RotatingPassword";

/// The rotation's next step, if one is under way.
pub fn step(f: &Facts<'_>) -> Option<Step> {
    let obs = f.obs;
    let creds = &obs.credentials;
    let state = creds.state.as_ref()?;
    if !creds.rotating() {
        return None;
    }
    let wanted = creds.wanted.as_ref().unwrap_or(&state.active);
    let seen = seen(obs);
    let in_grace = in_grace(state, obs.now);
    let mut needed: BTreeSet<String> = [state.active.hash(), wanted.hash()].into();
    needed.extend(in_grace.map(Password::hash));
    if let Some(step) = sync_passwords(&seen, &needed, wanted, state, in_grace.is_some()) {
        return Some(step);
    }
    // A member that answers Redis but whose passwords were not read may be the leader a
    // replica would switch to the new password against: nothing switches until it is read.
    let unseen: Vec<&str> = obs
        .live()
        .filter(|m| obs.view_of(m).is_some() && !creds.members.contains_key(m.name()))
        .map(Member::name)
        .collect();
    if !unseen.is_empty() {
        return Some(Step::new(
            Action::Wait,
            ROTATING,
            format!(
                "waiting to read which passwords these members accept: {}",
                unseen.join(", ")
            ),
        ));
    }
    if let Some(step) = masterauth(&seen, wanted) {
        return Some(step);
    }
    if *wanted != state.active {
        let until = obs.now.saturating_add(creds.grace).unwrap_or(obs.now);
        return Some(Step::new(
            Action::RecordRotation {
                password: wanted.clone(),
                previous: state.active.clone(),
                until,
            },
            ROTATING,
            // No timestamp in the message: a message that changes every pass would rewrite
            // the status every pass, and each write wakes the next pass.
            format!(
                "every member accepts the new password and replicates with it: switching to it; the previous password stays accepted for {}",
                short(creds.grace)
            ),
        ));
    }
    let previous = state.previous.as_ref()?;
    if in_grace.is_none()
        && !seen
            .iter()
            .any(|s| s.auth.passwords.contains(&previous.hash()))
    {
        return Some(Step::new(
            Action::ForgetPreviousPassword,
            ROTATING,
            "the grace period is over and no member accepts the previous password: forgetting it",
        ));
    }
    None
}

/// `10m`, `2h`, `90s`: a grace period as the spec writes it.
fn short(d: jiff::SignedDuration) -> String {
    match d.as_secs() {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A live member whose passwords were read this pass.
struct Seen<'a> {
    pod: &'a str,
    addr: SocketAddr,
    auth: &'a crate::redis::ops::acl::MemberAuth,
}

fn seen(obs: &Observed) -> Vec<Seen<'_>> {
    obs.live()
        .filter_map(|m| {
            Some(Seen {
                pod: m.name(),
                addr: addr_of(m)?,
                auth: obs.credentials.members.get(m.name())?,
            })
        })
        .collect()
}

/// The previous password while its grace period lasts.
fn in_grace(state: &AuthState, now: jiff::Timestamp) -> Option<&Password> {
    let previous = state.previous.as_ref()?;
    state
        .previous_until
        .is_some_and(|until| now < until)
        .then_some(previous)
}

/// Members missing a password they should accept, or accepting one nobody should (never one a
/// member authenticates to its leader with: that would break its replication).
fn sync_passwords(
    seen: &[Seen<'_>],
    needed: &BTreeSet<String>,
    wanted: &Password,
    state: &AuthState,
    in_grace: bool,
) -> Option<Step> {
    let mut allowed = needed.clone();
    allowed.extend(seen.iter().map(|s| s.auth.masterauth.clone()));
    let changes: Vec<PasswordChange> = seen
        .iter()
        .filter_map(|s| {
            let add: Vec<String> = needed.difference(&s.auth.passwords).cloned().collect();
            let remove: Vec<String> = s.auth.passwords.difference(&allowed).cloned().collect();
            (!add.is_empty() || !remove.is_empty()).then(|| PasswordChange {
                pod: s.pod.to_string(),
                addr: s.addr,
                add,
                remove,
            })
        })
        .collect();
    if changes.is_empty() {
        return None;
    }
    let pods = changes
        .iter()
        .map(|c| c.pod.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let adds_wanted = changes.iter().any(|c| c.add.contains(&wanted.hash()));
    let previous = state.previous.as_ref().map(Password::hash);
    let removes_previous = changes
        .iter()
        .any(|c| previous.as_ref().is_some_and(|p| c.remove.contains(p)));
    let what = if adds_wanted {
        "the Secret's new password, beside the current one (ACL SETUSER default)"
    } else if removes_previous && !in_grace {
        "no longer the previous password: its grace period is over"
    } else if in_grace {
        "the previous password again until its grace period is over (they restarted)"
    } else {
        "only the current passwords"
    };
    Some(Step::new(
        Action::SetPasswords(changes),
        ROTATING,
        format!("members to accept {what}: {pods}"),
    ))
}

/// Members that do not authenticate to their leader with the Secret's password yet.
fn masterauth(seen: &[Seen<'_>], wanted: &Password) -> Option<Step> {
    let stale: Vec<(String, SocketAddr)> = seen
        .iter()
        .filter(|s| s.auth.masterauth != wanted.hash())
        .map(|s| (s.pod.to_string(), s.addr))
        .collect();
    if stale.is_empty() {
        return None;
    }
    let pods = stale
        .iter()
        .map(|(p, _)| p.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    Some(Step::new(
        Action::SetMasterauth {
            members: stale,
            password: wanted.clone(),
        },
        ROTATING,
        format!(
            "every member accepts the new password: switching their replication to it (masterauth): {pods}"
        ),
    ))
}

/// Members that do not accept the Secret's password yet, or do not replicate with it (for
/// status): empty when no rotation is under way.
pub fn pending(obs: &Observed) -> Vec<String> {
    let creds = &obs.credentials;
    let (Some(state), Some(wanted)) = (&creds.state, &creds.wanted) else {
        return Vec::new();
    };
    if *wanted == state.active {
        return Vec::new();
    }
    let hash = wanted.hash();
    let done = |a: &MemberAuth| a.passwords.contains(&hash) && a.masterauth == hash;
    obs.live()
        .filter(|m| obs.view_of(m).is_some())
        .filter(|m| !creds.members.get(m.name()).is_some_and(done))
        .map(|m| m.name().to_string())
        .collect()
}

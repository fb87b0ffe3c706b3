//! Password rotation: table tests on the plan fixture (`fixture.rs`). `P` is the password the
//! members run with, `Q` the Secret's new one, `R` a third.

use std::collections::{BTreeMap, BTreeSet};

use super::fixture::*;
use crate::controller::act::Executed;
use crate::controller::observe::Observed;
use crate::controller::observe::passwords::{AuthState, Password};
use crate::controller::plan::passwords::{ROTATING, pending};
use crate::controller::plan::*;
use crate::controller::status::{conditions, types};
use crate::redis::ops::acl::MemberAuth;

const ALL: [char; 6] = ['a', 'b', 'c', 'd', 'e', 'f'];

fn h(p: &str) -> String {
    Password::new(p).hash()
}

fn pod_of(fx: &Fx, c: char) -> String {
    let m = fx.members.iter().find(|m| m.id == id(c)).unwrap();
    format!("p-s{}-m{}-{c}", m.shard, m.member)
}

/// Minutes relative to the fixture's clock.
fn at(minutes: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_000_000).unwrap() + jiff::SignedDuration::from_mins(minutes)
}

/// One member's passwords, as `ACL GETUSER` and `CONFIG GET masterauth` show them.
#[derive(Clone, Copy)]
struct Holds {
    accepts: &'static [&'static str],
    masterauth: &'static str,
}

const fn holds(accepts: &'static [&'static str], masterauth: &'static str) -> Holds {
    Holds {
        accepts,
        masterauth,
    }
}

/// The healthy 3×1 with the Secret asking for `wanted`, the record (`active`, `previous`
/// until `until` minutes from now), and what each member holds (`None`: not read).
fn observed(
    wanted: &str,
    active: &str,
    previous: Option<(&str, i64)>,
    members: &[(char, Option<Holds>)],
) -> (Fx, Observed) {
    let fx = healthy();
    let mut obs = fx.observed();
    obs.credentials.wanted = Some(Password::new(wanted));
    obs.credentials.state = Some(AuthState {
        active: Password::new(active),
        previous: previous.map(|(p, _)| Password::new(p)),
        previous_until: previous.map(|(_, until)| at(until)),
        rotated_at: None,
    });
    obs.credentials.members = members
        .iter()
        .filter_map(|(c, holds)| {
            let holds = (*holds)?;
            Some((
                pod_of(&fx, *c),
                MemberAuth {
                    passwords: holds.accepts.iter().map(|p| h(p)).collect(),
                    masterauth: h(holds.masterauth),
                },
            ))
        })
        .collect();
    (fx, obs)
}

fn every(holds: Holds) -> Vec<(char, Option<Holds>)> {
    ALL.iter().map(|c| (*c, Some(holds))).collect()
}

fn with(
    mut members: Vec<(char, Option<Holds>)>,
    c: char,
    h: Option<Holds>,
) -> Vec<(char, Option<Holds>)> {
    for m in &mut members {
        if m.0 == c {
            m.1 = h;
        }
    }
    members
}

/// (pod, added, removed) of a `SetPasswords` step, sorted.
fn changes(plan: &Plan) -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    match &plan.action {
        Action::SetPasswords(changes) => changes
            .iter()
            .map(|c| {
                (
                    c.pod.clone(),
                    (
                        c.add.iter().cloned().collect(),
                        c.remove.iter().cloned().collect(),
                    ),
                )
            })
            .collect(),
        other => panic!("expected SetPasswords, got {other:?} ({plan:?})"),
    }
}

fn set(ps: &[&str]) -> BTreeSet<String> {
    ps.iter().map(|p| h(p)).collect()
}

#[test]
fn a_new_password_is_added_beside_the_old_on_every_member_first() {
    let old = holds(&["P"], "P");
    let both = holds(&["P", "Q"], "P");
    // (what members hold, the members that get Q)
    let cases = [
        (every(old), ALL.to_vec()),
        (with(every(both), 'c', Some(old)), vec!['c']),
        // A member not read is not changed (and nothing switches until it is, below).
        (with(every(old), 'e', None), vec!['a', 'b', 'c', 'd', 'f']),
    ];
    for (members, want) in cases {
        let (fx, obs) = observed("Q", "P", None, &members);
        let plan = decide(&obs);
        let got = changes(&plan);
        let want: BTreeMap<String, _> = want
            .iter()
            .map(|c| (pod_of(&fx, *c), (set(&["Q"]), BTreeSet::new())))
            .collect();
        assert_eq!(got, want, "{plan:?}");
        assert_eq!(plan.reason, ROTATING);
        assert!(plan.message.contains("new password"), "{}", plan.message);
        // A rotation keeps a Ready cluster Ready, and says it is under way.
        assert!(plan.ready, "{plan:?}");
        let c = conditions(&plan, &Executed::Applied("done".into()));
        assert!(cond(&c, types::READY).status);
        assert!(!cond(&c, types::DEGRADED).status);
        assert!(cond(&c, types::PROGRESSING).status);
    }
}

#[test]
fn replication_switches_only_once_every_member_accepts_the_new_password() {
    let both_p = holds(&["P", "Q"], "P");
    let both_q = holds(&["P", "Q"], "Q");
    // One member not read yet: no switch (it may be the leader a replica switches against).
    let (_, obs) = observed("Q", "P", None, &with(every(both_p), 'a', None));
    let plan = decide(&obs);
    assert_eq!(plan.action, Action::Wait, "{plan:?}");
    assert!(plan.message.contains("waiting to read"), "{}", plan.message);
    // All accept Q: those still replicating with P switch.
    let (fx, obs) = observed("Q", "P", None, &with(every(both_q), 'd', Some(both_p)));
    let plan = decide(&obs);
    match &plan.action {
        Action::SetMasterauth { members, password } => {
            assert_eq!(*password, Password::new("Q"));
            let pods: Vec<&str> = members.iter().map(|(p, _)| p.as_str()).collect();
            assert_eq!(pods, [pod_of(&fx, 'd')], "{plan:?}");
        }
        other => panic!("expected SetMasterauth, got {other:?}"),
    }
    assert_eq!(pending(&obs), [pod_of(&fx, 'd')]);
}

#[test]
fn the_switch_is_recorded_with_the_grace_period_once_every_member_replicates_with_it() {
    let (_, obs) = observed("Q", "P", None, &every(holds(&["P", "Q"], "Q")));
    assert!(pending(&obs).is_empty());
    let plan = decide(&obs);
    assert_eq!(
        plan.action,
        Action::RecordRotation {
            password: Password::new("Q"),
            previous: Password::new("P"),
            until: at(10),
        },
        "{plan:?}"
    );
    // The plan's Debug output (logged) never shows a password.
    let shown = format!("{plan:?}");
    assert!(
        !shown.contains("\"Q\"") && !shown.contains("\"P\""),
        "{shown}"
    );
}

#[test]
fn the_previous_password_is_kept_for_the_grace_period_then_removed_then_forgotten() {
    let both = holds(&["P", "Q"], "Q");
    let new_only = holds(&["Q"], "Q");
    // In the grace period, with every member holding both: nothing to do.
    let (_, obs) = observed("Q", "Q", Some(("P", 5)), &every(both));
    let plan = decide(&obs);
    assert_eq!(plan.action, Action::Wait, "{plan:?}");
    assert!(plan.ready);
    // A member restarted in the grace period (it starts with Q only) accepts P again.
    let (fx, obs) = observed(
        "Q",
        "Q",
        Some(("P", 5)),
        &with(every(both), 'b', Some(new_only)),
    );
    let plan = decide(&obs);
    let want = BTreeMap::from([(pod_of(&fx, 'b'), (set(&["P"]), BTreeSet::new()))]);
    assert_eq!(changes(&plan), want);
    assert!(plan.message.contains("restarted"), "{}", plan.message);
    // The grace period is over: every member stops accepting P.
    let (_, obs) = observed(
        "Q",
        "Q",
        Some(("P", -1)),
        &with(every(both), 'b', Some(new_only)),
    );
    let plan = decide(&obs);
    let got = changes(&plan);
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(
        got.values()
            .all(|(add, remove)| add.is_empty() && *remove == set(&["P"]))
    );
    assert!(
        plan.message.contains("grace period is over"),
        "{}",
        plan.message
    );
    // No member accepts it any more: the record forgets it.
    let (_, obs) = observed("Q", "Q", Some(("P", -1)), &every(new_only));
    assert_eq!(plan_of(&obs), Action::ForgetPreviousPassword);
}

#[test]
fn a_secret_changed_again_mid_rotation_drops_the_skipped_password_but_not_one_in_use() {
    // Q was added everywhere, then the Secret changed to R before the switch.
    let (fx, obs) = observed("R", "P", None, &every(holds(&["P", "Q", "R"], "P")));
    let got = changes(&decide(&obs));
    assert_eq!(got.len(), 6);
    assert!(
        got.values()
            .all(|(add, remove)| add.is_empty() && *remove == set(&["Q"]))
    );
    // A member replicating with Q keeps Q accepted everywhere until it switches to R.
    let (_, obs) = observed(
        "R",
        "P",
        None,
        &with(
            every(holds(&["P", "Q", "R"], "R")),
            'f',
            Some(holds(&["P", "Q", "R"], "Q")),
        ),
    );
    let plan = decide(&obs);
    match &plan.action {
        Action::SetMasterauth { members, password } => {
            assert_eq!(*password, Password::new("R"));
            assert_eq!(members.len(), 1);
            assert_eq!(members[0].0, pod_of(&fx, 'f'));
        }
        other => panic!("expected SetMasterauth, got {other:?}"),
    }
}

#[test]
fn without_a_record_it_is_made_first_and_nothing_is_read_from_members() {
    let fx = healthy();
    let mut obs = fx.observed();
    obs.credentials.state = None;
    assert!(!obs.credentials.rotating());
    let plan = decide(&obs);
    assert_eq!(
        plan.action,
        Action::CreateAuthState(Password::new("secret")),
        "{plan:?}"
    );
    // With a record holding the Secret's password, nothing is under way.
    let obs = fx.observed();
    assert!(!obs.credentials.rotating());
    assert_eq!(plan_of(&obs), Action::Wait);
}

fn decide(obs: &Observed) -> Plan {
    crate::controller::plan::plan(obs)
}

fn plan_of(obs: &Observed) -> Action {
    decide(obs).action
}

#[test]
fn the_switch_message_is_the_same_on_every_pass() {
    // A message with the pass's time in it would change the status on every pass, and each
    // status write wakes another pass.
    let (_, mut obs) = observed("Q", "P", None, &every(holds(&["P", "Q"], "Q")));
    let first = decide(&obs).message;
    obs.now = at(1);
    assert_eq!(decide(&obs).message, first);
    assert!(first.contains("10m"), "{first}");
}

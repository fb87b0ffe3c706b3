//! A follower restarted from its shutdown RDB (`scripts/resume-rdb.sh`) runs without its AOF
//! until its resync is settled: then the AOF is turned back on, and until then it neither
//! leads by the operator's hand nor counts as outdated.

use super::fixture::*;
use crate::controller::plan::*;

/// What the plan does about the AOF: the members it turns it back on for.
fn resumed(plan: &Plan) -> Vec<String> {
    match &plan.action {
        Action::ResumeAof(members) => members.iter().map(|(p, _)| p.clone()).collect(),
        _ => Vec::new(),
    }
}

/// `c` started from its RDB: AOF off; still resyncing when `unlinked`.
fn restarted_from_rdb(mut fx: Fx, c: char, unlinked: bool) -> Fx {
    fx.aof_off.push(id(c));
    if unlinked {
        fx.unlinked.push(id(c));
    }
    fx
}

#[test]
fn the_aof_is_turned_back_on_once_the_resync_is_settled() {
    // (AOF off for, resyncing, spec's AOF, AOF turned back on for)
    type Case<'a> = (&'a [char], &'a [char], bool, &'a [&'a str]);
    let cases: &[Case<'_>] = &[
        (&[], &[], true, &[]),
        // Link up: the partial resync is done.
        (&['d'], &[], true, &["p-s0-m1-d"]),
        // Still loading its RDB or in its handshake: not yet.
        (&['d'], &['d'], true, &[]),
        (&['d', 'e'], &['d'], true, &["p-s1-m1-e"]),
        // A leader running without its AOF gets it at once.
        (&['a'], &[], true, &["p-s0-m0-a"]),
        // The spec turned the AOF off: nothing to resume.
        (&['d'], &[], false, &[]),
    ];
    for (off, resyncing, aof, want) in cases {
        let mut fx = healthy();
        fx.target.aof = *aof;
        for c in *off {
            fx = restarted_from_rdb(fx, *c, resyncing.contains(c));
        }
        let plan = plan(&fx.observed());
        assert_eq!(
            resumed(&plan),
            *want,
            "{off:?} {resyncing:?} {aof}: {plan:?}"
        );
        if !want.is_empty() {
            // The same words on every pass until it is done: no count or time in them.
            assert_eq!(plan.reason, "ResumingAof");
            assert_eq!(
                plan.message,
                format!(
                    "turning the AOF back on for {} (started from the shutdown RDB for a partial resync; resync settled)",
                    want.join(", ")
                )
            );
        }
    }
}

#[test]
fn a_resyncing_member_gets_no_live_config_until_its_resync_is_settled() {
    // The spec sets `appendonly yes` live: applying it during the RDB load or before the
    // PSYNC would start the rewrite early.
    let mut fx = restarted_from_rdb(healthy(), 'd', true);
    fx.target.live.insert("appendonly".into(), "yes".into());
    let plan = plan(&fx.observed());
    match &plan.action {
        Action::ApplyConfig { members, .. } => {
            assert_eq!(members.len(), 5, "{members:?}");
            assert!(
                members.iter().all(|(p, _, _)| p != "p-s0-m1-d"),
                "{members:?}"
            );
        }
        other => panic!("expected live config for the others, got {other:?}"),
    }
}

#[test]
fn a_member_without_its_aof_is_not_outdated_and_not_restarted() {
    // Resyncing: a follower syncing, as any restarted follower is.
    let mut fx = restarted_from_rdb(healthy(), 'd', true);
    let plan = plan(&fx.observed());
    assert_eq!(plan.action, Action::Wait, "{plan:?}");
    assert_eq!(plan.reason, "WaitingForSync", "{plan:?}");
    assert!(plan.problems.is_empty(), "{plan:?}");
    assert_eq!(plan.rollout.map(|r| r.updated), Some(6));
    // Linked, AOF still off: Ready, and only the AOF is due.
    fx.unlinked.clear();
    let plan = crate::controller::plan::plan(&fx.observed());
    assert_eq!(resumed(&plan), ["p-s0-m1-d"], "{plan:?}");
    assert!(plan.ready, "{plan:?}");
    assert!(plan.problems.is_empty(), "{plan:?}");
}

#[test]
fn the_rollout_hands_the_lead_only_to_a_follower_with_its_aof() {
    // d is updated and in sync but runs without its AOF: the AOF comes first, then the
    // handover.
    let mut fx = restarted_from_rdb(healthy(), 'd', false);
    fx.target.revision = "rev-2".into();
    fx.get('d').rev = "rev-2";
    let plan = plan(&fx.observed());
    assert_eq!(resumed(&plan), ["p-s0-m1-d"], "{plan:?}");
    fx.aof_off.clear();
    let plan = crate::controller::plan::plan(&fx.observed());
    let (shard, to, kind) = failover_of(&plan);
    assert_eq!((shard, to, kind), (0, id('d'), FailoverKind::Graceful));
}

#[test]
fn a_follower_that_has_not_reached_its_leader_since_its_start_is_not_forced_over() {
    // It loaded its RDB (a real offset) and its leader crashed before the resync: it holds
    // only what its disk had, as one that loaded its AOF (offset 0) did before.
    let mut fx = restarted_from_rdb(healthy(), 'd', true);
    fx.lose('a', Some(PodState::Down));
    let p = plan(&fx.observed());
    assert!(!promotes(&p), "{p:?}");
    assert!(p.problems.iter().any(|x| x.reason == "LeaderLost"), "{p:?}");
    // Once linked (then the link went down), it is the best copy there is.
    fx.unlinked.clear();
    let p = plan(&fx.observed());
    let (shard, to, kind) = failover_of(&p);
    assert_eq!((shard, to, kind), (0, id('d'), FailoverKind::Force));
}

#[test]
fn the_spread_is_restored_only_once_the_returning_leader_has_its_aof() {
    // After a handover d (zone-b) leads shard 0; a (zone-a) came back updated, in sync, from
    // its shutdown RDB. The lead returns to zone-a once a's AOF is on.
    let mut fx = restarted_from_rdb(healthy(), 'a', false);
    fx.get('d').master = None;
    fx.get('d').slots = "0-5461";
    fx.get('a').slots = "";
    fx.get('a').master = Some(id('d'));
    let plan = plan(&fx.observed());
    assert_eq!(resumed(&plan), ["p-s0-m0-a"], "{plan:?}");
    fx.aof_off.clear();
    let plan = crate::controller::plan::plan(&fx.observed());
    let (shard, to, kind) = failover_of(&plan);
    assert_eq!((shard, to, kind), (0, id('a'), FailoverKind::Graceful));
    assert_eq!(plan.reason, "RebalancingLeaders");
}

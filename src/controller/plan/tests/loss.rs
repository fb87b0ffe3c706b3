//! Table tests of the losses Redis cannot avoid by itself (reference S6, S8), on the fixture
//! (`fixture.rs`): a 3×1 cluster with leaders a, b, c and followers d (of a), e (of b), f (of
//! c). Here shard 0 (leader a on n-a1, follower d on n-b2) loses both members at once while
//! their volumes survive on their nodes: the shard must wait for them, never be re-placed
//! empty, and come back with its identities when the nodes do.

use super::fixture::*;
use crate::controller::act::Executed;
use crate::controller::plan::*;
use crate::controller::status::{conditions, types};

/// What the planner may not do to shard 0 while it awaits its volumes: create one of its
/// members on a new volume, remove one of its Pods, forget its identities, release or assign
/// its slots, fail it over.
fn assert_nothing_reassigned(when: &str, p: &Plan) {
    let lost = [id('a'), id('d')];
    let ok = match &p.action {
        Action::CreateMembers(news) => news.iter().all(|n| n.shard != 0 || n.reuse_claim.is_some()),
        Action::DeletePods(pods) => pods.iter().all(|(pod, _)| !pod.starts_with("p-s0-")),
        Action::Forget(ids) => ids.iter().all(|(i, _)| !lost.contains(&i.to_string())),
        Action::ReleaseSlots(_)
        | Action::AddSlots(_)
        | Action::Failover { .. }
        | Action::StalledElections(_) => false,
        _ => true,
    };
    assert!(
        ok,
        "{when}: shard 0 touched while its volumes are awaited: {p:?}"
    );
}

/// The Degraded condition says the shard waits for its volumes, naming them and the slots.
fn assert_data_unavailable(when: &str, p: &Plan) {
    assert!(!p.ready, "{when}: {p:?}");
    let c = conditions(p, &Executed::Nothing);
    let d = c.iter().find(|d| d.type_ == types::DEGRADED).unwrap();
    assert!(d.status, "{when}: {d:?}");
    assert_eq!(d.reason, "DataUnavailable", "{when}: {d:?}");
    for part in ["shard 0 ", "aaaaaaaa", "0-5461", "data-s0-m0", "data-s0-m1"] {
        assert!(
            d.message.contains(part),
            "{when}: {part:?} in {:?}",
            d.message
        );
    }
    assert!(
        !p.problems.iter().any(|x| x.reason == "DataLoss"),
        "{when}: a volume may bring the data back: {p:?}"
    );
    assert!(
        !p.problems
            .iter()
            .any(|x| x.reason == "StaleIdentity" && x.message.contains("dddddddd")),
        "{when}: the follower's identity is awaited, not stale: {p:?}"
    );
}

/// Shard 0's leader and follower crash with their nodes (PVCs kept on n-a1 and n-b2).
fn both_crashed() -> Fx {
    let mut fx = healthy().with_storage();
    fx.lose('a', Some(PodState::Running));
    fx.lose('d', Some(PodState::Running));
    fx
}

#[test]
fn a_shard_lost_with_its_volumes_waits_for_them_and_nothing_is_reassigned() {
    type Phase = (&'static str, fn(&mut Fx));
    let phases: [Phase; 3] = [
        // The processes are gone, Kubernetes has not noticed yet.
        ("both nodes just crashed", |_| {}),
        // The nodes' leases expired: the scheduler would re-place both members elsewhere.
        ("both nodes NotReady", |fx| {
            fx.not_ready.extend(["n-a1", "n-b2"]);
        }),
        // The taint manager evicted the Pods: they stay Terminating on the dead nodes, their
        // PVCs are the only members of the shard left.
        ("Pods evicted, Terminating on the dead nodes", |fx| {
            fx.get('a').pod = Some(PodState::Deleting(40));
            fx.get('d').pod = Some(PodState::Deleting(40));
        }),
    ];
    let mut fx = both_crashed();
    for (when, change) in phases {
        change(&mut fx);
        let p = plan(&fx.observed());
        assert_eq!(p.action, Action::Wait, "{when}: {p:?}");
        assert_nothing_reassigned(when, &p);
        assert_data_unavailable(when, &p);
    }

    // The nodes return and the evicted Pods are gone: both members come back on their
    // volumes' nodes with their identities (the leader reclaims its slots by itself).
    fx.not_ready.clear();
    fx.get('a').pod = None;
    fx.get('d').pod = None;
    let p = plan(&fx.observed());
    match &p.action {
        Action::CreateMembers(news) => {
            let mut got: Vec<(usize, &str, Option<&str>)> = news
                .iter()
                .map(|n| (n.shard, n.node.as_str(), n.reuse_claim.as_deref()))
                .collect();
            got.sort_unstable();
            assert_eq!(
                got,
                vec![
                    (0, "n-a1", Some("data-s0-m0")),
                    (0, "n-b2", Some("data-s0-m1"))
                ]
            );
        }
        other => panic!("expected both members recreated on their volumes, got {other:?}"),
    }
    assert_data_unavailable("nodes back, Pods being recreated", &p);

    // Back and answering with their data: healthy, nothing left to do.
    let fx = healthy().with_storage();
    let p = plan(&fx.observed());
    assert!(p.ready && p.action == Action::Wait, "{p:?}");
}

#[test]
fn other_shards_are_still_healed_while_one_awaits_its_volumes() {
    // Shard 0 awaits its volumes on dead nodes; shard 2's follower f is lost for good (no
    // volume) meanwhile.
    let mut fx = both_crashed();
    fx.not_ready.extend(["n-a1", "n-b2"]);
    fx.get('a').pod = Some(PodState::Deleting(40));
    fx.get('d').pod = Some(PodState::Deleting(40));
    fx.lose('f', None);
    fx.claims.retain(|c| c.name != "data-s2-m1");
    let p = plan(&fx.observed());
    match &p.action {
        Action::Forget(ids) => {
            let ids: Vec<String> = ids.iter().map(|(i, _)| i.to_string()).collect();
            assert_eq!(
                ids,
                vec![id('f')],
                "only shard 2's lost follower is forgotten"
            );
        }
        other => panic!("expected the Forget of f, got {other:?}"),
    }
    // Once f is forgotten, its replacement is created; shard 0 gets none.
    fx.get('f').offset = u64::MAX;
    let p = plan(&fx.observed());
    assert_nothing_reassigned("f forgotten", &p);
    match &p.action {
        Action::CreateMembers(news) => {
            assert!(news.iter().all(|n| n.shard == 2), "{news:?}");
            assert_eq!(news.len(), 1, "{news:?}");
        }
        other => panic!("expected shard 2's follower re-placed, got {other:?}"),
    }
    assert_data_unavailable("f being replaced", &p);
}

#[test]
fn a_follower_volume_alone_keeps_the_shard_awaited_then_takes_over() {
    // The leader's PVC was deleted (its volume is gone), the follower's survives on its node.
    let mut fx = both_crashed();
    fx.not_ready.extend(["n-a1", "n-b2"]);
    fx.get('a').pod = Some(PodState::Deleting(40));
    fx.get('d').pod = Some(PodState::Deleting(40));
    fx.claims
        .iter_mut()
        .find(|c| c.name == "data-s0-m0")
        .unwrap()
        .deleting = true;
    let p = plan(&fx.observed());
    assert_nothing_reassigned("leader volume deleted", &p);
    let c = conditions(&p, &Executed::Nothing);
    let d = c.iter().find(|d| d.type_ == types::DEGRADED).unwrap();
    assert_eq!(d.reason, "DataUnavailable", "{d:?}");
    assert!(d.message.contains("data-s0-m1") && !d.message.contains("data-s0-m0"));

    // The follower's node returns: it is recreated on its volume, then (answering with the
    // data it had) promoted in place of the leader whose volume is gone.
    fx.not_ready.retain(|n| *n != "n-b2");
    fx.get('d').pod = None;
    let p = plan(&fx.observed());
    match &p.action {
        Action::CreateMembers(news) => assert_eq!(
            news.iter()
                .map(|n| (n.node.as_str(), n.reuse_claim.as_deref()))
                .collect::<Vec<_>>(),
            vec![("n-b2", Some("data-s0-m1"))]
        ),
        other => panic!("expected the follower recreated on its volume, got {other:?}"),
    }
    let dm = fx.get('d');
    dm.pod = Some(PodState::Running);
    dm.answers = true;
    fx.link_down.retain(|(_, t)| *t != id('d'));
    let p = plan(&fx.observed());
    assert_eq!(failover_of(&p), (0, id('d'), FailoverKind::Force), "{p:?}");
}

#[test]
fn once_every_volume_of_the_shard_is_deleted_it_is_data_loss() {
    let mut fx = both_crashed();
    fx.not_ready.extend(["n-a1", "n-b2"]);
    fx.get('a').pod = Some(PodState::Deleting(40));
    fx.get('d').pod = Some(PodState::Deleting(40));
    for c in fx.claims.iter_mut().filter(|c| c.shard == 0) {
        c.deleting = true;
    }
    let p = plan(&fx.observed());
    let c = conditions(&p, &Executed::Nothing);
    let d = c.iter().find(|d| d.type_ == types::DEGRADED).unwrap();
    assert_eq!(d.reason, "DataLoss", "{d:?}");
    assert!(
        d.message.contains("accept-data-loss=aaaaaaaa"),
        "{}",
        d.message
    );
    assert!(!p.problems.iter().any(|x| x.reason == "DataUnavailable"));
    // Only the lost follower, which no volume can bring back now, is forgotten; a's slots
    // are neither released nor reassigned.
    assert!(
        matches!(&p.action, Action::Forget(ids) if ids.len() == 1 && ids[0].0.as_str() == id('d')),
        "{p:?}"
    );
}

#[test]
fn a_follower_that_never_synced_is_not_taken_over_even_when_accepted() {
    // S19 on the break-glass path: the majority of leaders is lost and the user accepted a
    // takeover, but shard 0's only follower never completed a sync: promoting it would serve
    // the slots empty, so only shard 1's follower takes over.
    let mut fx = healthy();
    fx.lose('a', Some(PodState::Down));
    fx.lose('b', Some(PodState::Down));
    fx.get('d').offset = 0;
    fx.break_glass.takeover = vec!["aaaaaaaa".into(), "bbbbbbbb".into()];
    let p = plan(&fx.observed());
    assert_eq!(
        failover_of(&p),
        (1, id('e'), FailoverKind::Takeover),
        "{p:?}"
    );
    // Shard 1 led again (two voters answer): shard 0 still has nobody to promote.
    let e = fx.get('e');
    e.master = None;
    e.slots = "5462-10922";
    fx.get('b').slots = "";
    let p = plan(&fx.observed());
    // What recovery does is forget b, whose shard e now leads; shard 0 gets nothing.
    assert!(
        matches!(&p.action, Action::Forget(ids) if ids.len() == 1 && ids[0].0.as_str() == id('b')),
        "{p:?}"
    );
    assert!(
        p.problems
            .iter()
            .any(|x| x.reason == "LeaderLost" && x.message.contains("aaaaaaaa")),
        "{p:?}"
    );
}

#[test]
fn a_new_leader_dying_right_after_its_promotion_is_left_to_the_vote_lock() {
    // S20: shard 0 was just forced over from a to d; a came back as d's follower and d died
    // right away. Redis's masters will not vote for this shard again for 2 × node timeout.
    let mut fx = healthy();
    let a = fx.get('a');
    a.master = Some(id('d'));
    a.slots = "";
    let d = fx.get('d');
    d.master = None;
    d.slots = "0-5461";
    fx.lose('d', Some(PodState::Down));
    // The cluster flagged d FAIL and a lost it 3 s ago: Redis's own election is under way
    // (and waits out the vote lock itself); the operator does not race it.
    fx.failed.push(id('d'));
    fx.link_down_since = 3;
    let p = plan(&fx.observed());
    assert_eq!(p.action, Action::Wait, "{p:?}");
    // Not flagged (the process died before the cluster could agree): the plan, which
    // remembers nothing, asks for the FORCE at once; the actuator's per-shard record
    // (`act::ForceLimiter`) holds it back until 2 × node timeout after the first FORCE.
    fx.failed.clear();
    let p = plan(&fx.observed());
    assert_eq!(failover_of(&p), (0, id('a'), FailoverKind::Force), "{p:?}");
}

#[test]
fn a_leader_lost_with_its_data_is_data_loss_and_nothing_is_reassigned_until_accepted() {
    // Shard 0 lost leader a and follower d at once, without storage; d is already forgotten.
    let mut fx = healthy();
    fx.lose('a', None);
    fx.members.retain(|m| m.id != id('d'));
    let p = plan(&fx.observed());
    let loss = p
        .problems
        .iter()
        .find(|x| x.reason == "DataLoss")
        .unwrap_or_else(|| panic!("{p:?}"));
    assert!(loss.message.contains("0-5461"), "{}", loss.message);
    assert!(loss.message.starts_with("shard 0 "), "{}", loss.message);
    assert!(
        loss.message.contains("accept-data-loss=aaaaaaaa"),
        "{}",
        loss.message
    );
    assert_only_empty_members_for_shard_0(&p);
    let c = conditions(&p, &Executed::Nothing);
    assert_eq!(cond(&c, types::DEGRADED).reason, "DataLoss");
    // The user names the lost node: its slots are released (then served empty).
    fx.break_glass.data_loss = vec!["aaaaaaaa".into()];
    let p = plan(&fx.observed());
    match &p.action {
        Action::ReleaseSlots(ids) => assert_eq!(ids[0].0.as_str(), id('a')),
        other => panic!("expected ReleaseSlots, got {other:?}"),
    }
    // An annotation naming another node accepts nothing.
    fx.break_glass.data_loss = vec!["bbbbbbbb".into()];
    assert_only_empty_members_for_shard_0(&plan(&fx.observed()));
}

/// Shard 0 lost everything: the members concern gives it new, empty members (no volume to
/// reuse); no slot is released or assigned to them.
fn assert_only_empty_members_for_shard_0(p: &Plan) {
    assert!(
        matches!(&p.action, Action::CreateMembers(news)
            if !news.is_empty() && news.iter().all(|n| n.shard == 0 && n.reuse_claim.is_none())),
        "{p:?}"
    );
}

#[test]
fn a_leader_whose_volume_survives_is_awaited_not_data_loss() {
    let mut fx = healthy().with_storage();
    fx.lose('a', None);
    fx.lose('d', None);
    fx.not_ready.push("n-a1");
    let p = plan(&fx.observed());
    assert!(!p.problems.iter().any(|x| x.reason == "DataLoss"), "{p:?}");
}

#[test]
fn majority_of_leaders_lost_is_quorum_lost_and_takeover_needs_the_user() {
    let mut fx = healthy();
    fx.lose('a', Some(PodState::Down));
    fx.lose('b', Some(PodState::Down));
    let p = plan(&fx.observed());
    assert_eq!(p.action, Action::Wait, "{p:?}");
    let q = p
        .problems
        .iter()
        .find(|x| x.reason == "QuorumLost")
        .unwrap_or_else(|| panic!("{p:?}"));
    assert!(
        q.message.contains("accept-takeover=aaaaaaaa,bbbbbbbb"),
        "{}",
        q.message
    );
    fx.break_glass.takeover = vec!["aaaaaaaa".into(), "bbbbbbbb".into()];
    let p = plan(&fx.observed());
    match &p.action {
        Action::Failover { kind, to, .. } => {
            assert_eq!(*kind, FailoverKind::Takeover);
            assert_eq!(to.as_str(), id('d'));
        }
        other => panic!("expected TAKEOVER, got {other:?}"),
    }
}

#[test]
fn quorum_lost_is_the_degraded_reason_even_while_the_bootstrap_is_blocked() {
    // Leaders a and b are gone; their replacements (7, 8) answer as empty masters, so the
    // bootstrap is Blocked on slots owned by absent nodes: the loss still leads.
    let mut fx = healthy();
    fx.lose('a', None);
    fx.lose('b', None);
    fx.add('7', "n-a3", 0, 2, None);
    fx.add('8', "n-b3", 1, 2, None);
    let p = plan(&fx.observed());
    assert!(p.problems.iter().any(|x| x.reason == "Blocked"), "{p:?}");
    let c = conditions(&p, &Executed::Nothing);
    assert_eq!(cond(&c, types::DEGRADED).reason, "QuorumLost", "{p:?}");
}

#[test]
fn a_break_glass_annotation_naming_no_node_id_is_reported_and_stops_nothing() {
    use crate::controller::observe::break_glass::BreakGlass;
    use std::collections::BTreeMap;
    let mut fx = healthy();
    let annotations = BTreeMap::from([(
        crate::controller::observe::break_glass::ACCEPT_DATA_LOSS.to_string(),
        "yes please, aaaaaaaa".to_string(),
    )]);
    fx.break_glass = BreakGlass::from_annotations(&annotations);
    let p = plan(&fx.observed());
    assert!(!p.invalid_spec(), "{p:?}");
    let c = conditions(&p, &Executed::Nothing);
    let d = cond(&c, types::DEGRADED);
    assert_eq!((d.status, d.reason.as_str()), (true, "BreakGlassInvalid"));
    assert!(
        d.message.contains("accept-data-loss: \"yes\""),
        "{}",
        d.message
    );
    assert!(d.message.contains("\"please\""), "{}", d.message);
    assert!(!d.message.contains("aaaaaaaa"), "{}", d.message);
    // A healthy cluster stays Ready: the typo is about the annotation, not the cluster (seen in
    // the soak: a leftover "ids;" kept a recovered cluster Ready=False "ClusterReady").
    let r = cond(&c, types::READY);
    assert_eq!(
        (r.status, r.reason.as_str()),
        (true, "ClusterReady"),
        "{r:?}"
    );
    // Node ids and unique prefixes of them are what it takes.
    let annotations = BTreeMap::from([(
        crate::controller::observe::break_glass::ACCEPT_TAKEOVER.to_string(),
        format!("aaaaaaaa, {}", "0123456789abcdef0123456789abcdef01234567"),
    )]);
    fx.break_glass = BreakGlass::from_annotations(&annotations);
    assert!(plan(&fx.observed()).problems.is_empty());
}

#[test]
fn a_storage_class_that_does_not_exist_is_an_invalid_spec_until_members_exist() {
    let fx = healthy().with_storage();
    let mut obs = fx.observed();
    obs.missing_storage_class = Some("no-such-class".into());
    // Running members keep their bound claims: nothing to refuse.
    assert!(!plan(&obs).invalid_spec());
    obs.members.clear();
    obs.claims.clear();
    let p = plan(&obs);
    assert!(p.invalid_spec(), "{p:?}");
    assert!(
        p.message
            .contains("storageClassName: StorageClass no-such-class not found"),
        "{}",
        p.message
    );
}

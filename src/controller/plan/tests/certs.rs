//! Certificate rotation and expiry: table tests on the plan fixture (`fixture.rs`).

use std::sync::Arc;

use super::fixture::*;
use crate::controller::act::Executed;
use crate::controller::labels::TLS_RELOADED_ANNOTATION;
use crate::controller::observe::Observed;
use crate::controller::observe::certs::{CertInfo, Certs};
use crate::controller::plan::certs::{RELOADING, expiring, reloaded_annotation};
use crate::controller::plan::facts::Facts;
use crate::controller::plan::*;
use crate::controller::status::{self, conditions, types};

const NEW: &str = "0000000000000000000000000000000000000000000000000000000000000002";
const OLD: &str = "0000000000000000000000000000000000000000000000000000000000000001";

/// The fixture's clock (`Observed::now`).
fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_000_000).unwrap()
}

fn cert(fingerprint: &str, days_left: i64) -> CertInfo {
    CertInfo {
        fingerprint: fingerprint.into(),
        serial: fingerprint[60..].into(),
        not_after: now() + jiff::SignedDuration::from_hours(days_left * 24),
    }
}

/// The Pod name of fixture member `c`.
fn pod_of(fx: &Fx, c: char) -> String {
    let m = fx.members.iter().find(|m| m.id == id(c)).unwrap();
    format!("p-s{}-m{}-{c}", m.shard, m.member)
}

/// A healthy cluster whose Secret holds `NEW`; members in `old` present `OLD`, members in
/// `silent` completed no handshake, the others present `NEW`.
fn rotating(old: &[char], silent: &[char]) -> Fx {
    let mut fx = healthy();
    let presented = fx
        .members
        .iter()
        .map(|m| m.id.chars().next().unwrap())
        .filter(|c| !silent.contains(c))
        .map(|c| {
            let fp = if old.contains(&c) { OLD } else { NEW };
            (pod_of(&fx, c), cert(fp, 90))
        })
        .collect();
    fx.certs = Certs {
        secret: Some(cert(NEW, 90)),
        presented,
    };
    fx
}

/// Annotates member `c`'s Pod as reloaded for `fingerprint` `secs_ago` seconds ago.
fn reloaded(obs: &mut Observed, fx: &Fx, c: char, fingerprint: &str, secs_ago: i64) {
    let name = pod_of(fx, c);
    let m = obs.members.iter_mut().find(|m| m.name() == name).unwrap();
    let at = now() - jiff::SignedDuration::from_secs(secs_ago);
    Arc::make_mut(&mut m.pod)
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(
            TLS_RELOADED_ANNOTATION.into(),
            reloaded_annotation(fingerprint, at),
        );
}

fn reloads(plan: &Plan) -> Vec<String> {
    match &plan.action {
        Action::ReloadTls {
            members,
            fingerprint,
        } => {
            assert_eq!(fingerprint, NEW);
            members.iter().map(|(pod, _)| pod.clone()).collect()
        }
        other => panic!("expected a reload, got {other:?} ({plan:?})"),
    }
}

#[test]
fn members_presenting_another_certificate_are_reloaded_without_a_restart() {
    // (members presenting the old certificate, members without a handshake, reloaded)
    let cases: [(&[char], &[char], &[char]); 5] = [
        (&['a', 'e'], &[], &['a', 'e']),
        (
            &['a', 'b', 'c', 'd', 'e', 'f'],
            &[],
            &['a', 'b', 'c', 'd', 'e', 'f'],
        ),
        // A member that completed no handshake is not judged on a certificate.
        (&['a'], &['b'], &['a']),
        (&[], &['b'], &[]),
        (&[], &[], &[]),
    ];
    for (old, silent, want) in cases {
        let fx = rotating(old, silent);
        let plan = crate::controller::plan::plan(&fx.observed());
        let mut want: Vec<String> = want.iter().map(|c| pod_of(&fx, *c)).collect();
        want.sort();
        if want.is_empty() {
            assert_eq!(plan.action, Action::Wait, "{old:?} {silent:?}: {plan:?}");
            assert_eq!(plan.concern, None, "{plan:?}");
            continue;
        }
        let mut got = reloads(&plan);
        got.sort();
        assert_eq!(got, want, "{old:?}");
        assert_eq!(plan.reason, RELOADING);
        assert!(plan.message.contains("no restart"), "{}", plan.message);
        // Reloading keeps a Ready cluster Ready: nothing is wrong, nothing restarts.
        assert!(plan.ready, "{plan:?}");
        let c = conditions(&plan, &Executed::Applied("reloaded".into()));
        assert!(cond(&c, types::READY).status);
        assert!(!cond(&c, types::DEGRADED).status);
        let progressing = cond(&c, types::PROGRESSING);
        assert!(progressing.status && progressing.reason == RELOADING);
    }
}

#[test]
fn a_member_still_presenting_the_old_certificate_right_after_a_reload_is_awaited() {
    // (seconds since the reload, fingerprint it was for, reloaded again)
    let cases = [
        (3, NEW, false),
        (9, NEW, false),
        (10, NEW, true),
        (60, NEW, true),
        (3, OLD, true),
    ];
    for (secs_ago, for_fingerprint, again) in cases {
        let fx = rotating(&['a'], &[]);
        let mut obs = fx.observed();
        reloaded(&mut obs, &fx, 'a', for_fingerprint, secs_ago);
        let plan = crate::controller::plan::plan(&obs);
        assert_eq!(plan.reason, RELOADING, "{plan:?}");
        if again {
            assert_eq!(reloads(&plan), [pod_of(&fx, 'a')], "{secs_ago}");
        } else {
            assert_eq!(plan.action, Action::Wait, "{secs_ago}: {plan:?}");
            assert!(plan.message.contains("not updated yet"), "{}", plan.message);
            assert!(plan.message.contains("no restart"), "{}", plan.message);
            assert!(plan.ready);
            let c = conditions(&plan, &Executed::Nothing);
            assert!(cond(&c, types::READY).status);
            assert!(!cond(&c, types::DEGRADED).status);
            assert_eq!(cond(&c, types::PROGRESSING).reason, RELOADING);
        }
    }
    // One member awaited, another due: the due one is reloaded, the awaited one left alone.
    let fx = rotating(&['a', 'b'], &[]);
    let mut obs = fx.observed();
    reloaded(&mut obs, &fx, 'a', NEW, 2);
    assert_eq!(reloads(&plan(&obs)), [pod_of(&fx, 'b')]);
}

#[test]
fn members_not_answering_or_without_tls_are_left_to_other_concerns() {
    // A member down is recovery's, not a reload's.
    let mut fx = rotating(&['d'], &[]);
    fx.get('d').answers = false;
    let plan = crate::controller::plan::plan(&fx.observed());
    assert!(!matches!(plan.action, Action::ReloadTls { .. }), "{plan:?}");
    // No Secret certificate (no spec.tls): nothing about certificates.
    let mut fx = rotating(&['a'], &[]);
    fx.certs.secret = None;
    let plan = crate::controller::plan::plan(&fx.observed());
    assert_eq!(plan.action, Action::Wait);
    assert!(plan.ready);
}

#[test]
fn a_certificate_close_to_its_end_is_announced() {
    // (days left, announced, words)
    let cases = [
        (90, false, ""),
        (8, false, ""),
        (7, false, ""),
        (6, true, "expires in 6d 0h"),
        (0, true, "expires in 0d 0h"),
        (-1, true, "expired"),
    ];
    for (days, announced, words) in cases {
        let mut fx = rotating(&[], &[]);
        fx.certs.secret = Some(cert(NEW, days));
        let message = expiring(&fx.observed());
        assert_eq!(message.is_some(), announced, "{days}: {message:?}");
        if let Some(m) = message {
            assert!(m.contains(words) && m.contains("serial 0002"), "{m}");
        }
    }
}

#[test]
fn status_shows_the_certificate_and_who_serves_it() {
    let fx = rotating(&['a', 'e'], &['f']);
    let obs = fx.observed();
    let facts = Facts::of(&obs);
    let plan = decide(&facts);
    let spec = serde_json::from_value(serde_json::json!({"leaders": 3})).unwrap();
    let cluster = crate::crd::RedisCluster::new("demo", spec);
    let (s, _) = status::build(&cluster, &facts, &plan, &Executed::Nothing);
    let tls = s.tls.unwrap();
    assert_eq!(tls.fingerprint, NEW);
    assert_eq!(tls.serial, "0002");
    assert_eq!(tls.not_after, cert(NEW, 90).not_after.to_string());
    assert!(!tls.expiring);
    assert_eq!(tls.serving, "3/5");
    assert_eq!(tls.outdated, [pod_of(&fx, 'a'), pod_of(&fx, 'e')]);
    // Without TLS the status has no tls section.
    let obs = healthy().observed();
    let facts = Facts::of(&obs);
    let (s, _) = status::build(&cluster, &facts, &decide(&facts), &Executed::Nothing);
    assert_eq!(s.tls, None);
}

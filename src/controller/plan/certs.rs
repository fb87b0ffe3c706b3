//! Certificate rotation: a TLS Secret renewed in place (cert-manager renews into the same
//! Secret) reaches the members' mounted files within the kubelet's sync period, but Redis
//! reads its TLS files only at start and on `CONFIG SET tls-cert-file …`. Members presenting
//! another certificate than the Secret's are asked to reload their files, no restart; the next
//! pass checks what they present. A member that still presents the old certificate right after
//! a reload is waiting for its files: it is asked again after [`RELOAD_RETRY`], never
//! restarted. And a certificate about to expire is announced ([`expiring`]).

use std::net::SocketAddr;

use super::facts::Facts;
use super::step::{Action, Step};
use crate::controller::labels::TLS_RELOADED_ANNOTATION;
use crate::controller::observe::Observed;
use crate::controller::observe::certs::CertInfo;
use crate::controller::observe::pods::Member;
use crate::controller::observe::redis::addr_of;

/// How long a member that was asked to reload is given before it is asked again: the mounted
/// Secret files are swapped atomically by the kubelet within its sync period (about a minute),
/// and a reload before that re-reads the old files.
pub const RELOAD_RETRY: jiff::SignedDuration = jiff::SignedDuration::from_secs(10);

/// A certificate with fewer than this left is announced (`CertificateExpiring`).
pub const EXPIRY_WARNING: jiff::SignedDuration = jiff::SignedDuration::from_hours(7 * 24);

/// The reason of the reload step and of the wait for the mounted files.
pub const RELOADING: &str = "ReloadingCertificates";

/// The reload step, if a member presents another certificate than the Secret's.
pub fn step(f: &Facts<'_>) -> Option<Step> {
    let obs = f.obs;
    let secret = obs.certs.secret.as_ref()?;
    let stale: Vec<&Member> = outdated(obs, secret).collect();
    if stale.is_empty() {
        return None;
    }
    let (waiting, due): (Vec<&Member>, Vec<&Member>) = stale
        .into_iter()
        .partition(|m| reloaded_recently(m, secret, obs.now));
    let names = |ms: &[&Member]| ms.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ");
    if due.is_empty() {
        return Some(Step::new(
            Action::Wait,
            RELOADING,
            format!(
                "{} member(s) still present the old certificate after a reload: their mounted \
                 Secret files are not updated yet (the kubelet syncs Secret volumes within about \
                 a minute); reloading again in {}s, no restart: {}",
                waiting.len(),
                RELOAD_RETRY.as_secs(),
                names(&waiting)
            ),
        ));
    }
    let members: Vec<(String, SocketAddr)> = due
        .iter()
        .filter_map(|m| Some((m.name().to_string(), addr_of(m)?)))
        .collect();
    Some(Step::new(
        Action::ReloadTls {
            members,
            fingerprint: secret.fingerprint.clone(),
        },
        RELOADING,
        format!(
            "{} member(s) present another certificate than Secret's {} (serial {}): reloading \
             their TLS files (CONFIG SET tls-cert-file, no restart): {}",
            due.len(),
            secret.short(),
            secret.serial,
            names(&due)
        ),
    ))
}

/// Live members that answer Redis and presented a certificate other than `secret`.
pub fn outdated<'a>(obs: &'a Observed, secret: &'a CertInfo) -> impl Iterator<Item = &'a Member> {
    obs.live().filter(move |m| {
        obs.view_of(m).is_some()
            && obs
                .certs
                .presented
                .get(m.name())
                .is_some_and(|c| c.fingerprint != secret.fingerprint)
    })
}

/// Whether `m` was asked to reload for `secret` less than [`RELOAD_RETRY`] ago.
fn reloaded_recently(m: &Member, secret: &CertInfo, now: jiff::Timestamp) -> bool {
    m.annotation(TLS_RELOADED_ANNOTATION)
        .and_then(parse_reloaded)
        .is_some_and(|(fingerprint, at)| {
            fingerprint == secret.fingerprint && now.duration_since(at) < RELOAD_RETRY
        })
}

/// The annotation's value for a reload of `fingerprint` at `at`.
pub fn reloaded_annotation(fingerprint: &str, at: jiff::Timestamp) -> String {
    format!("{fingerprint} {at}")
}

/// (fingerprint, when) from the annotation; `None` when it is not ours.
fn parse_reloaded(value: &str) -> Option<(&str, jiff::Timestamp)> {
    let (fingerprint, at) = value.split_once(' ')?;
    Some((fingerprint, at.parse().ok()?))
}

/// The warning for a Secret's certificate with less than [`EXPIRY_WARNING`] left (or already
/// expired), if it has.
pub fn expiring(obs: &Observed) -> Option<String> {
    let secret = obs.certs.secret.as_ref()?;
    let left = secret.not_after.duration_since(obs.now);
    if left >= EXPIRY_WARNING {
        return None;
    }
    let when = if left.is_negative() {
        "expired".to_string()
    } else {
        let hours = left.as_hours();
        format!("expires in {}d {}h", hours / 24, hours % 24)
    };
    Some(format!(
        "the TLS Secret's certificate (serial {}, fingerprint {}) {when}, at {}: renew it in \
         the same Secret (members reload it without a restart)",
        secret.serial,
        secret.short(),
        secret.not_after
    ))
}

//! The password as a rotation needs it: what the user's Secret asks for (`wanted`), the
//! operator's record of what members run with (the auth state Secret: the active password and,
//! for a grace period after a rotation, the previous one), and, only while a rotation or its
//! grace period is under way, what each member accepts (`ACL GETUSER default`) and
//! authenticates to its leader with (`masterauth`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::auth::Auth;
use super::pods::Member;
use super::redis::addr_of;
use crate::controller::build::secret::{PASSWORD_KEY, PREVIOUS_KEY};
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::controller::labels::{Names, PREVIOUS_UNTIL_ANNOTATION, ROTATED_AT_ANNOTATION};
use crate::crd::RedisCluster;
use crate::redis::AdminOptions;
use crate::redis::ops::ClusterAdmin;
use crate::redis::ops::acl::{MemberAuth, password_hash};

/// The grace period when the spec sets none.
pub const DEFAULT_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_mins(10);

/// A password. `Debug` never shows it: plans and actions are logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(…)")
    }
}

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    /// The password itself, for where it must travel (AUTH, `masterauth`, the state Secret).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its SHA-256 as `ACL GETUSER` lists it.
    pub fn hash(&self) -> String {
        password_hash(&self.0)
    }
}

/// The operator's record: what members run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthState {
    /// What members start with and the operator authenticates with.
    pub active: Password,
    /// The password before the last rotation, accepted until `previous_until`.
    pub previous: Option<Password>,
    /// When the previous password stops being accepted.
    pub previous_until: Option<jiff::Timestamp>,
    /// When the last rotation switched.
    pub rotated_at: Option<jiff::Timestamp>,
}

/// Everything a password rotation decides from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// The user's Secret's password, when it is usable.
    pub wanted: Option<Password>,
    /// The operator's record, `None` until it is made.
    pub state: Option<AuthState>,
    /// How long the previous password is kept after a rotation.
    pub grace: jiff::SignedDuration,
    /// What each member (by Pod name) accepts; observed only while [`Credentials::rotating`].
    pub members: BTreeMap<String, MemberAuth>,
}

impl Credentials {
    /// A rotation or its grace period is under way: the Secret asks for another password
    /// than the active one, or a previous one is still on record.
    pub fn rotating(&self) -> bool {
        match (&self.state, &self.wanted) {
            (Some(state), Some(wanted)) => state.active != *wanted || state.previous.is_some(),
            (Some(state), None) => state.previous.is_some(),
            (None, _) => false,
        }
    }

    /// The observed credentials with the password the operator authenticates with: the
    /// active one on record, or the Secret's while there is no record yet.
    pub fn connect_with(&self, auth: Auth) -> Auth {
        match (auth, &self.state) {
            (
                Auth::Ready {
                    secret,
                    password: _,
                    tls,
                },
                Some(state),
            ) => Auth::Ready {
                secret,
                password: state.active.expose().to_string(),
                tls,
            },
            (auth, _) => auth,
        }
    }
}

/// `spec.auth.rotationGracePeriod` (admission checks its form), or [`DEFAULT_GRACE`].
pub fn grace(cluster: &RedisCluster) -> jiff::SignedDuration {
    cluster
        .spec
        .auth
        .as_ref()
        .and_then(|a| a.rotation_grace_period.as_deref())
        .and_then(parse_go_duration)
        .unwrap_or(DEFAULT_GRACE)
}

/// A Go duration (`10m`, `1h30m`, `90s`, `1.5h`), as the CRD's CEL `duration()` accepts it.
pub fn parse_go_duration(s: &str) -> Option<jiff::SignedDuration> {
    let mut total = 0.0_f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest.get(..digits)?.parse().ok()?;
        rest = rest.get(digits..)?;
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match rest.get(..unit)? {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * seconds;
        rest = rest.get(unit..)?;
    }
    jiff::SignedDuration::try_from_secs_f64(total).ok()
}

/// Reads the auth state Secret of `cluster`, if it exists.
///
/// # Errors
/// Kubernetes API failures.
pub async fn read_state(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
) -> Result<Option<AuthState>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    Ok(api
        .get_opt(&Names::auth_state_secret(cluster))
        .await?
        .and_then(|s| state_of(&s)))
}

/// The record a state Secret holds; `None` when it has no active password.
pub fn state_of(secret: &Secret) -> Option<AuthState> {
    let data = secret.data.as_ref();
    let text = |key: &str| {
        data.and_then(|d| d.get(key))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .filter(|p| !p.is_empty())
            .map(Password::new)
    };
    let annotations = secret.metadata.annotations.as_ref();
    let time = |key: &str| {
        annotations
            .and_then(|a| a.get(key))
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    };
    let previous = text(PREVIOUS_KEY);
    Some(AuthState {
        active: text(PASSWORD_KEY)?,
        previous_until: previous.as_ref().and(time(PREVIOUS_UNTIL_ANNOTATION)),
        previous,
        rotated_at: time(ROTATED_AT_ANNOTATION),
    })
}

/// What each live member accepts, side by side; members that do not answer are left out (the
/// plan acts only on members it has seen).
pub async fn observe_members(
    members: &[Member],
    options: &AdminOptions,
) -> BTreeMap<String, MemberAuth> {
    let targets: Vec<(String, SocketAddr)> = members
        .iter()
        .filter(|m| !m.finished() && !m.terminating())
        .filter_map(|m| Some((m.name().to_string(), addr_of(m)?)))
        .collect();
    let admin = ClusterAdmin::new(targets.iter().map(|(_, a)| *a), options.clone());
    let admin = &admin;
    let seen = futures::future::join_all(targets.into_iter().map(|(pod, addr)| async move {
        match admin.member_auth(addr).await {
            Ok(found) => Some((pod, found)),
            Err(e) => {
                tracing::debug!(%pod, error = %e, "reading the member's passwords");
                None
            }
        }
    }))
    .await;
    seen.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn go_durations_parse_as_the_crd_admits_them() {
        let cases = [
            ("10m", Some(600.0)),
            ("1h30m", Some(5400.0)),
            ("90s", Some(90.0)),
            ("1.5h", Some(5400.0)),
            ("1m500ms", Some(60.5)),
            ("", None),
            ("10", None),
            ("m", None),
            ("10x", None),
        ];
        for (text, want) in cases {
            let got = parse_go_duration(text).map(|d| d.as_secs_f64());
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn passwords_never_show_in_debug_output() {
        let creds = Credentials {
            wanted: Some(Password::new("hunter2")),
            state: Some(AuthState {
                active: Password::new("sekrit"),
                previous: Some(Password::new("old-one")),
                previous_until: None,
                rotated_at: None,
            }),
            ..Credentials::default()
        };
        let shown = format!("{creds:?}");
        for p in ["hunter2", "sekrit", "old-one"] {
            assert!(!shown.contains(p), "{shown}");
        }
    }

    #[test]
    fn a_rotation_is_under_way_while_the_secret_differs_or_a_previous_is_kept() {
        let state = |active: &str, previous: Option<&str>| AuthState {
            active: Password::new(active),
            previous: previous.map(Password::new),
            previous_until: None,
            rotated_at: None,
        };
        let creds = |wanted: Option<&str>, state: Option<AuthState>| Credentials {
            wanted: wanted.map(Password::new),
            state,
            ..Credentials::default()
        };
        assert!(!creds(Some("a"), None).rotating());
        assert!(!creds(Some("a"), Some(state("a", None))).rotating());
        assert!(creds(Some("b"), Some(state("a", None))).rotating());
        assert!(creds(Some("a"), Some(state("a", Some("z")))).rotating());
        assert!(creds(None, Some(state("a", Some("z")))).rotating());
        assert!(!creds(None, Some(state("a", None))).rotating());
    }

    #[test]
    fn the_state_secret_is_read_with_its_grace_period() {
        let mut secret = Secret::default();
        assert_eq!(state_of(&secret), None);
        secret.data = Some(BTreeMap::from([
            (PASSWORD_KEY.to_string(), ByteString(b"new".to_vec())),
            (PREVIOUS_KEY.to_string(), ByteString(b"old".to_vec())),
        ]));
        secret.metadata.annotations = Some(BTreeMap::from([(
            PREVIOUS_UNTIL_ANNOTATION.to_string(),
            "2026-12-05T10:00:00Z".to_string(),
        )]));
        let state = state_of(&secret).unwrap();
        assert_eq!(state.active, Password::new("new"));
        assert_eq!(state.previous, Some(Password::new("old")));
        assert_eq!(
            state.previous_until,
            Some("2026-12-05T10:00:00Z".parse().unwrap())
        );
        assert_eq!(state.rotated_at, None);
    }
}

//! The spec as input: refused when it cannot be carried out as written (`InvalidSpec`: nothing
//! is created, changed or deleted), and the generated password Secret created when the spec
//! names none. First in the plan: nothing else runs on input the operator must refuse.

use super::facts::Facts;
use super::step::{Action, Step};
use crate::controller::config;
use crate::controller::observe::auth::Auth;

/// The reason of a refused spec.
pub const INVALID_SPEC: &str = "InvalidSpec";

/// The reason of a `spec.tls` Secret that cannot be used (missing, a key missing, bad PEM):
/// refused like an invalid spec (nothing is created or changed), under its own reason so that
/// it can be told from a spec error and alerted on.
pub const TLS_SECRET_INVALID: &str = "TLSSecretInvalid";

/// The reason of a password the members do not accept.
pub const AUTH_MISMATCH: &str = "AuthMismatch";

/// Members refuse the Secret's password: nothing is done on what they report (a cluster the
/// operator cannot read is not a cluster that lost its members), and the condition says which
/// members and which Secret.
pub fn auth_mismatch(f: &Facts<'_>) -> Option<Step> {
    if f.refusing_password.is_empty() {
        return None;
    }
    let secret = f.obs.auth.secret().map_or_else(String::new, |s| {
        format!(" of Secret {} (key {})", s.name, s.key)
    });
    Some(Step::refuse(
        AUTH_MISMATCH,
        format!(
            "members refuse the password{secret}: {}; the Secret was changed, switched or regenerated after they started; put back the password they run with (nothing is done until they accept it)",
            f.refusing_password.join(", ")
        ),
    ))
}

/// Refuses an invalid spec.
pub fn validate(f: &Facts<'_>) -> Option<Step> {
    let invalid = config::validate_overrides(&f.obs.config)
        .err()
        .or_else(|| match &f.obs.auth {
            Auth::Invalid(msg) => Some(msg.clone()),
            _ => None,
        })
        .or_else(|| missing_storage_class(f));
    let step = match (invalid, &f.obs.auth) {
        (Some(invalid), _) => Step::refuse(INVALID_SPEC, invalid),
        (None, Auth::TlsInvalid(message)) => Step::refuse(TLS_SECRET_INVALID, message.clone()),
        (None, _) => return None,
    };
    // The message says what is wrong in Ready; Degraded is not written for it.
    Some(Step {
        problem: None,
        ..step
    })
}

/// A StorageClass that does not exist, while the cluster has no member: its claims would stay
/// Pending for ever. Members that run already keep running (their claims are bound); the class
/// matters again only for a new claim.
fn missing_storage_class(f: &Facts<'_>) -> Option<String> {
    let class = f.obs.missing_storage_class.as_ref()?;
    f.obs.members.is_empty().then(|| {
        format!("spec.storage.storageClassName: StorageClass {class} not found (claims of it would stay Pending)")
    })
}

/// Creates the generated password Secret when it does not exist, and only while the cluster
/// has no member: members run with the password they started with, and a new one would lock
/// the operator out of them.
pub fn auth_secret(f: &Facts<'_>) -> Option<Step> {
    let Auth::ToGenerate(secret) = &f.obs.auth else {
        return None;
    };
    let members_exist =
        !f.obs.members.is_empty() || f.obs.claims.iter().any(|c| c.node_id.is_some());
    if members_exist {
        return Some(Step::refuse(
            AUTH_MISMATCH,
            format!(
                "the generated password Secret {} was deleted while members exist; they still run with its password, so it is not generated again (that would lock the operator out of them): restore the Secret, or name one with that password in spec.auth",
                secret.name
            ),
        ));
    }
    Some(Step::new(
        Action::CreateAuthSecret,
        "CreatingAuthSecret",
        format!("generating the password Secret {}", secret.name),
    ))
}

/// Records the password members run with in the auth state Secret, once the Secret's password
/// is usable and no member refuses it: before the first member is created (members read their
/// password from the record), or for members made by an operator version without a record.
pub fn auth_state(f: &Facts<'_>) -> Option<Step> {
    let creds = &f.obs.credentials;
    if creds.state.is_some() || !f.refusing_password.is_empty() {
        return None;
    }
    let wanted = creds.wanted.as_ref()?;
    Some(Step::new(
        Action::CreateAuthState(wanted.clone()),
        "CreatingAuthState",
        "recording the password members run with (the auth state Secret), before any member uses it",
    ))
}

//! The spec as input: refused when it cannot be carried out as written (`InvalidSpec`: nothing
//! is created, changed or deleted), and the generated password Secret created when the spec
//! names none. First in the plan: nothing else runs on input the operator must refuse.

use super::facts::Facts;
use super::step::{Action, Step};
use crate::controller::config;
use crate::controller::observe::auth::Auth;

/// The reason of a refused spec.
pub const INVALID_SPEC: &str = "InvalidSpec";

/// Refuses an invalid spec.
pub fn validate(f: &Facts<'_>) -> Option<Step> {
    let invalid = config::validate_overrides(&f.obs.config)
        .err()
        .or_else(|| match &f.obs.auth {
            Auth::Invalid(msg) => Some(msg.clone()),
            _ => None,
        })?;
    let mut step = Step::refuse(INVALID_SPEC, invalid);
    // The message says what is wrong in Ready; Degraded is not written for it.
    step.problem = None;
    Some(step)
}

/// Creates the generated password Secret when it does not exist.
pub fn auth_secret(f: &Facts<'_>) -> Option<Step> {
    let Auth::ToGenerate(secret) = &f.obs.auth else {
        return None;
    };
    Some(Step::new(
        Action::CreateAuthSecret,
        "CreatingAuthSecret",
        format!("generating the password Secret {}", secret.name),
    ))
}

//! The steps of a live password rotation (`plan::passwords`): the auth state Secret (made and
//! patched), the members' accepted passwords (`ACL SETUSER default`, by hash) and their
//! `masterauth`. Every change is an Event; the plaintext never is.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;

use super::events::publish;
use super::executed::{Executed, Scope, failed, kube_failed};
use crate::controller::build;
use crate::controller::build::secret::{PASSWORD_KEY, PREVIOUS_KEY};
use crate::controller::labels::{MANAGER, Names, PREVIOUS_UNTIL_ANNOTATION, ROTATED_AT_ANNOTATION};
use crate::controller::observe::passwords::Password;
use crate::controller::plan::PasswordChange;

/// Creates the auth state Secret (already there is fine).
pub(super) async fn create_state(scope: &Scope<'_>, password: &Password) -> Executed {
    let api: Api<Secret> = Api::namespaced(scope.ctx.client.clone(), scope.ns);
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    let secret = build::secret::state(scope.cluster, password.expose());
    match api.create(&pp, &secret).await {
        Ok(_) => {
            let note = format!(
                "recorded the password members run with in Secret {}",
                Names::auth_state_secret(scope.cluster)
            );
            publish(
                scope.ctx,
                scope.cluster,
                EventType::Normal,
                "AuthStateCreated",
                &note,
            )
            .await;
            Executed::Applied(note)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Executed::Nothing,
        Err(e) => kube_failed("CreateFailed", "creating the auth state Secret", e),
    }
}

/// `ACL SETUSER default` on each member; an Event names the members changed.
pub(super) async fn set_passwords(
    scope: &Scope<'_>,
    changes: &[PasswordChange],
    why: &str,
) -> Executed {
    let mut done = Vec::new();
    let mut failure = None;
    for change in changes {
        if let Err(e) = scope
            .admin
            .set_passwords(change.addr, &change.add, &change.remove)
            .await
        {
            let message = format!("changing the passwords {} accepts: {e}", change.pod);
            failure = Some(failed("PasswordUpdateFailed", message, e));
            break;
        }
        done.push(change.pod.as_str());
    }
    finish(scope, "PasswordsUpdated", why, &done, failure).await
}

/// `CONFIG SET masterauth` on each member.
pub(super) async fn set_masterauth(
    scope: &Scope<'_>,
    members: &[(String, SocketAddr)],
    password: &Password,
    why: &str,
) -> Executed {
    let settings = BTreeMap::from([("masterauth".to_string(), password.expose().to_string())]);
    let mut done = Vec::new();
    let mut failure = None;
    for (pod, addr) in members {
        if let Err(e) = scope.admin.config_set(*addr, &settings).await {
            let message = format!("switching the replication password of {pod}: {e}");
            failure = Some(failed("PasswordUpdateFailed", message, e));
            break;
        }
        done.push(pod.as_str());
    }
    finish(scope, "MasterauthUpdated", why, &done, failure).await
}

/// What was done before a failure is published too; the failure is the step's result.
async fn finish(
    scope: &Scope<'_>,
    reason: &str,
    why: &str,
    done: &[&str],
    failure: Option<Executed>,
) -> Executed {
    let note = format!("{why} (done on {})", done.join(", "));
    if !done.is_empty() {
        publish(scope.ctx, scope.cluster, EventType::Normal, reason, &note).await;
    }
    failure.unwrap_or(Executed::Applied(note))
}

/// The rotation recorded: the new password becomes the active one, the old one `previous`
/// until `until`.
pub(super) async fn record_rotation(
    scope: &Scope<'_>,
    password: &Password,
    previous: &Password,
    until: jiff::Timestamp,
) -> Executed {
    let now = jiff::Timestamp::now();
    let patch = serde_json::json!({
        "metadata": {"annotations": {
            PREVIOUS_UNTIL_ANNOTATION: until.to_string(),
            ROTATED_AT_ANNOTATION: now.to_string(),
        }},
        "stringData": {
            PASSWORD_KEY: password.expose(),
            PREVIOUS_KEY: previous.expose(),
        },
    });
    let note = format!(
        "switched to the new password: the operator and new members use it; the previous one is accepted until {until}"
    );
    patch_state(scope, &patch, "PasswordRotated", note).await
}

/// The previous password forgotten (its grace period is over and no member accepts it).
pub(super) async fn forget_previous(scope: &Scope<'_>) -> Executed {
    let patch = serde_json::json!({
        "metadata": {"annotations": {PREVIOUS_UNTIL_ANNOTATION: null}},
        "data": {PREVIOUS_KEY: null},
    });
    let note =
        "the previous password's grace period is over: no member accepts it any more".to_string();
    patch_state(scope, &patch, "PreviousPasswordRemoved", note).await
}

async fn patch_state(
    scope: &Scope<'_>,
    patch: &serde_json::Value,
    reason: &str,
    note: String,
) -> Executed {
    let api: Api<Secret> = Api::namespaced(scope.ctx.client.clone(), scope.ns);
    let name = Names::auth_state_secret(scope.cluster);
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => {
            publish(scope.ctx, scope.cluster, EventType::Normal, reason, &note).await;
            Executed::Applied(note)
        }
        Err(e) => kube_failed("PatchFailed", &format!("updating Secret {name}"), e),
    }
}

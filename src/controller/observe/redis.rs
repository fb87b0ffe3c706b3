//! The cluster as Redis sees it, gathered from every reachable member and keyed by Pod name.

use std::net::SocketAddr;
use std::time::Duration;

use crate::controller::config::REDIS_PORT;
use crate::controller::observe::auth::Auth;
use crate::controller::observe::connects;
use crate::controller::observe::pods::Member;
use crate::redis::client::{self, AdminOptions, Timeouts};
use crate::redis::model;

/// What one member reports about itself and the cluster.
pub type NodeView = model::NodeObservation;

/// Credentials and timeouts for every admin connection of one reconcile. Short timeouts: a
/// member that does not answer within them is treated as down for this pass, and the next
/// pass looks again. Connecting inside a cluster network takes milliseconds; a member on a
/// dead node black-holes the SYN, so the connect timeout is kept at 1 s ([`connects::FULL`]),
/// and shorter still for a member that timed out last pass ([`connects`]). With `spec.tls`,
/// every connection speaks TLS with the settings from its Secret.
pub fn admin_options(auth: &Auth) -> AdminOptions {
    AdminOptions {
        auth: Some(client::Auth {
            username: None,
            password: auth.password().unwrap_or_default().to_string(),
        }),
        timeouts: Timeouts {
            connect: connects::FULL,
            command: Duration::from_secs(5),
            ..Timeouts::default()
        },
        tls: auth.tls().cloned(),
    }
}

/// The Redis address of a member with an IP.
pub fn addr_of(member: &Member) -> Option<SocketAddr> {
    member
        .ip()
        .map(|ip| SocketAddr::new(ip, u16::try_from(REDIS_PORT).unwrap_or(6379)))
}

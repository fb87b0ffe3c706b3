//! Live config: runtime-settable keys applied with `CONFIG SET` to every up-to-date member
//! that answers and lacks them. Not disruptive, so it needs no health gate; it runs once
//! everything before it is done, and before the rolling update.

use super::facts::Facts;
use super::step::{Action, Step};
use crate::controller::observe::redis::addr_of;
use crate::controller::observe::revision::needs_live_config;

/// The live-config step, if a member lacks the spec's runtime config.
pub fn step(f: &Facts<'_>) -> Option<Step> {
    let obs = f.obs;
    let pending: Vec<(String, std::net::SocketAddr, i32)> = obs
        .live()
        .filter(|m| !f.outdated.iter().any(|o| o.name() == m.name()))
        .filter(|m| needs_live_config(m, &obs.target))
        .filter(|m| obs.view_of(m).is_some())
        .filter_map(|m| Some((m.name().to_string(), addr_of(m)?, m.restart_count())))
        .collect();
    if pending.is_empty() {
        return None;
    }
    let keys: Vec<&str> = obs.target.live.keys().map(String::as_str).collect();
    let n = pending.len();
    Some(Step::new(
        Action::ApplyConfig {
            members: pending,
            config: obs.target.live.clone(),
        },
        "ApplyingConfig",
        format!(
            "applying {} live on {n} member(s) (CONFIG SET, no restart)",
            if keys.is_empty() {
                "the config".to_string()
            } else {
                keys.join(", ")
            }
        ),
    ))
}

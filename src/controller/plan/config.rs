//! Live config: runtime-settable keys applied with `CONFIG SET` to every up-to-date member
//! that answers and lacks them, and the AOF turned back on for a follower that started from
//! its shutdown RDB (`scripts/resume-rdb.sh`) once its resync is settled. Not disruptive, so it
//! needs no health gate; it runs once everything before it is done, and before the rolling
//! update (which then hands the lead only to followers whose AOF is on).

use super::facts::Facts;
use super::step::{Action, Step};
use crate::controller::observe::pods::Member;
use crate::controller::observe::redis::addr_of;
use crate::controller::observe::revision::{aof_due, aof_off, needs_live_config};

/// The live-config step, if a member lacks the spec's runtime config or its AOF.
pub fn step(f: &Facts<'_>) -> Option<Step> {
    live_config(f).or_else(|| resume_aof(f))
}

/// A member that started from its shutdown RDB and whose resync is not settled yet: it gets
/// no `CONFIG SET` at all until then, so that an `appendonly yes` of the spec's live config
/// does not turn its AOF on early ([`aof_due`] says why).
fn resyncing(f: &Facts<'_>, m: &Member) -> bool {
    f.obs
        .view_of(m)
        .is_some_and(|v| aof_off(v, &f.obs.target) && !aof_due(v))
}

fn live_config(f: &Facts<'_>) -> Option<Step> {
    let obs = f.obs;
    let pending: Vec<(String, std::net::SocketAddr, i32)> = obs
        .live()
        .filter(|m| !f.outdated.iter().any(|o| o.name() == m.name()))
        .filter(|m| needs_live_config(m, &obs.target))
        .filter(|m| obs.view_of(m).is_some() && !resyncing(f, m))
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

/// The AOF back on for every member that runs without it while the spec has it and whose
/// resync is settled. Outdated members too: until the rolling update replaces them they serve,
/// and may lead.
fn resume_aof(f: &Facts<'_>) -> Option<Step> {
    let obs = f.obs;
    let due: Vec<(String, std::net::SocketAddr)> = obs
        .live()
        .filter(|m| {
            obs.view_of(m)
                .is_some_and(|v| aof_off(v, &obs.target) && aof_due(v))
        })
        .filter_map(|m| Some((m.name().to_string(), addr_of(m)?)))
        .collect();
    if due.is_empty() {
        return None;
    }
    let names: Vec<&str> = due.iter().map(|(n, _)| n.as_str()).collect();
    let message = format!(
        "turning the AOF back on for {} (started from the shutdown RDB for a partial resync; resync settled)",
        names.join(", ")
    );
    Some(Step::new(Action::ResumeAof(due), "ResumingAof", message))
}

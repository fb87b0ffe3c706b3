//! Carries out one bootstrap step through [`ClusterAdmin`], which re-reads the cluster and
//! re-checks each step's preconditions right before it sends anything: the plan came from an
//! observation that may be a few hundred milliseconds old.

use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::Context;
use super::bootstrap::Step;
use super::events::publish;
use crate::crd::RedisCluster;
use crate::redis::ids::SlotRange;
use crate::redis::ops::{ClusterAdmin, StepOutcome};

/// What happened, for the log; failures are retried by the next reconcile from a fresh
/// observation (most are a member restarting or gossip not settled yet).
#[derive(Debug, PartialEq, Eq)]
pub enum Executed {
    /// Nothing to send for this step (waiting, done, or blocked).
    Nothing,
    /// Commands were sent and verified.
    Applied(String),
    /// Some or all of the step failed.
    Failed(String),
}

/// Executes `step` against the members at `admin`'s addresses and publishes an Event for
/// each change to the cluster's topology.
pub async fn execute(
    ctx: &Context,
    cluster: &RedisCluster,
    admin: &ClusterAdmin,
    step: &Step,
) -> Executed {
    let executed = match step {
        // While gossip spreads, pairs that still do not know each other are introduced
        // directly: gossip alone takes seconds to complete the mesh.
        Step::Meet(_) | Step::WaitGossip(_) => match admin.meet().await {
            Ok(StepOutcome::Applied) => {
                Executed::Applied("introduced members to each other (CLUSTER MEET)".to_string())
            }
            Ok(StepOutcome::AlreadyDone) => Executed::Nothing,
            Err(e) => Executed::Failed(format!("CLUSTER MEET: {e}")),
        },
        Step::AddSlots(assignments) => {
            let mut done = Vec::new();
            let mut errors = Vec::new();
            for (addr, shard, ranges) in assignments {
                match admin.add_slot_ranges(*addr, ranges).await {
                    Ok(StepOutcome::Applied) => {
                        done.push(format!("shard {shard} ({addr}): {}", fmt_ranges(ranges)));
                    }
                    Ok(StepOutcome::AlreadyDone) => {}
                    Err(e) => errors.push(format!("shard {shard} slots on {addr}: {e}")),
                }
            }
            if !done.is_empty() {
                publish(
                    ctx,
                    cluster,
                    EventType::Normal,
                    "SlotsAssigned",
                    &done.join("; "),
                )
                .await;
            }
            summarize(done, errors)
        }
        Step::Replicate(attach) => {
            let mut done = Vec::new();
            let mut errors = Vec::new();
            for (addr, shard, leader) in attach {
                match admin.replicate(*addr, leader).await {
                    Ok(StepOutcome::Applied) => done.push(format!(
                        "{addr} follows shard {shard} leader {}",
                        leader.short()
                    )),
                    Ok(StepOutcome::AlreadyDone) => {}
                    Err(e) => errors.push(format!("{addr} to follow {}: {e}", leader.short())),
                }
            }
            if !done.is_empty() {
                publish(
                    ctx,
                    cluster,
                    EventType::Normal,
                    "FollowerAttached",
                    &done.join("; "),
                )
                .await;
            }
            summarize(done, errors)
        }
        Step::Done | Step::WaitMembers(_) | Step::WaitSync(_) | Step::Blocked(_) => {
            Executed::Nothing
        }
    };
    match &executed {
        Executed::Applied(msg) => tracing::info!(cluster = %cluster.name_any(), "{msg}"),
        Executed::Failed(msg) => {
            tracing::warn!(cluster = %cluster.name_any(), "redis step failed: {msg}");
        }
        Executed::Nothing => {}
    }
    executed
}

fn summarize(done: Vec<String>, errors: Vec<String>) -> Executed {
    if !errors.is_empty() {
        Executed::Failed(errors.join("; "))
    } else if done.is_empty() {
        Executed::Nothing
    } else {
        Executed::Applied(done.join("; "))
    }
}

fn fmt_ranges(ranges: &[SlotRange]) -> String {
    ranges
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

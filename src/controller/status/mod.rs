//! Status: what a reconcile found and did, as `.status`. [`build`] is the one place
//! conditions are made (from the facts, the plan and what its step did); [`patch::write`]
//! applies it.

pub mod conditions;
pub mod kstatus;
pub mod patch;
pub mod shards;
pub mod summary;

use crate::controller::act::Executed;
use crate::controller::plan::Plan;
use crate::controller::plan::facts::Facts;
use crate::crd::{RedisCluster, RedisClusterStatus};
use conditions::with_reshard_progress;
pub use conditions::{Desired, conditions, reshard_status, types};

/// The status of a reconcile: the one place conditions are made. From the facts, what the
/// plan decided, and what its step did.
pub fn build(
    cluster: &RedisCluster,
    facts: &Facts<'_>,
    plan: &Plan,
    executed: &Executed,
) -> (RedisClusterStatus, Vec<Desired>) {
    let previous = cluster.status.as_ref().and_then(|s| s.reshard.as_ref());
    if plan.invalid_spec() {
        // Nothing was changed: Ready and Progressing say why; the last reshard stays shown.
        let mut conditions = vec![
            Desired::new(types::READY, false, plan.reason, plan.message.clone()),
            Desired::new(
                types::PROGRESSING,
                false,
                plan.reason,
                "fix the spec; nothing was changed",
            ),
        ];
        conditions.extend(kstatus::kstatus(plan, &conditions));
        let status = summary::summary(cluster, facts, &conditions, Vec::new(), previous.cloned());
        return (status, conditions);
    }
    let mut conditions = conditions(plan, executed);
    let reshard = reshard_status(previous, plan.reshard.as_ref(), executed);
    if let (Some(r), true) = (&reshard, plan.reshard.is_some()) {
        with_reshard_progress(&mut conditions, r);
    }
    let gitops = kstatus::kstatus(plan, &conditions);
    conditions.extend(gitops);
    let status = summary::summary(
        cluster,
        facts,
        &conditions,
        plan.orphaned_claims.clone(),
        reshard,
    );
    (status, conditions)
}

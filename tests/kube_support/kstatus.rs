//! A port of kstatus's rules (sigs.k8s.io/cli-utils/pkg/kstatus/status, `Compute` for a custom
//! resource), the way Flux, Argo CD and kpt decide whether a RedisCluster is done: Terminating
//! on deletion; InProgress while `status.observedGeneration` lags `metadata.generation` or
//! `Reconciling=True`; Failed on `Stalled=True`; otherwise Current.

use redis_operator::crd::RedisCluster;

/// kstatus's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KStatus {
    /// Being deleted.
    Terminating,
    /// Not done; why.
    InProgress(String),
    /// Needs a human; why.
    Failed(String),
    /// Done.
    Current,
}

/// Evaluates the rules on one observed object.
pub fn compute(rc: &RedisCluster) -> KStatus {
    if rc.metadata.deletion_timestamp.is_some() {
        return KStatus::Terminating;
    }
    let status = rc.status.clone().unwrap_or_default();
    if let (Some(generation), Some(observed)) = (rc.metadata.generation, status.observed_generation)
        && observed < generation
    {
        return KStatus::InProgress(format!("generation {generation} not yet observed"));
    }
    let condition = |t: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
            .map(|c| format!("{}: {}", c.reason, c.message))
    };
    if let Some(why) = condition("Reconciling") {
        return KStatus::InProgress(why);
    }
    if let Some(why) = condition("Stalled") {
        return KStatus::Failed(why);
    }
    KStatus::Current
}

/// Polls a RedisCluster and records kstatus's verdict on each observation (bounded: at most
/// `MAX_SAMPLES`, four a second), until stopped.
pub struct Watch {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<(KStatus, RedisCluster)>>,
}

const MAX_SAMPLES: usize = 4 * 900;

impl Watch {
    /// Starts recording.
    pub fn start(api: kube::Api<RedisCluster>, name: &str) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let name = name.to_string();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            while seen.len() < MAX_SAMPLES && !*stopped.borrow() {
                if let Ok(rc) = api.get(&name).await {
                    seen.push((compute(&rc), rc));
                }
                let _ =
                    tokio::time::timeout(std::time::Duration::from_millis(250), stopped.changed())
                        .await;
            }
            seen
        });
        Self { stop, task }
    }

    /// Stops and returns every observation.
    pub async fn finish(self) -> Vec<(KStatus, RedisCluster)> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// Asserts kstatus never called the cluster Current before `reached` holds on the same
/// observation (of the generation asked for), and that it saw the change as InProgress at
/// least once. Returns how many observations were Current.
pub fn assert_current_only_when(
    seen: &[(KStatus, RedisCluster)],
    generation: i64,
    what: &str,
    reached: impl Fn(&RedisCluster) -> bool,
) -> usize {
    let asked: Vec<_> = seen
        .iter()
        .filter(|(_, rc)| rc.metadata.generation >= Some(generation))
        .collect();
    assert!(
        asked
            .iter()
            .any(|(k, _)| matches!(k, KStatus::InProgress(_))),
        "{what}: kstatus never saw it in progress over {} observations",
        asked.len()
    );
    let mut current = 0;
    for (k, rc) in &asked {
        if *k == KStatus::Current {
            current += 1;
            assert!(
                reached(rc),
                "{what}: kstatus says Current before it is done: {:?}",
                rc.status
            );
        }
    }
    current
}

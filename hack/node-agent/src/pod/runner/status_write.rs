//! The pod's status as the worker sees it, written to the API server only when it differs
//! from the API's copy.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::worker::Worker;
use crate::ids::now_time;
use crate::pod::status::{self, PodView};

pub(super) fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

impl Worker {
    pub(super) fn view(&self) -> PodView {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let image_of = |name: &str, init: bool| -> String {
            let list: Vec<Container> = if init {
                spec.init_containers.clone().unwrap_or_default()
            } else {
                spec.containers.clone()
            };
            list.into_iter()
                .find(|c| c.name == name)
                .and_then(|c| c.image)
                .unwrap_or_default()
        };
        PodView {
            sandbox_ready: self.sandbox.is_some(),
            pod_ip: self.pod_ip.map(|i| i.to_string()),
            host_ip: self.node.host_ip.to_string(),
            init: self
                .init
                .iter()
                .map(|c| c.view(&image_of(&c.name, true)))
                .collect(),
            containers: self
                .app
                .iter()
                .map(|c| c.view(&image_of(&c.name, false)))
                .collect(),
            initialized: self.initialized,
            terminal: self.terminating,
        }
    }

    /// Writes the status if it differs from what the apiserver holds. Compares against the
    /// API's copy (not our last write), so changes made by others, e.g. the node controller
    /// marking pods not ready during a partition, are corrected once we can talk again.
    pub(super) async fn write_status(&mut self) {
        if !self.reachable() || self.gone {
            return;
        }
        if self.write_retry.is_some_and(|t| t > Instant::now()) {
            return;
        }
        self.write_retry = None;
        let api: Api<Pod> = Api::namespaced(self.node.client.clone(), self.ns());
        let view = self.view();
        for _ in 0..3 {
            let desired = status::build(&self.pod, &view, &now_time());
            let current = self.pod.status.clone();
            if current.as_ref() == Some(&desired) {
                return;
            }
            // The apiserver may normalise something we send; do not rewrite forever.
            if let Some((d, r)) = &self.last_write
                && *d == desired
                && *r == current
            {
                return;
            }
            let mut obj = (*self.pod).clone();
            obj.status = Some(desired.clone());
            match api
                .replace_status(self.name(), &PostParams::default(), &obj)
                .await
            {
                Ok(p) => {
                    debug!(pod = %self.key, phase = ?desired.phase, "status written");
                    self.last_write = Some((desired, p.status.clone()));
                    self.pod = Arc::new(p);
                    return;
                }
                Err(e) if api_code(&e) == Some(409) => match api.get_opt(self.name()).await {
                    Ok(Some(p)) if p.metadata.uid.as_deref() == Some(self.uid.as_str()) => {
                        self.pod = Arc::new(p);
                    }
                    Ok(_) => return,
                    Err(e) => {
                        warn!(pod = %self.key, "re-reading pod: {e}");
                        break;
                    }
                },
                Err(e) if api_code(&e) == Some(404) => return,
                Err(e) => {
                    warn!(pod = %self.key, "writing status: {e}");
                    break;
                }
            }
        }
        self.write_retry = Some(Instant::now() + Duration::from_secs(2));
    }
}

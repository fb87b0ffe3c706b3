//! Keeping the pod's volumes current: the ConfigMaps and Secrets it references, its
//! PersistentVolumeClaims, service account tokens, and the prepared volume directories.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use tokio::time::Instant;
use tracing::{info, warn};

use super::worker::Worker;
use crate::pod::env::{self, Objects};
use crate::pod::status::CState;
use crate::pod::volumes::{self, VolumeError};

impl Worker {
    pub(super) async fn fetch_objects(&mut self) -> Result<(), String> {
        let refs = env::references(&self.pod);
        let ns = self.ns().to_string();
        let cms: Api<ConfigMap> = Api::namespaced(self.node.client.clone(), &ns);
        let secrets: Api<Secret> = Api::namespaced(self.node.client.clone(), &ns);
        let mut objects = Objects::default();
        for name in &refs.configmaps {
            let v = cms
                .get_opt(name)
                .await
                .map_err(|e| format!("reading configmap {name}: {e}"))?;
            objects.configmaps.insert(name.clone(), v);
        }
        for name in &refs.secrets {
            let v = secrets
                .get_opt(name)
                .await
                .map_err(|e| format!("reading secret {name}: {e}"))?;
            objects.secrets.insert(name.clone(), v);
        }
        self.objects = objects;
        self.objects_fetched = Some(Instant::now());
        Ok(())
    }

    /// Brings the volume directories up to date: referenced objects, claims and tokens first.
    /// The first success lets containers start; a later failure keeps the last good content.
    pub(super) async fn sync_volumes(&mut self) {
        if let Err(e) = self.fetch_objects().await {
            warn!(pod = %self.key, "{e}");
            if self.volumes.is_none() {
                self.pod_error = Some(VolumeError {
                    reason: "ContainerCreating",
                    message: e,
                });
            }
            return;
        }
        self.resolve_claims().await;
        self.refresh_tokens().await;
        if self.volumes.is_none() {
            self.wipe_memory_volumes();
        }
        let tokens: HashMap<String, String> = self
            .tokens
            .iter()
            .map(|(k, (t, _))| (k.clone(), t.clone()))
            .collect();
        let facts = self.facts();
        let root = self.dir.join("volumes");
        let result = volumes::prepare(&volumes::Inputs {
            pod: &self.pod,
            facts: &facts,
            objects: &self.objects,
            tokens: &tokens,
            claims: &self.claims,
            root: &root,
            setup: self.volumes.is_none(),
        });
        // Unresolved claims are looked up again next time.
        self.claims.retain(|_, r| r.is_ok());
        match result {
            Ok(v) => {
                self.volumes = Some(v);
                self.volumes_synced = Some(Instant::now());
                if self.pod_error.take().is_some() {
                    for c in self.init.iter_mut().chain(self.app.iter_mut()) {
                        if !c.running() && !c.had_instance {
                            c.state = CState::Waiting {
                                reason: "ContainerCreating".into(),
                                message: None,
                            };
                        }
                    }
                }
            }
            Err(e) => {
                if self.volumes.is_none() {
                    info!(pod = %self.key, "volumes not ready: {}", e.message);
                    self.pod_error = Some(e);
                } else {
                    // Running containers keep the last good content, as with the kubelet.
                    warn!(pod = %self.key, "volume refresh: {}", e.message);
                    self.volumes_synced = Some(Instant::now());
                }
            }
        }
    }

    /// Looks up the pod's PersistentVolumeClaims not yet bound to a volume here.
    async fn resolve_claims(&mut self) {
        let labels = self.node.labels();
        let vol_dir = self.node.volumes_dir();
        for claim in volumes::claim_names(&self.pod) {
            if matches!(self.claims.get(&claim), Some(Ok(_))) {
                continue;
            }
            let r = volumes::resolve_claim(&self.node.client, self.ns(), &claim, &labels, &vol_dir)
                .await;
            self.claims.insert(claim, r);
        }
    }

    /// Requests service account tokens that are missing or due for a refresh; a failed request
    /// leaves an empty token for a minute.
    async fn refresh_tokens(&mut self) {
        for (aud, exp) in volumes::token_requests(&self.pod) {
            let key = volumes::token_key(aud.as_deref(), exp);
            if self
                .tokens
                .get(&key)
                .is_some_and(|(_, at)| *at > Instant::now())
            {
                continue;
            }
            match volumes::request_token(&self.node.client, &self.pod, aud.as_deref(), exp).await {
                Ok((token, expires)) => {
                    let ttl = expires.duration_since(jiff::Timestamp::now());
                    let ttl = Duration::try_from(ttl).unwrap_or(Duration::from_secs(600));
                    // Refresh at 80% of the lifetime, as the kubelet does.
                    self.tokens
                        .insert(key, (token, Instant::now() + ttl.mul_f64(0.8)));
                }
                Err(e) => {
                    warn!(pod = %self.key, "TokenRequest failed ({e}); writing an empty service account token");
                    self.tokens.insert(
                        key,
                        (String::new(), Instant::now() + Duration::from_secs(60)),
                    );
                }
            }
        }
    }

    /// A fresh worker means a fresh sandbox (new pod, reboot, agent restart): tmpfs-backed
    /// emptyDirs of an earlier sandbox would not have survived, disk-backed ones do.
    fn wipe_memory_volumes(&self) {
        let volumes = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten();
        for v in volumes {
            if v.empty_dir.as_ref().and_then(|e| e.medium.as_deref()) == Some("Memory") {
                let dir = self.dir.join("volumes").join(&v.name);
                if dir.exists()
                    && let Err(e) = std::fs::remove_dir_all(&dir)
                {
                    warn!(pod = %self.key, "clearing memory volume {}: {e}", v.name);
                }
            }
        }
    }
}

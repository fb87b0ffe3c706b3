//! Pod volumes: each one becomes a directory on the host that containers bind-mount.
//!
//! ConfigMap, Secret, downward API and projected volumes are written the way the kubelet's
//! atomic writer does (a timestamped directory behind a `..data` symlink, one symlink per
//! top-level entry), so updates appear atomically inside running containers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod,
    ServiceAccount, Volume,
};
use kube::Client;
use kube::api::{Api, PostParams};

use super::env::{Objects, PodFacts, field_ref, find_container, resource_field_ref};
use super::ownership;

pub const PROVISIONER: &str = "node-agent.local/hostpath";
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeError {
    pub reason: &'static str,
    pub message: String,
}

impl VolumeError {
    fn config(message: String) -> Self {
        VolumeError {
            reason: "CreateContainerConfigError",
            message,
        }
    }
    fn pending(message: String) -> Self {
        VolumeError {
            reason: "ContainerCreating",
            message,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub host_path: PathBuf,
    /// Projections are read-only in a real pod whatever the mount says.
    pub read_only: bool,
    /// Directories the kubelet would create a missing subPath in.
    pub writable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

const DEFAULT_MODE: i32 = 0o644;

fn mode(item: Option<i32>, default: Option<i32>) -> u32 {
    u32::try_from(item.or(default).unwrap_or(DEFAULT_MODE)).unwrap_or(0o644) & 0o7777
}

/// The files of a ConfigMap or Secret source: all keys, or only `items` (where a missing
/// key is an error unless the source is optional, as in the kubelet).
fn key_files(
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    optional: bool,
    kind: &str,
    name: &str,
) -> Result<Vec<FileEntry>, String> {
    let Some(data) = data else {
        if optional {
            return Ok(vec![]);
        }
        return Err(format!("{kind} \"{name}\" not found"));
    };
    match items {
        None => Ok(data
            .into_iter()
            .map(|(k, v)| FileEntry {
                path: k,
                data: v,
                mode: mode(None, default_mode),
            })
            .collect()),
        Some(items) => {
            let mut out = Vec::new();
            for it in items {
                match data.get(&it.key) {
                    Some(v) => out.push(FileEntry {
                        path: it.path.clone(),
                        data: v.clone(),
                        mode: mode(it.mode, default_mode),
                    }),
                    None if optional => {}
                    None => {
                        return Err(format!(
                            "{kind} references non-existent {} key: {}",
                            if kind == "secret" { "secret" } else { "config" },
                            it.key
                        ));
                    }
                }
            }
            Ok(out)
        }
    }
}

fn downward_files(
    pod: &Pod,
    facts: &PodFacts,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
) -> Result<Vec<FileEntry>, String> {
    let mut out = Vec::new();
    for it in items {
        let value = if let Some(f) = &it.field_ref {
            field_ref(pod, facts, &f.field_path)?
        } else if let Some(r) = &it.resource_field_ref {
            let cname = r.container_name.as_deref().unwrap_or_default();
            let c = find_container(pod, cname)
                .ok_or_else(|| format!("container {cname:?} not found in pod"))?;
            resource_field_ref(c, facts, &r.resource, r.divisor.as_ref())?
        } else {
            return Err(format!("downwardAPI item {}: nothing to project", it.path));
        };
        out.push(FileEntry {
            path: it.path.clone(),
            data: value.into_bytes(),
            mode: mode(it.mode, default_mode),
        });
    }
    Ok(out)
}

/// Key under which a service account token for a projection is cached.
pub fn token_key(audience: Option<&str>, expiration: Option<i64>) -> String {
    format!("{}|{}", audience.unwrap_or(""), expiration.unwrap_or(3600))
}

/// The volume's type for messages: the one field besides `name` that is set.
fn volume_type(v: &Volume) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| {
            j.as_object()
                .and_then(|o| o.keys().find(|k| *k != "name").cloned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Everything volume preparation needs that comes from the API, gathered beforehand so
/// preparation itself is plain file work.
pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub facts: &'a PodFacts,
    pub objects: &'a Objects,
    pub tokens: &'a HashMap<String, String>,
    pub claims: &'a HashMap<String, Result<PathBuf, VolumeError>>,
    pub root: &'a Path,
    /// The pod's volumes are being set up (a new worker, i.e. a new sandbox), not refreshed:
    /// fsGroup ownership of emptyDirs and claims is applied then, as the kubelet does at mount.
    pub setup: bool,
}

/// The content of a projected-style volume (configMap, secret, downwardAPI, projected).
fn projection(inp: &Inputs<'_>, v: &Volume) -> Result<Option<Vec<FileEntry>>, String> {
    if let Some(cm) = &v.config_map {
        return key_files(
            inp.objects.configmap_data(&cm.name),
            cm.items.as_ref(),
            cm.default_mode,
            cm.optional == Some(true),
            "configmap",
            &cm.name,
        )
        .map(Some);
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        return key_files(
            inp.objects.secret_data(&name),
            s.items.as_ref(),
            s.default_mode,
            s.optional == Some(true),
            "secret",
            &name,
        )
        .map(Some);
    }
    if let Some(d) = &v.downward_api {
        return downward_files(
            inp.pod,
            inp.facts,
            d.items.as_deref().unwrap_or_default(),
            d.default_mode,
        )
        .map(Some);
    }
    if let Some(p) = &v.projected {
        let mut out = Vec::new();
        // The ServiceAccount admission plugin adds this volume to every pod; it must never
        // be what stops a pod here.
        let is_api_access = v.name.starts_with("kube-api-access-");
        for src in p.sources.iter().flatten() {
            if let Some(cm) = &src.config_map {
                let data = inp.objects.configmap_data(&cm.name);
                if data.is_none() && is_api_access && cm.name == "kube-root-ca.crt" {
                    tracing::warn!(
                        pod = inp.pod.metadata.name.as_deref().unwrap_or_default(),
                        "configmap kube-root-ca.crt not found; writing an empty ca.crt"
                    );
                    for it in cm.items.iter().flatten() {
                        out.push(FileEntry {
                            path: it.path.clone(),
                            data: vec![],
                            mode: mode(it.mode, p.default_mode),
                        });
                    }
                    continue;
                }
                out.extend(key_files(
                    data,
                    cm.items.as_ref(),
                    p.default_mode,
                    cm.optional == Some(true),
                    "configmap",
                    &cm.name,
                )?);
            }
            if let Some(s) = &src.secret {
                out.extend(key_files(
                    inp.objects.secret_data(&s.name),
                    s.items.as_ref(),
                    p.default_mode,
                    s.optional == Some(true),
                    "secret",
                    &s.name,
                )?);
            }
            if let Some(d) = &src.downward_api {
                out.extend(downward_files(
                    inp.pod,
                    inp.facts,
                    d.items.as_deref().unwrap_or_default(),
                    p.default_mode,
                )?);
            }
            if let Some(t) = &src.service_account_token {
                let key = token_key(t.audience.as_deref(), t.expiration_seconds);
                let token = inp.tokens.get(&key).cloned().unwrap_or_default();
                out.push(FileEntry {
                    path: t.path.clone(),
                    data: token.into_bytes(),
                    mode: mode(None, p.default_mode),
                });
            }
            if src.cluster_trust_bundle.is_some() {
                return Err(format!(
                    "volume \"{}\": clusterTrustBundle projections are not supported on this node",
                    v.name
                ));
            }
        }
        return Ok(Some(out));
    }
    Ok(None)
}

fn check_host_path(path: &Path, ty: &str) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(path);
    let fail = |what: &str| {
        Err(format!(
            "hostPath type check failed: {} is not a {what}",
            path.display()
        ))
    };
    match ty {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            std::fs::create_dir_all(path)
                .map_err(|e| format!("creating {}: {e}", path.display()))?;
            Ok(())
        }
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("creating {}: {e}", parent.display()))?;
                }
                std::fs::write(path, b"")
                    .map_err(|e| format!("creating {}: {e}", path.display()))?;
            }
            Ok(())
        }
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            _ => fail("directory"),
        },
        "File" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => fail("file"),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => fail("socket"),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => fail("character device"),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => fail("block device"),
        },
        other => Err(format!("hostPath type {other:?} is not supported")),
    }
}

/// Creates or refreshes every volume of the pod under `root/<volume name>`.
pub fn prepare(inp: &Inputs<'_>) -> Result<BTreeMap<String, Prepared>, VolumeError> {
    let mut out = BTreeMap::new();
    let volumes = inp
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten();
    let fs_group = ownership::fs_group(inp.pod).map_err(VolumeError::config)?;
    for v in volumes {
        let dir = inp.root.join(&v.name);
        let io = |e: std::io::Error| {
            VolumeError::pending(format!(
                "MountVolume.SetUp failed for volume \"{}\" : {e}",
                v.name
            ))
        };
        let prepared = if let Some(mut files) = projection(inp, v).map_err(|m| {
            VolumeError::config(format!(
                "MountVolume.SetUp failed for volume \"{}\" : {m}",
                v.name
            ))
        })? {
            // The modes ownership will leave, so an unchanged volume is not rewritten.
            if fs_group.is_some() {
                for f in &mut files {
                    f.mode = ownership::new_mode(f.mode, false, true);
                }
            }
            let changed = write_atomic(&dir, &files).map_err(io)?;
            if let Some((g, on_mismatch)) = fs_group.filter(|_| changed || inp.setup) {
                ownership::set_volume_ownership(&dir, g, true, on_mismatch).map_err(io)?;
            }
            Prepared {
                host_path: dir,
                read_only: true,
                writable: false,
            }
        } else if v.empty_dir.is_some() {
            std::fs::create_dir_all(&dir).map_err(io)?;
            // The kubelet makes emptyDirs world-writable, so non-root containers can use them.
            // (With an fsGroup, refreshes keep the setgid bit ownership gave it.)
            let mode = if fs_group.is_some() { 0o2777 } else { 0o777 };
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).map_err(io)?;
            if let Some((g, on_mismatch)) = fs_group.filter(|_| inp.setup) {
                ownership::set_volume_ownership(&dir, g, false, on_mismatch).map_err(io)?;
            }
            Prepared {
                host_path: dir,
                read_only: false,
                writable: true,
            }
        } else if let Some(hp) = &v.host_path {
            let path = PathBuf::from(&hp.path);
            check_host_path(&path, hp.type_.as_deref().unwrap_or_default()).map_err(|m| {
                VolumeError::config(format!(
                    "MountVolume.SetUp failed for volume \"{}\" : {m}",
                    v.name
                ))
            })?;
            Prepared {
                host_path: path,
                read_only: false,
                writable: true,
            }
        } else if v.persistent_volume_claim.is_some() || v.ephemeral.is_some() {
            let read_only = v
                .persistent_volume_claim
                .as_ref()
                .and_then(|c| c.read_only)
                .unwrap_or(false);
            let claim = claim_name(inp.pod, v).unwrap_or_default();
            match inp.claims.get(&claim) {
                Some(Ok(path)) => {
                    // Like the local volume plugin: a read-only claim is left as it is.
                    if let Some((g, on_mismatch)) = fs_group.filter(|_| inp.setup && !read_only) {
                        ownership::set_volume_ownership(path, g, false, on_mismatch).map_err(io)?;
                    }
                    Prepared {
                        host_path: path.clone(),
                        read_only,
                        writable: true,
                    }
                }
                Some(Err(e)) => return Err(e.clone()),
                None => {
                    return Err(VolumeError::pending(format!(
                        "persistentvolumeclaim \"{claim}\" has not been looked up yet"
                    )));
                }
            }
        } else {
            return Err(VolumeError::config(format!(
                "volume \"{}\" has type {} which is not supported on this node \
                 (supported: configMap, secret, emptyDir, downwardAPI, projected, \
                 persistentVolumeClaim, ephemeral, hostPath)",
                v.name,
                volume_type(v)
            )));
        };
        out.insert(v.name.clone(), prepared);
    }
    Ok(out)
}

/// The PVC behind a `persistentVolumeClaim` or generic `ephemeral` volume.
pub fn claim_name(pod: &Pod, v: &Volume) -> Option<String> {
    if let Some(c) = &v.persistent_volume_claim {
        return Some(c.claim_name.clone());
    }
    v.ephemeral.as_ref().map(|_| {
        format!(
            "{}-{}",
            pod.metadata.name.as_deref().unwrap_or_default(),
            v.name
        )
    })
}

pub fn claim_names(pod: &Pod) -> BTreeSet<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| claim_name(pod, v))
        .collect()
}

/// Node labels a PV's nodeAffinity can select on.
pub fn node_matches_affinity(
    pv: &PersistentVolume,
    node_labels: &BTreeMap<String, String>,
) -> bool {
    let Some(terms) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .map(|r| &r.node_selector_terms)
    else {
        return true;
    };
    terms.iter().any(|t| {
        t.match_expressions.iter().flatten().all(|e| {
            let val = node_labels.get(&e.key);
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => val.is_some_and(|v| values.contains(v)),
                "NotIn" => val.is_none_or(|v| !values.contains(v)),
                "Exists" => val.is_some(),
                "DoesNotExist" => val.is_none(),
                _ => false,
            }
        })
    })
}

/// Finds the directory behind a claim, checking it is bound and lives on this node.
pub async fn resolve_claim(
    client: &Client,
    ns: &str,
    claim: &str,
    node_labels: &BTreeMap<String, String>,
    node_volumes_dir: &Path,
) -> Result<PathBuf, VolumeError> {
    let api_err = |e: kube::Error| VolumeError::pending(format!("reading claim {claim}: {e}"));
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pvc = pvcs.get_opt(claim).await.map_err(api_err)?.ok_or_else(|| {
        VolumeError::config(format!("persistentvolumeclaim \"{claim}\" not found"))
    })?;
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let volume_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if !bound || volume_name.is_empty() {
        return Err(VolumeError::pending(format!(
            "persistentvolumeclaim \"{claim}\" is not bound"
        )));
    }
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = pvs
        .get_opt(&volume_name)
        .await
        .map_err(api_err)?
        .ok_or_else(|| {
            VolumeError::pending(format!("persistentvolume \"{volume_name}\" not found"))
        })?;
    if !node_matches_affinity(&pv, node_labels) {
        return Err(VolumeError::config(format!(
            "volume node affinity conflict: persistentvolume \"{volume_name}\" is not on this node"
        )));
    }
    let spec = pv.spec.as_ref();
    let path = spec
        .and_then(|s| s.local.as_ref().map(|l| l.path.clone()))
        .or_else(|| spec.and_then(|s| s.host_path.as_ref().map(|h| h.path.clone())))
        .ok_or_else(|| {
            VolumeError::config(format!(
                "persistentvolume \"{volume_name}\" is neither local nor hostPath; this node cannot mount it"
            ))
        })?;
    let path = PathBuf::from(path);
    let ours = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVISIONED_BY))
        .is_some_and(|p| p == PROVISIONER);
    if ours && !path.starts_with(node_volumes_dir) {
        return Err(VolumeError::config(format!(
            "volume node affinity conflict: persistentvolume \"{volume_name}\" ({}) belongs to another node",
            path.display()
        )));
    }
    // Our PV is a loop-mounted disk; `node-agent cleanup` may have unmounted it.
    if ours && let Err(e) = crate::loopvol::ensure_mounted(&path).await {
        return Err(VolumeError::pending(format!(
            "MountVolume.SetUp failed for volume \"{volume_name}\" : {e:#}"
        )));
    }
    if !path.is_dir() {
        return Err(VolumeError::pending(format!(
            "MountVolume.SetUp failed for volume \"{volume_name}\" : path \"{}\" does not exist",
            path.display()
        )));
    }
    Ok(path)
}

/// Asks the TokenRequest API for a pod-bound service account token.
pub async fn request_token(
    client: &Client,
    pod: &Pod,
    audience: Option<&str>,
    expiration: Option<i64>,
) -> Result<(String, jiff::Timestamp), kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .unwrap_or("default");
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
            expiration_seconds: Some(expiration.unwrap_or(3600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let resp: TokenRequest = api
        .create_subresource("token", sa, &PostParams::default(), &req)
        .await?;
    match resp.status {
        Some(s) => Ok((s.token, s.expiration_timestamp.0)),
        None => Ok((String::new(), jiff::Timestamp::now())),
    }
}

/// Every projected service account token the pod asks for: (audience, expirationSeconds).
pub fn token_requests(pod: &Pod) -> Vec<(Option<String>, Option<i64>)> {
    let mut out = Vec::new();
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(t) = &src.service_account_token {
                let item = (t.audience.clone(), t.expiration_seconds);
                if !out.contains(&item) {
                    out.push(item);
                }
            }
        }
    }
    out
}

/// One bind mount of a container: host directory/file → path inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

fn safe_relative(p: &str) -> bool {
    let path = Path::new(p);
    !path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// The container's volumeMounts as binds, parents before children.
pub fn container_binds(
    c: &Container,
    volumes: &BTreeMap<String, Prepared>,
    env: &[(String, String)],
) -> Result<Vec<Bind>, String> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let vol = volumes
            .get(&m.name)
            .ok_or_else(|| format!("volumeMount {:?}: no volume of that name", m.name))?;
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => s.clone(),
            (_, Some(e)) if !e.is_empty() => super::env::expand_all(std::slice::from_ref(e), env)
                .pop()
                .unwrap_or_default(),
            _ => String::new(),
        };
        let source = if sub.is_empty() {
            vol.host_path.clone()
        } else {
            if !safe_relative(&sub) {
                return Err(format!(
                    "subPath {sub:?} must be a relative path without '..'"
                ));
            }
            let p = vol.host_path.join(&sub);
            if std::fs::symlink_metadata(&p).is_err() {
                // The kubelet creates a missing subPath as a directory.
                std::fs::create_dir_all(&p)
                    .map_err(|e| format!("creating subPath {sub:?}: {e}"))?;
            }
            // Projections expose entries as symlinks into ..data; bind the real file.
            std::fs::canonicalize(&p).map_err(|e| format!("subPath {sub:?}: {e}"))?
        };
        out.push(Bind {
            source,
            target: m.mount_path.clone(),
            read_only: m.read_only == Some(true) || vol.read_only,
        });
    }
    out.sort_by_key(|b| Path::new(&b.target).components().count());
    Ok(out)
}

fn list_files(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let r = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            list_files(root, &r, out)?;
        } else {
            out.push(r);
        }
    }
    Ok(())
}

fn unchanged(dir: &Path, files: &[FileEntry]) -> bool {
    let data = dir.join("..data");
    let mut present = Vec::new();
    if list_files(&data, Path::new(""), &mut present).is_err() || present.len() != files.len() {
        return false;
    }
    files.iter().all(|f| {
        let p = data.join(&f.path);
        std::fs::read(&p).is_ok_and(|d| d == f.data)
            && std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o7777 == f.mode)
    })
}

/// The kubelet's AtomicWriter: returns whether anything changed.
pub fn write_atomic(dir: &Path, files: &[FileEntry]) -> std::io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    if unchanged(dir, files) {
        return Ok(false);
    }
    let stamp = jiff::Timestamp::now()
        .strftime("%Y_%m_%d_%H_%M_%S")
        .to_string();
    let ts_name = format!("..{stamp}.{}", crate::ids::random_hex("aw", 8));
    let ts_dir = dir.join(&ts_name);
    std::fs::create_dir(&ts_dir)?;
    for f in files {
        if !safe_relative(&f.path) {
            return Err(std::io::Error::other(format!("invalid path {:?}", f.path)));
        }
        let p = ts_dir.join(&f.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, &f.data)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode))?;
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&ts_name, &tmp)?;
    std::fs::rename(&tmp, dir.join("..data"))?;
    let tops: BTreeSet<String> = files
        .iter()
        .filter_map(|f| {
            Path::new(&f.path)
                .components()
                .next()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
        })
        .collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(top), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !tops.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old
        && old != Path::new(&ts_name)
    {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{
        ConfigMap, ConfigMapProjection, ConfigMapVolumeSource, EmptyDirVolumeSource,
        NFSVolumeSource, PodSpec, ProjectedVolumeSource, Secret, SecretVolumeSource,
        ServiceAccountTokenProjection, VolumeMount, VolumeProjection,
    };
    use kube::api::ObjectMeta;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!("vol-test-{}", crate::ids::random_hex("t", 10)));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn pod_with(volumes: Vec<Volume>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                volumes: Some(volumes),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn objects() -> Objects {
        let mut o = Objects::default();
        o.configmaps.insert(
            "conf".into(),
            Some(ConfigMap {
                data: Some(BTreeMap::from([
                    ("redis.conf".into(), "port 6379\n".into()),
                    ("other".into(), "x".into()),
                ])),
                ..Default::default()
            }),
        );
        o.secrets.insert(
            "auth".into(),
            Some(Secret {
                data: Some(BTreeMap::from([(
                    "password".into(),
                    ByteString(b"pw".to_vec()),
                )])),
                ..Default::default()
            }),
        );
        o.configmaps.insert("missing".into(), None);
        o
    }

    fn prepare_in(
        root: &Path,
        pod: &Pod,
        objs: &Objects,
    ) -> Result<BTreeMap<String, Prepared>, VolumeError> {
        let tokens = HashMap::from([(token_key(None, Some(3607)), "tok".to_string())]);
        let claims = HashMap::new();
        let facts = PodFacts::default();
        prepare(&Inputs {
            pod,
            facts: &facts,
            objects: objs,
            tokens: &tokens,
            claims: &claims,
            root,
            setup: true,
        })
    }

    fn cm_vol(name: &str, cm: &str) -> Volume {
        Volume {
            name: name.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn configmap_and_secret_volumes_are_written() {
        let root = tmp();
        let pod = pod_with(vec![
            cm_vol("config", "conf"),
            Volume {
                name: "pw".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some("auth".into()),
                    default_mode: Some(0o400),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
        ]);
        let v = prepare_in(&root, &pod, &objects()).unwrap();
        let conf = root.join("config/redis.conf");
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "port 6379\n");
        assert!(
            std::fs::symlink_metadata(&conf)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let pw = root.join("pw/password");
        assert_eq!(std::fs::read(&pw).unwrap(), b"pw");
        assert_eq!(
            std::fs::metadata(&pw).unwrap().permissions().mode() & 0o777,
            0o400
        );
        assert!(v["config"].read_only);
        assert!(!v["scratch"].read_only);
        assert!(root.join("scratch").is_dir());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn configmap_updates_replace_content_atomically() {
        let root = tmp();
        let files = vec![FileEntry {
            path: "a".into(),
            data: b"1".to_vec(),
            mode: 0o644,
        }];
        assert!(write_atomic(&root, &files).unwrap());
        assert!(
            !write_atomic(&root, &files).unwrap(),
            "unchanged content is not rewritten"
        );
        let files2 = vec![FileEntry {
            path: "b/c".into(),
            data: b"2".to_vec(),
            mode: 0o644,
        }];
        assert!(write_atomic(&root, &files2).unwrap());
        assert!(std::fs::symlink_metadata(root.join("a")).is_err());
        assert_eq!(std::fs::read(root.join("b/c")).unwrap(), b"2");
        let dirs = std::fs::read_dir(&root)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("..2")
            })
            .count();
        assert_eq!(dirs, 1, "old generation removed");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn missing_configmap_names_it() {
        let root = tmp();
        let pod = pod_with(vec![cm_vol("config", "missing")]);
        let e = prepare_in(&root, &pod, &objects()).unwrap_err();
        assert_eq!(e.reason, "CreateContainerConfigError");
        assert!(
            e.message.contains("configmap \"missing\" not found"),
            "{}",
            e.message
        );
        assert!(e.message.contains("\"config\""), "{}", e.message);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn unsupported_volume_type_is_named() {
        let root = tmp();
        let pod = pod_with(vec![Volume {
            name: "share".into(),
            nfs: Some(NFSVolumeSource {
                server: "x".into(),
                path: "/".into(),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        let e = prepare_in(&root, &pod, &objects()).unwrap_err();
        assert_eq!(e.reason, "CreateContainerConfigError");
        assert!(
            e.message.contains("volume \"share\" has type nfs"),
            "{}",
            e.message
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn api_access_volume_never_blocks() {
        let root = tmp();
        let pod = pod_with(vec![Volume {
            name: "kube-api-access-abcde".into(),
            projected: Some(ProjectedVolumeSource {
                default_mode: Some(0o644),
                sources: Some(vec![
                    VolumeProjection {
                        service_account_token: Some(ServiceAccountTokenProjection {
                            path: "token".into(),
                            expiration_seconds: Some(3607),
                            audience: None,
                        }),
                        ..Default::default()
                    },
                    VolumeProjection {
                        config_map: Some(ConfigMapProjection {
                            name: "kube-root-ca.crt".into(),
                            items: Some(vec![KeyToPath {
                                key: "ca.crt".into(),
                                path: "ca.crt".into(),
                                mode: None,
                            }]),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                    VolumeProjection {
                        downward_api: Some(k8s_openapi::api::core::v1::DownwardAPIProjection {
                            items: Some(vec![DownwardAPIVolumeFile {
                                path: "namespace".into(),
                                field_ref: Some(k8s_openapi::api::core::v1::ObjectFieldSelector {
                                    field_path: "metadata.namespace".into(),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }]),
                        }),
                        ..Default::default()
                    },
                ]),
            }),
            ..Default::default()
        }]);
        prepare_in(&root, &pod, &objects()).unwrap();
        let d = root.join("kube-api-access-abcde");
        assert_eq!(std::fs::read_to_string(d.join("token")).unwrap(), "tok");
        assert_eq!(std::fs::read_to_string(d.join("ca.crt")).unwrap(), "");
        assert_eq!(std::fs::read_to_string(d.join("namespace")).unwrap(), "ns");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn binds_follow_mounts_with_subpaths() {
        let root = tmp();
        let pod = pod_with(vec![
            cm_vol("config", "conf"),
            Volume {
                name: "data".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
        ]);
        let vols = prepare_in(&root, &pod, &objects()).unwrap();
        let c = Container {
            name: "redis".into(),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "config".into(),
                    mount_path: "/etc/redis/redis.conf".into(),
                    sub_path: Some("redis.conf".into()),
                    ..Default::default()
                },
                VolumeMount {
                    name: "data".into(),
                    mount_path: "/data".into(),
                    ..Default::default()
                },
                VolumeMount {
                    name: "data".into(),
                    mount_path: "/logs".into(),
                    sub_path_expr: Some("$(POD)/logs".into()),
                    read_only: Some(true),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let env = vec![("POD".to_string(), "redis-0".to_string())];
        let binds = container_binds(&c, &vols, &env).unwrap();
        assert_eq!(binds[0].target, "/data");
        assert_eq!(binds.last().unwrap().target, "/etc/redis/redis.conf");
        let conf = binds
            .iter()
            .find(|b| b.target.ends_with("redis.conf"))
            .unwrap();
        assert!(conf.read_only);
        assert!(conf.source.is_file(), "{:?}", conf.source);
        assert!(!conf.source.to_string_lossy().contains("..data"));
        let logs = binds.iter().find(|b| b.target == "/logs").unwrap();
        assert!(logs.read_only);
        assert!(root.join("data/redis-0/logs").is_dir());
        let bad = Container {
            name: "x".into(),
            volume_mounts: Some(vec![VolumeMount {
                name: "data".into(),
                mount_path: "/x".into(),
                sub_path: Some("../escape".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(container_binds(&bad, &vols, &env).is_err());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn affinity_matching() {
        use k8s_openapi::api::core::v1::{
            NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeSpec,
            VolumeNodeAffinity,
        };
        let pv = PersistentVolume {
            spec: Some(PersistentVolumeSpec {
                node_affinity: Some(VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "kubernetes.io/hostname".into(),
                                operator: "In".into(),
                                values: Some(vec!["n1".into()]),
                            }]),
                            ..Default::default()
                        }],
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let n1 = BTreeMap::from([("kubernetes.io/hostname".to_string(), "n1".to_string())]);
        let n2 = BTreeMap::from([("kubernetes.io/hostname".to_string(), "n2".to_string())]);
        assert!(node_matches_affinity(&pv, &n1));
        assert!(!node_matches_affinity(&pv, &n2));
    }
}

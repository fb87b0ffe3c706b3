//! OCI image archives this node has been given, as a container runtime's image store.
//!
//! A directory of archives (OCI image layouts packed in a tar, e.g. `make image`'s output) stands
//! in for a registry: an archive provides the references named by its `index.json` annotations
//! (`org.opencontainers.image.ref.name`, `io.containerd.image.name`). A Pod's image is "pulled"
//! by finding it there and unpacking its layers once per manifest digest, like a runtime's
//! snapshotter; containers then run on an overlay of that root file system.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

/// What a container needs from an image's config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OciImage {
    /// Manifest digest, `sha256:<hex>`: the image's identity (imageID).
    pub digest: String,
    /// The unpacked layers, never written to: containers get an overlay on top.
    pub rootfs: PathBuf,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    /// The config's `User`, as written (`uid`, `uid:gid`, `name`, `name:group` or empty).
    pub user: String,
    pub volumes: Vec<String>,
}

#[derive(Deserialize, Default)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize, Clone, Default)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    config: Option<ExecConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ExecConfig {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    volumes: Option<HashMap<String, serde_json::Value>>,
}

/// `redis-operator:latest` → `docker.io/library/redis-operator:latest`; a reference with a digest
/// keeps it (`repo@sha256:..`), one without a tag gets `:latest`, as a runtime resolves them.
pub fn normalize(reference: &str) -> String {
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_slash..].find(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    let repo = match repo.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            repo.to_string()
        }
        Some(_) => format!("docker.io/{repo}"),
        None => format!("docker.io/library/{repo}"),
    };
    match (tag, digest) {
        (_, Some(d)) => format!("{repo}@{d}"),
        (Some(t), None) => format!("{repo}:{t}"),
        (None, None) => format!("{repo}:latest"),
    }
}

/// The repository part of a normalized reference (no tag, no digest).
fn repository(normalized: &str) -> &str {
    let no_digest = normalized.split('@').next().unwrap_or(normalized);
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    match no_digest[last_slash..].find(':') {
        Some(i) => &no_digest[..last_slash + i],
        None => no_digest,
    }
}

/// What one archive offers: (normalized reference, manifest digest).
type Offers = Vec<(String, String)>;

pub struct Store {
    archives: PathBuf,
    unpacked: PathBuf,
    /// index.json of each archive, keyed by path and invalidated by size and mtime.
    indexes: Mutex<HashMap<PathBuf, (u64, SystemTime, Offers)>>,
    /// Serialises unpacking: two containers of one image must not unpack it twice at once.
    unpack: Mutex<()>,
}

impl Store {
    pub fn new(archives: PathBuf, unpacked: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&archives)
            .with_context(|| format!("creating {}", archives.display()))?;
        std::fs::create_dir_all(&unpacked)
            .with_context(|| format!("creating {}", unpacked.display()))?;
        Ok(Store {
            archives,
            unpacked,
            indexes: Mutex::new(HashMap::new()),
            unpack: Mutex::new(()),
        })
    }

    pub fn archives_dir(&self) -> &Path {
        &self.archives
    }

    /// The archive and manifest digest providing `image`, if any archive does.
    fn find(&self, image: &str) -> Result<Option<(PathBuf, String)>> {
        let want = normalize(image);
        let want_digest = want.split_once('@').map(|(_, d)| d.to_string());
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&self.archives)
            .with_context(|| format!("reading {}", self.archives.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                name.is_some_and(|n| n.ends_with(".tar") && !n.starts_with('.'))
            })
            .collect();
        // Later loads win when two archives name the same reference: sorted by name, last wins.
        entries.sort();
        let mut found = None;
        for path in entries {
            for (reference, digest) in self.offers(&path)? {
                let hit = match &want_digest {
                    Some(d) => *d == digest && repository(&reference) == repository(&want),
                    None => reference == want,
                };
                if hit {
                    found = Some((path.clone(), digest));
                }
            }
        }
        Ok(found)
    }

    fn offers(&self, archive: &Path) -> Result<Offers> {
        let meta = std::fs::metadata(archive)?;
        let stamp = (meta.len(), meta.modified()?);
        let mut cache = self.indexes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((len, mtime, offers)) = cache.get(archive)
            && (*len, *mtime) == stamp
        {
            return Ok(offers.clone());
        }
        let index: Index = serde_json::from_slice(&tar_member(archive, "index.json")?)
            .with_context(|| format!("{}: index.json", archive.display()))?;
        let mut offers = Vec::new();
        for m in index.manifests {
            for key in [
                "org.opencontainers.image.ref.name",
                "io.containerd.image.name",
            ] {
                // A bare tag in ref.name (the OCI layout convention) names no repository.
                if let Some(r) = m.annotations.get(key).filter(|r| r.contains(|c| c != ':')) {
                    offers.push((normalize(r), m.digest.clone()));
                }
            }
        }
        cache.insert(archive.to_path_buf(), (stamp.0, stamp.1, offers.clone()));
        Ok(offers)
    }

    /// Finds `image` and unpacks it if needed. `Ok(None)`: no archive provides it.
    /// Blocking (tar): call from a blocking context.
    pub fn pull(&self, image: &str) -> Result<Option<OciImage>> {
        let Some((archive, digest)) = self.find(image)? else {
            return Ok(None);
        };
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| anyhow!("unsupported manifest digest {digest}"))?;
        let dir = self.unpacked.join(hex);
        let _guard = self.unpack.lock().unwrap_or_else(|e| e.into_inner());
        if !dir.join("config.json").exists() {
            unpack(&archive, hex, &dir)
                .with_context(|| format!("unpacking {} from {}", digest, archive.display()))?;
        }
        let config: ConfigFile = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
        Ok(Some(image_of(digest, dir.join("rootfs"), config)))
    }
}

fn image_of(digest: String, rootfs: PathBuf, config: ConfigFile) -> OciImage {
    let c = config.config.unwrap_or_default();
    let env = c
        .env
        .unwrap_or_default()
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv, String::new()),
        })
        .collect();
    let mut volumes: Vec<String> = c.volumes.unwrap_or_default().into_keys().collect();
    volumes.sort();
    OciImage {
        digest,
        rootfs,
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        env,
        working_dir: c
            .working_dir
            .filter(|w| !w.is_empty())
            .unwrap_or("/".into()),
        user: c.user.unwrap_or_default(),
        volumes,
    }
}

/// One member of a tar archive, read with the system's tar (no archive crate needed).
fn tar_member(archive: &Path, member: &str) -> Result<Vec<u8>> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(member)
        .output()
        .context("running tar")?;
    if !out.status.success() {
        bail!(
            "{}: cannot read {member}: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| anyhow!("unsupported digest {digest}"))?;
    Ok(layout.join("blobs").join("sha256").join(hex))
}

/// Unpacks the image `manifest_hex` of `archive` into `dir/rootfs` and `dir/config.json`,
/// through a temporary directory renamed into place, so a crash never leaves half an image.
fn unpack(archive: &Path, manifest_hex: &str, dir: &Path) -> Result<()> {
    let tmp = dir.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let layout = tmp.join("layout");
    let rootfs = tmp.join("rootfs");
    std::fs::create_dir_all(&layout)?;
    std::fs::create_dir_all(&rootfs)?;
    run_tar(
        Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(&layout),
    )?;
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(
        layout.join("blobs").join("sha256").join(manifest_hex),
    )?)
    .context("manifest")?;
    for l in &manifest.layers {
        if l.media_type.contains("zstd") {
            bail!(
                "layer {} is zstd-compressed, which this node cannot unpack",
                l.digest
            );
        }
        let blob = blob_path(&layout, &l.digest)?;
        apply_whiteouts(&blob, &rootfs)?;
        // --numeric-owner/--same-owner/-p: files keep the image's owners and modes, as a
        // runtime's snapshotter keeps them (the image's user must be able to run its binary).
        run_tar(
            Command::new("tar")
                .args(["-xf"])
                .arg(&blob)
                .arg("-C")
                .arg(&rootfs)
                .args(["--numeric-owner", "--same-owner", "-p", "--exclude=.wh.*"]),
        )?;
    }
    std::fs::copy(
        blob_path(&layout, &manifest.config.digest)?,
        tmp.join("config.json"),
    )?;
    std::fs::remove_dir_all(&layout)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::rename(&tmp, dir)?;
    Ok(())
}

fn run_tar(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().context("running tar")?;
    if !out.status.success() {
        bail!("tar: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// A layer's whiteouts delete what lower layers put there (`.wh.<name>`), or everything in a
/// directory (`.wh..wh..opq`), before the layer's own files are extracted.
fn apply_whiteouts(layer: &Path, rootfs: &Path) -> Result<()> {
    let out = Command::new("tar")
        .arg("-tf")
        .arg(layer)
        .output()
        .context("running tar")?;
    if !out.status.success() {
        bail!("tar: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    for entry in String::from_utf8_lossy(&out.stdout).lines() {
        let path = Path::new(entry.trim_start_matches("./"));
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let Some(hidden) = name.strip_prefix(".wh.") else {
            continue;
        };
        let parent = path.parent().unwrap_or(Path::new(""));
        if parent
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            bail!("whiteout {entry} escapes the root file system");
        }
        let dir = rootfs.join(parent);
        if hidden == ".wh..opq" {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                remove_any(&e.path())?;
            }
        } else if !hidden.is_empty() && hidden != "." && hidden != ".." {
            remove_any(&dir.join(hidden))?;
        }
    }
    Ok(())
}

fn remove_any(p: &Path) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p)?,
        Ok(_) => std::fs::remove_file(p)?,
        Err(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_like_a_runtime() {
        assert_eq!(
            normalize("redis-operator:latest"),
            "docker.io/library/redis-operator:latest"
        );
        assert_eq!(
            normalize("redis-operator"),
            "docker.io/library/redis-operator:latest"
        );
        assert_eq!(normalize("acme/op:1"), "docker.io/acme/op:1");
        assert_eq!(normalize("localhost:5000/op"), "localhost:5000/op:latest");
        assert_eq!(
            normalize("ghcr.io/acme/op:1@sha256:ab"),
            "ghcr.io/acme/op@sha256:ab"
        );
        assert_eq!(repository("docker.io/library/x:1"), "docker.io/library/x");
        assert_eq!(
            repository("localhost:5000/op@sha256:ab"),
            "localhost:5000/op"
        );
    }

    fn sh(cmd: &str) {
        let ok = Command::new("/bin/sh").args(["-c", cmd]).status().unwrap();
        assert!(ok.success(), "{cmd}");
    }

    /// Writes `data` as a blob of the layout and returns its digest.
    fn blob(layout: &Path, data: &[u8]) -> String {
        let hex = crate::ids::sha256_hex(data);
        std::fs::write(layout.join("blobs/sha256").join(&hex), data).unwrap();
        format!("sha256:{hex}")
    }

    /// An archive of two layers, the second deleting a file of the first (whiteout), named
    /// `example.test/app:1` in index.json: found by reference and by digest, unpacked once.
    #[test]
    fn archives_are_found_by_reference_and_unpacked_with_whiteouts() {
        let dir = std::env::temp_dir().join(format!("oci-test-{}", crate::ids::random_hex("t", 8)));
        let (layout, src) = (dir.join("layout"), dir.join("src"));
        std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
        std::fs::create_dir_all(src.join("l1/etc")).unwrap();
        std::fs::create_dir_all(src.join("l2/etc")).unwrap();
        std::fs::write(src.join("l1/etc/keep"), "k").unwrap();
        std::fs::write(src.join("l1/etc/gone"), "g").unwrap();
        std::fs::write(src.join("l2/etc/.wh.gone"), "").unwrap();
        std::fs::write(src.join("l2/app"), "#!/x").unwrap();
        sh(&format!(
            "cd {0}/l1 && tar -czf {0}/l1.tgz etc && cd {0}/l2 && tar -cf {0}/l2.tar etc app",
            src.display()
        ));
        let l1 = blob(&layout, &std::fs::read(src.join("l1.tgz")).unwrap());
        let l2 = blob(&layout, &std::fs::read(src.join("l2.tar")).unwrap());
        let cfg = blob(
            &layout,
            br#"{"config":{"User":"1000","Entrypoint":["/app"]}}"#,
        );
        let manifest = serde_json::json!({"schemaVersion": 2, "config": {"digest": cfg},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l1},
                       {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l2}]});
        let m = blob(&layout, manifest.to_string().as_bytes());
        let index = serde_json::json!({"manifests": [{"digest": m,
            "annotations": {"org.opencontainers.image.ref.name": "example.test/app:1"}}]});
        std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
        std::fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let store = Store::new(dir.join("archives"), dir.join("unpacked")).unwrap();
        assert_eq!(store.pull("example.test/app:1").unwrap(), None);
        sh(&format!(
            "cd {} && tar -cf {}/app.tar oci-layout index.json blobs",
            layout.display(),
            dir.join("archives").display()
        ));
        let img = store.pull("example.test/app:1").unwrap().unwrap();
        assert_eq!(img.digest, m);
        assert_eq!(
            (img.user.as_str(), img.entrypoint.clone()),
            ("1000", vec!["/app".to_string()])
        );
        assert!(img.rootfs.join("etc/keep").exists());
        assert!(!img.rootfs.join("etc/gone").exists(), "whiteout applied");
        assert!(!img.rootfs.join("etc/.wh.gone").exists());
        assert!(img.rootfs.join("app").exists());
        let by_digest = store
            .pull(&format!("example.test/app@{m}"))
            .unwrap()
            .unwrap();
        assert_eq!(by_digest.rootfs, img.rootfs);
        assert_eq!(store.pull("example.test/app:2").unwrap(), None);
        assert_eq!(store.pull(&format!("other.test/app@{m}")).unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn config_defaults() {
        let cfg: ConfigFile = serde_json::from_str(
            r#"{"config":{"User":"65532:65532","Env":["PATH=/bin","A=b=c"],
                "Entrypoint":["/op"],"Cmd":["run"],"Volumes":{"/data":{}}}}"#,
        )
        .unwrap();
        let img = image_of("sha256:x".into(), "/r".into(), cfg);
        assert_eq!(img.user, "65532:65532");
        assert_eq!(img.working_dir, "/");
        assert_eq!(img.env[1], ("A".to_string(), "b=c".to_string()));
        assert_eq!(img.volumes, vec!["/data".to_string()]);
        assert_eq!(img.entrypoint, vec!["/op".to_string()]);
    }
}

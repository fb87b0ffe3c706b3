//! "Images": which container images this node can run and what they look like inside.
//!
//! There is no container runtime. The official `redis` image is emulated with Debian's
//! redis binaries: a per-agent directory of shims is bind-mounted over `/usr/local/bin`
//! inside each container, so the image's paths (`/usr/local/bin/redis-server`,
//! `docker-entrypoint.sh`) keep working in commands, scripts and exec probes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::cluster;
use super::oci::{OciImage, Store};
use crate::ids::sha256_hex;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the image's config (ENTRYPOINT, CMD, WORKDIR, ENV) would say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub env: Vec<(String, String)>,
    /// Directories the image declares as VOLUME; the runtime gives each container a fresh
    /// anonymous directory there unless the pod mounts something at that path.
    pub anonymous_volumes: Vec<String>,
    /// A real image from an archive (its own root file system and user); None for the
    /// emulated redis image, which runs on the host's file system as root.
    pub oci: Option<OciImage>,
}

/// The reason string and message a kubelet would show for an image it cannot pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullError {
    pub message: String,
}

/// Where this node's images come from: the redis emulation (shims) and OCI archives.
pub struct Images {
    pub shims: PathBuf,
    pub store: Store,
    pub services: cluster::Cache,
}

impl Images {
    /// The redis mapping first, exactly as before archives existed (an archive can never
    /// shadow it); then the archives. Blocking on the first use of an archived image (unpack).
    pub fn resolve(&self, image: &str) -> Result<ImageConfig, PullError> {
        if let Some(img) = resolve_redis(image) {
            return Ok(img);
        }
        match self.store.pull(image) {
            Ok(Some(o)) => Ok(ImageConfig {
                entrypoint: o.entrypoint.clone(),
                cmd: o.cmd.clone(),
                working_dir: o.working_dir.clone(),
                env: o.env.clone(),
                anonymous_volumes: o.volumes.clone(),
                oci: Some(o),
            }),
            Ok(None) => Err(not_available(image, self.store.archives_dir())),
            Err(e) => Err(PullError {
                message: format!("failed to pull and unpack image \"{image}\": {e:#}"),
            }),
        }
    }
}

fn not_available(image: &str, archives: &Path) -> PullError {
    let (_, path) = registry_and_path(image);
    let path = path.to_ascii_lowercase();
    let valkey = if path.ends_with("valkey/valkey") || path == "valkey" {
        "; Debian bookworm has no valkey package"
    } else {
        ""
    };
    PullError {
        message: format!(
            "image \"{image}\" is not available on this node (only redis:* images and the OCI \
             archives in {} run here{valkey})",
            archives.display()
        ),
    }
}

/// `docker.io/library/redis:7.2@sha256:..` → ("docker.io", "library/redis").
fn registry_and_path(image: &str) -> (String, String) {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    let without_tag = match without_digest[last_slash..].find(':') {
        Some(i) => &without_digest[..last_slash + i],
        None => without_digest,
    };
    match without_tag.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), without_tag.to_string()),
    }
}

/// The official redis image, emulated with the host's binaries; None for any other image.
pub fn resolve_redis(image: &str) -> Option<ImageConfig> {
    let (registry, path) = registry_and_path(image);
    let path = path.to_ascii_lowercase();
    let dockerhub = matches!(
        registry.as_str(),
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    );
    let is_redis = (dockerhub && (path == "redis" || path == "library/redis"))
        || path == "docker/library/redis";
    is_redis.then(redis_image)
}

fn redis_image() -> ImageConfig {
    ImageConfig {
        entrypoint: vec!["docker-entrypoint.sh".into()],
        cmd: vec!["redis-server".into()],
        working_dir: "/data".into(),
        env: vec![("PATH".into(), DEFAULT_PATH.into())],
        anonymous_volumes: vec!["/data".into()],
        oci: None,
    }
}

/// Kubernetes' rule for combining the image with `command`/`args`.
pub fn argv(image: &ImageConfig, command: &[String], args: &[String]) -> Vec<String> {
    match (command.is_empty(), args.is_empty()) {
        (false, _) => command.iter().chain(args).cloned().collect(),
        (true, false) => image.entrypoint.iter().chain(args).cloned().collect(),
        (true, true) => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
    }
}

/// An archived image's ID is its repository at the manifest digest, as a runtime reports it.
pub fn oci_image_id(image: &str, digest: &str) -> String {
    let n = super::oci::normalize(image);
    let repo = n.split('@').next().unwrap_or(&n);
    let last_slash = repo.rfind('/').map_or(0, |i| i + 1);
    let repo = match repo[last_slash..].find(':') {
        Some(i) => &repo[..last_slash + i],
        None => repo,
    };
    format!("{repo}@{digest}")
}

/// A stable, non-empty imageID: clients treat it as required and compare it across
/// restarts, so it depends only on the image string.
pub fn image_id(image: &str) -> String {
    let (registry, path) = registry_and_path(image);
    let path = if registry == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    format!("{registry}/{path}@sha256:{}", sha256_hex(image.as_bytes()))
}

/// The official image compiles `protected-mode` to default `no`; Debian's binary defaults
/// to `yes`, which would refuse every client from another pod. The shim adds
/// `--protected-mode no` unless the config file or the arguments set it themselves.
const REDIS_SERVER: &str = r#"#!/bin/sh
# node-agent shim: the official redis image's redis-server, backed by Debian's binary.
add=yes
for a in "$@"; do
  case "$a" in --protected-mode) add= ;; esac
done
if [ -n "$1" ] && [ "${1#-}" = "$1" ] && [ -f "$1" ] && grep -qiE '^[[:space:]]*protected-mode' "$1" 2>/dev/null; then
  add=
fi
if [ -n "$add" ]; then
  set -- "$@" --protected-mode no
fi
exec /usr/bin/redis-server "$@"
"#;

const REDIS_SENTINEL: &str = r#"#!/bin/sh
# node-agent shim: Debian ships no redis-sentinel in redis-server; sentinel mode is a flag.
exec /usr/local/bin/redis-server "$@" --sentinel
"#;

/// The official entrypoint minus the `gosu redis` step (everything runs as root here).
const ENTRYPOINT: &str = r#"#!/bin/sh
set -e
# first arg is `-f` or `--some-option`, or first arg is `something.conf`
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
um="$(umask)"
if [ "$um" = '0022' ]; then
  umask 0077
fi
exec "$@"
"#;

/// `gosu USER CMD...`: scripts written for the image drop privileges this way.
const GOSU: &str = r#"#!/bin/sh
shift
exec "$@"
"#;

/// The official image's `redis` user and group.
pub const REDIS_UID: u32 = 999;

/// The official redis image's /etc/passwd and /etc/group (Debian bookworm-slim plus `redis`),
/// so users and groups resolve as a runtime resolves them in that image.
const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
sync:x:4:65534:sync:/bin:/bin/sync
games:x:5:60:games:/usr/games:/usr/sbin/nologin
man:x:6:12:man:/var/cache/man:/usr/sbin/nologin
lp:x:7:7:lp:/var/spool/lpd:/usr/sbin/nologin
mail:x:8:8:mail:/var/mail:/usr/sbin/nologin
news:x:9:9:news:/var/spool/news:/usr/sbin/nologin
uucp:x:10:10:uucp:/var/spool/uucp:/usr/sbin/nologin
proxy:x:13:13:proxy:/bin:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
backup:x:34:34:backup:/var/backups:/usr/sbin/nologin
list:x:38:38:Mailing List Manager:/var/list:/usr/sbin/nologin
irc:x:39:39:ircd:/run/ircd:/usr/sbin/nologin
_apt:x:42:65534::/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
redis:x:999:999::/home/redis:/bin/sh
";
const GROUP: &str = "root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
news:x:9:
uucp:x:10:
man:x:12:
proxy:x:13:
kmem:x:15:
dialout:x:20:
cdrom:x:24:
sudo:x:27:
audio:x:29:
www-data:x:33:
backup:x:34:
operator:x:37:
list:x:38:
irc:x:39:
src:x:40:
shadow:x:42:
utmp:x:43:
video:x:44:
sasl:x:45:
plugdev:x:46:
staff:x:50:
games:x:60:
users:x:100:
nogroup:x:65534:
redis:x:999:
";

/// The emulated redis image's own files (`etc/passwd`, `etc/group`) beside its shims: what
/// user lookups read instead of the host's.
pub fn redis_root(shims: &Path) -> PathBuf {
    shims.parent().unwrap_or(shims).join("image")
}

/// Writes the shim directory for the redis image and returns its path.
pub fn install_redis_shims(state_dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let bin = state_dir.join("images").join("redis").join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    let scripts = [
        ("redis-server", REDIS_SERVER),
        ("redis-sentinel", REDIS_SENTINEL),
        ("docker-entrypoint.sh", ENTRYPOINT),
        ("gosu", GOSU),
    ];
    for (name, body) in scripts {
        let p = bin.join(name);
        std::fs::write(&p, body).with_context(|| format!("writing {}", p.display()))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    }
    for name in [
        "redis-cli",
        "redis-benchmark",
        "redis-check-aof",
        "redis-check-rdb",
    ] {
        let p = bin.join(name);
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink(Path::new("/usr/bin").join(name), &p)
            .with_context(|| format!("linking {}", p.display()))?;
    }
    let etc = redis_root(&bin).join("etc");
    std::fs::create_dir_all(&etc).with_context(|| format!("creating {}", etc.display()))?;
    for (name, body) in [("passwd", PASSWD), ("group", GROUP)] {
        std::fs::write(etc.join(name), body)
            .with_context(|| format!("writing {}/{name}", etc.display()))?;
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn redis_references_resolve() {
        for ok in [
            "redis",
            "redis:7.2",
            "redis:7.2-alpine",
            "docker.io/library/redis:7",
            "docker.io/redis:7",
            "library/redis:latest",
            "redis@sha256:abc",
            "redis:7.2@sha256:abc",
            "public.ecr.aws/docker/library/redis:7",
        ] {
            assert!(resolve_redis(ok).is_some(), "{ok}");
        }
    }

    #[test]
    fn other_images_fail_clearly() {
        let dir =
            std::env::temp_dir().join(format!("images-test-{}", crate::ids::random_hex("t", 8)));
        let images = Images {
            shims: dir.join("shims"),
            store: Store::new(dir.join("archives"), dir.join("rootfs")).unwrap(),
            services: cluster::Cache::default(),
        };
        let e = images.resolve("nginx:1.25").unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "image \"nginx:1.25\" is not available on this node (only redis:* images and the \
                 OCI archives in {} run here)",
                dir.join("archives").display()
            )
        );
        assert!(images.resolve("bitnami/redis:7").is_err());
        assert!(images.resolve("quay.io/redis:7").is_err());
        let v = images.resolve("valkey/valkey:8.0").unwrap_err();
        assert!(v.message.contains("valkey package"), "{}", v.message);
        assert!(images.resolve("redis:7.2").is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn archived_image_ids_name_the_manifest() {
        assert_eq!(
            oci_image_id("redis-operator:latest", "sha256:ab"),
            "docker.io/library/redis-operator@sha256:ab"
        );
        assert_eq!(
            oci_image_id("localhost:5000/op:1@sha256:cd", "sha256:cd"),
            "localhost:5000/op@sha256:cd"
        );
    }

    #[test]
    fn command_and_args_follow_kubernetes_rules() {
        let img = redis_image();
        assert_eq!(
            argv(&img, &[], &[]),
            s(&["docker-entrypoint.sh", "redis-server"])
        );
        assert_eq!(
            argv(&img, &[], &s(&["redis-server", "/etc/redis.conf"])),
            s(&["docker-entrypoint.sh", "redis-server", "/etc/redis.conf"])
        );
        assert_eq!(
            argv(&img, &s(&["sh", "-c"]), &s(&["echo hi"])),
            s(&["sh", "-c", "echo hi"])
        );
        assert_eq!(argv(&img, &s(&["redis-server"]), &[]), s(&["redis-server"]));
    }

    #[test]
    fn image_id_is_stable_and_digest_shaped() {
        let a = image_id("redis:7.2");
        assert!(a.starts_with("docker.io/library/redis@sha256:"), "{a}");
        assert_eq!(a.len(), "docker.io/library/redis@sha256:".len() + 64);
        assert_eq!(a, image_id("redis:7.2"));
        assert_ne!(a, image_id("redis:7.0"));
    }

    #[test]
    fn shims_are_installed() {
        let dir =
            std::env::temp_dir().join(format!("shim-test-{}", crate::ids::random_hex("t", 8)));
        let bin = install_redis_shims(&dir).unwrap();
        assert!(bin.join("redis-server").exists());
        assert!(bin.join("docker-entrypoint.sh").exists());
        // Installing twice (agent restart) must work.
        install_redis_shims(&dir).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}

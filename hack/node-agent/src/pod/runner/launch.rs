//! How a container is launched: the setup script run in its fresh mount namespace, the
//! runtime's own bind mounts (shims, /tmp, /etc files, anonymous volumes) and, for
//! host-image containers, the identity `enter-rootfs` takes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Container;

use super::worker::Worker;
use crate::pod::image;
use crate::pod::rootfs;
use crate::pod::volumes::Bind;

/// Single-quotes for sh.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The shell prologue that runs inside the container's fresh mount namespace: bind every
/// mount (parents first), set the hostname, enter the working directory, exec the command.
pub(super) fn setup_script(binds: &[Bind], hostname: &str, workdir: &str) -> String {
    let mut s = String::from("set -e\n");
    s.push_str(&rootfs::bind_lines(binds, ""));
    s.push_str(&format!("/bin/hostname {}\n", sq(hostname)));
    s.push_str(&format!("/bin/mkdir -p {wd}\ncd {wd}\n", wd = sq(workdir)));
    s.push_str("exec \"$@\"\n");
    s
}

/// Mount points a read-only root leaves writable: the container's writable volumes and the
/// image's anonymous ones, not the runtime's own /tmp, /etc/redis mask and /etc files (part
/// of the image's root in a real container) unless the pod mounts something there.
fn writable_volumes(spec: &Container, binds: &[Bind]) -> Vec<String> {
    const RUNTIME_ONLY: [&str; 5] = [
        "/tmp",
        "/etc/redis",
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
    ];
    let mounted = |t: &str| {
        spec.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path.trim_end_matches('/') == t)
    };
    let mut out: Vec<String> = Vec::new();
    for b in binds.iter().filter(|b| !b.read_only) {
        let t = b.target.trim_end_matches('/').to_string();
        if (!RUNTIME_ONLY.contains(&t.as_str()) || mounted(&t)) && !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

impl Worker {
    /// A host-image container's identity (the emulated image's passwd and group), its argv and
    /// HOME. Plain root runs the command directly, as ever; anything else goes through
    /// `enter-rootfs` without a root of its own: credentials, capabilities, `no_new_privs`
    /// and a read-only view of the host's file system in the container's namespace.
    pub(super) fn host_launch(
        &self,
        spec: &Container,
        binds: &[Bind],
        workdir: &str,
        argv: Vec<String>,
    ) -> Result<(Vec<String>, rootfs::Identity, String), String> {
        let image_root = image::redis_root(&self.node.images.shims);
        let id = rootfs::identity(&self.pod, spec, "", &image_root)?;
        let home = rootfs::home(&image_root, id.uid);
        if id.is_plain_root() {
            return Ok((argv, id, home));
        }
        let agent = rootfs::agent_binary().map_err(|e| format!("locating node-agent: {e}"))?;
        let mut v = vec![
            agent.to_string_lossy().into_owned(),
            "enter-rootfs".into(),
            "--workdir".into(),
            workdir.to_string(),
        ];
        if id.read_only_root {
            v.push("--read-only-root".into());
            for t in writable_volumes(spec, binds) {
                v.extend(["--keep-rw".into(), t]);
            }
        }
        v.extend(id.enter_flags());
        v.push("--".into());
        v.extend(argv);
        Ok((v, id, home))
    }

    /// What the image and runtime put into every container besides the pod's volumes.
    pub(super) fn runtime_binds(
        &self,
        ctr_dir: &Path,
        img: &image::ImageConfig,
        user: &[Bind],
        resolv: Option<&str>,
    ) -> std::io::Result<Vec<Bind>> {
        let mut out = Vec::new();
        if img.oci.is_none() {
            out.push(Bind {
                source: self.node.images.shims.clone(),
                target: "/usr/local/bin".into(),
                read_only: true,
            });
        }
        // Fresh per instance, like a container's writable layer.
        let fresh = |sub: &str| -> std::io::Result<PathBuf> {
            let p = ctr_dir.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p)?;
            }
            std::fs::create_dir_all(&p)?;
            Ok(p)
        };
        if img.oci.is_none() {
            // The host's Debian config must not leak into the "image".
            out.push(Bind {
                source: fresh("etc-redis")?,
                target: "/etc/redis".into(),
                read_only: false,
            });
            // The image's /tmp is world-writable and sticky, for whatever user runs.
            let tmp = fresh("tmp")?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))?;
            out.push(Bind {
                source: tmp,
                target: "/tmp".into(),
                read_only: false,
            });
        }
        for v in &img.anonymous_volumes {
            if !user.iter().any(|b| b.target.trim_end_matches('/') == v) {
                let dir = fresh(&format!("anon{}", v.replace('/', "-")))?;
                if img.oci.is_none() {
                    // The official image's /data belongs to its redis user, as a runtime copies
                    // it into the anonymous volume.
                    std::os::unix::fs::chown(&dir, Some(image::REDIS_UID), Some(image::REDIS_UID))?;
                }
                out.push(Bind {
                    source: dir,
                    target: v.clone(),
                    read_only: false,
                });
            }
        }
        out.extend(self.etc_binds(img.oci.is_some(), user, resolv)?);
        Ok(out)
    }

    /// The pod's /etc/hosts, /etc/hostname and /etc/resolv.conf, unless the container mounts
    /// something of its own there. `oci`: the container has an image root of its own.
    fn etc_binds(
        &self,
        oci: bool,
        user: &[Bind],
        resolv: Option<&str>,
    ) -> std::io::Result<Vec<Bind>> {
        let mut out = Vec::new();
        // ClusterFirst with a cluster DNS: the kubelet's resolv.conf. Otherwise the node's, which
        // the redis emulation sees anyway and an image's root does not have.
        let resolv_file = self.dir.join("etc-resolv.conf");
        match resolv {
            Some(text) => std::fs::write(&resolv_file, text)?,
            None if oci => {
                std::fs::copy("/etc/resolv.conf", &resolv_file)?;
            }
            None => {
                let _ = std::fs::remove_file(&resolv_file);
            }
        }
        for (file, target) in [
            ("etc-hosts", "/etc/hosts"),
            ("etc-hostname", "/etc/hostname"),
            ("etc-resolv.conf", "/etc/resolv.conf"),
        ] {
            let p = self.dir.join(file);
            if p.exists() && !user.iter().any(|b| b.target == target) {
                out.push(Bind {
                    source: p,
                    target: target.into(),
                    read_only: false,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(sq("a'b"), "'a'\\''b'");
    }

    #[test]
    fn read_only_root_keeps_volumes_not_runtime_files() {
        let bind = |source: &str, target: &str, read_only| Bind {
            source: source.into(),
            target: target.into(),
            read_only,
        };
        let binds = [
            bind("/shims", "/usr/local/bin", true),
            bind("/c/etc-redis", "/etc/redis", false),
            bind("/c/tmp", "/tmp", false),
            bind("/p/etc-hosts", "/etc/hosts", false),
            bind("/v/conf", "/etc/redis", true),
            bind("/v/data", "/data/", false),
            bind("/v/run", "/run/redis", false),
            bind("/v/scratch", "/tmp", false),
        ];
        let spec: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "volumeMounts": [
                {"name": "conf", "mountPath": "/etc/redis", "readOnly": true},
                {"name": "data", "mountPath": "/data"},
                {"name": "run", "mountPath": "/run/redis"},
                {"name": "scratch", "mountPath": "/tmp"}
            ]
        }))
        .unwrap();
        // /etc/redis: the configMap on top is read-only anyway; /tmp is the pod's emptyDir.
        assert_eq!(
            writable_volumes(&spec, &binds),
            ["/etc/redis", "/tmp", "/data", "/run/redis"]
        );
        let bare = Container::default();
        assert_eq!(writable_volumes(&bare, &binds[..4]), Vec::<String>::new());
    }

    #[test]
    fn setup_script_mounts_then_execs() {
        let s = setup_script(
            &[Bind {
                source: "/x y".into(),
                target: "/etc/redis".into(),
                read_only: true,
            }],
            "redis-0",
            "/data",
        );
        assert!(s.contains("b '/x y' '/etc/redis' ro\n"));
        assert!(s.ends_with("exec \"$@\"\n"));
        assert!(s.contains("/bin/hostname 'redis-0'"));
    }
}

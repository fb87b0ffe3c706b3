//! Containers of OCI images: their own root file system, user and security context.
//!
//! The container's fresh mount namespace gets an overlay of the unpacked image (lower, shared
//! and never written) and a per-instance upper directory, the pseudo file systems a runtime
//! mounts (/proc, /dev, /sys), and the pod's volumes under it. `node-agent enter-rootfs` then
//! pivots into it, drops to the container's user and execs the entrypoint, so the process the
//! agent supervises really is the image's binary, running as that user.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::caps;
use super::oci::OciImage;
use super::volumes::Bind;

/// Who the container's process runs as, after image config and securityContext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub read_only_root: bool,
    pub no_new_privs: bool,
    /// `securityContext.capabilities` resolved (see `caps`); `None`: left as they are.
    pub caps: Option<u64>,
}

impl Identity {
    /// What every container got before security contexts were honoured: root with all
    /// capabilities and nothing else. Host-image containers like this start as they always did.
    pub fn is_plain_root(&self) -> bool {
        self.uid == 0
            && self.gid == 0
            && self.groups.iter().all(|g| *g == 0)
            && !self.read_only_root
            && !self.no_new_privs
            && self.caps.is_none()
    }

    /// The credential flags of `enter-rootfs`.
    pub fn enter_flags(&self) -> Vec<String> {
        let groups: Vec<String> = self.groups.iter().map(u32::to_string).collect();
        let mut v = vec![
            "--uid".into(),
            self.uid.to_string(),
            "--gid".into(),
            self.gid.to_string(),
            "--groups".into(),
            groups.join(","),
        ];
        if let Some(c) = self.caps {
            v.extend(["--caps".into(), c.to_string()]);
        }
        if self.no_new_privs {
            v.push("--no-new-privs".into());
        }
        v
    }
}

/// `name:x:uid:gid:...` lines of the image's /etc/passwd → (name, uid, gid).
fn passwd(rootfs: &Path) -> Vec<(String, u32, u32)> {
    let text = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((
                f.first()?.to_string(),
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
            ))
        })
        .collect()
}

/// HOME for a user, from the image's /etc/passwd ("/" when it has none), as runtimes set it.
pub fn home(rootfs: &Path, uid: u32) -> String {
    let text = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.get(2).and_then(|u| u.parse::<u32>().ok()) == Some(uid))
        .and_then(|f| f.get(5).map(|h| h.to_string()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into())
}

/// `name:x:gid:member,member` lines of the image's /etc/group → (name, gid, members).
fn groups(rootfs: &Path) -> Vec<(String, u32, Vec<String>)> {
    let text = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?, members))
        })
        .collect()
}

/// The kubelet's pod reference in messages: `name_namespace(uid)`.
fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// The securityContext fields that decide the user: the container's over the pod's.
struct Requested {
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
    non_root: bool,
}

fn requested(pod: &Pod, c: &Container) -> Requested {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let csc = c.security_context.as_ref();
    Requested {
        run_as_user: csc
            .and_then(|s| s.run_as_user)
            .or(psc.and_then(|s| s.run_as_user)),
        run_as_group: csc
            .and_then(|s| s.run_as_group)
            .or(psc.and_then(|s| s.run_as_group)),
        non_root: csc
            .and_then(|s| s.run_as_non_root)
            .or(psc.and_then(|s| s.run_as_non_root))
            .unwrap_or(false),
    }
}

fn to_u32(v: i64, what: &str) -> Result<u32, String> {
    u32::try_from(v).map_err(|_| format!("invalid {what} {v}"))
}

/// The uid, and the user's name in the image if it has one.
fn resolve_uid(
    req: &Requested,
    user_part: &str,
    users: &[(String, u32, u32)],
    refuse: impl Fn(String) -> String,
) -> Result<(u32, Option<String>), String> {
    let name_of = |uid: u32| users.iter().find(|e| e.1 == uid).map(|e| e.0.clone());
    if let Some(u) = req.run_as_user {
        let uid = to_u32(u, "runAsUser")?;
        return Ok((uid, name_of(uid)));
    }
    if user_part.is_empty() {
        return Ok((0, Some("root".into())));
    }
    if let Ok(uid) = user_part.parse::<u32>() {
        return Ok((uid, name_of(uid)));
    }
    if req.non_root {
        return Err(refuse(format!(
            "image has non-numeric user ({user_part}), cannot verify user is non-root"
        )));
    }
    let e = users.iter().find(|e| e.0 == user_part).ok_or_else(|| {
        format!("unable to find user {user_part}: no matching entries in passwd file")
    })?;
    Ok((e.1, Some(e.0.clone())))
}

/// The user a container runs as: securityContext (container, then pod) over the image's `User`,
/// names looked up in the image's own /etc/passwd and /etc/group, as a runtime does. An error
/// is the kubelet's CreateContainerConfigError message.
pub fn identity(
    pod: &Pod,
    c: &Container,
    image_user: &str,
    rootfs: &Path,
) -> Result<Identity, String> {
    let req = requested(pod, c);
    let users = passwd(rootfs);
    let (user_part, group_part) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    let refuse = |why: String| {
        format!(
            "container has runAsNonRoot and {why} (pod: \"{}\", container: {})",
            pod_ref(pod),
            c.name
        )
    };
    let (uid, name) = resolve_uid(&req, user_part, &users, refuse)?;
    if req.non_root && uid == 0 {
        return Err(refuse("image will run as root".into()));
    }
    let all_groups = groups(rootfs);
    let primary = users.iter().find(|e| e.1 == uid).map_or(0, |e| e.2);
    // runAsUser replaces the image's whole `User`, its group part included.
    let gid = match (
        req.run_as_group,
        group_part.filter(|_| req.run_as_user.is_none()),
    ) {
        (Some(g), _) => to_u32(g, "runAsGroup")?,
        (None, Some(g)) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => all_groups
                .iter()
                .find(|e| e.0 == g)
                .map(|e| e.1)
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        },
        (None, None) => primary,
    };
    let mut extra: Vec<u32> = all_groups
        .iter()
        .filter(|e| name.as_ref().is_some_and(|n| e.2.contains(n)))
        .map(|e| e.1)
        .collect();
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    if let Some(p) = psc {
        for g in p.supplemental_groups.iter().flatten().chain(&p.fs_group) {
            extra.push(to_u32(*g, "supplemental group")?);
        }
    }
    extra.retain(|g| *g != gid);
    extra.sort_unstable();
    extra.dedup();
    let csc = c.security_context.as_ref();
    Ok(Identity {
        uid,
        gid,
        groups: std::iter::once(gid).chain(extra).collect(),
        read_only_root: csc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        no_new_privs: csc
            .and_then(|s| s.allow_privilege_escalation)
            .is_some_and(|a| !a),
        caps: caps::requested(c)?,
    })
}

/// Single-quotes for sh.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The shell function `b SOURCE TARGET ro|rw` and one call per bind, parents first: a
/// missing target is created (a directory, or an empty file for a file), then bound, then
/// made read-only if asked. `prefix` goes before each target (the image root, or nothing).
pub fn bind_lines(binds: &[Bind], prefix: &str) -> String {
    let mut s = String::from(
        "b() {\n\
         \x20 if [ -d \"$1\" ]; then /bin/mkdir -p \"$2\"; elif [ ! -e \"$2\" ]; then /bin/mkdir -p \"$(/usr/bin/dirname \"$2\")\"; : > \"$2\"; fi\n\
         \x20 /bin/mount --bind \"$1\" \"$2\"\n\
         \x20 if [ \"$3\" = ro ]; then /bin/mount -o remount,bind,ro \"$2\"; fi\n\
         }\n",
    );
    for b in binds {
        s.push_str(&format!(
            "b {} {prefix}{} {}\n",
            sq(&b.source.to_string_lossy()),
            sq(&b.target),
            if b.read_only { "ro" } else { "rw" }
        ));
    }
    s
}

/// Where one container instance's file system lives on the host.
pub struct Layers {
    pub lower: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub root: PathBuf,
}

/// Device nodes a runtime gives every container (bound from the host's).
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// The shell prologue, run in the container's fresh mount namespace with host binaries: the
/// overlay root, pseudo file systems, the pod's binds under the root, the hostname; then the
/// root is made read-only if asked (after the mount points exist, as runc does) and
/// `enter` (argv[0..]) pivots into it.
pub fn setup_script(
    l: &Layers,
    binds: &[Bind],
    hostname: &str,
    workdir: &str,
    read_only: bool,
) -> String {
    let r = sq(&l.root.to_string_lossy());
    let mut s = format!(
        "set -e\nR={r}\n\
         /bin/mount -t overlay overlay -o {} \"$R\"\n",
        sq(&format!(
            "lowerdir={},upperdir={},workdir={}",
            l.lower.display(),
            l.upper.display(),
            l.work.display()
        ))
    );
    s.push_str(
        "/bin/mkdir -p \"$R/proc\" \"$R/dev\" \"$R/sys\"\n\
         /bin/mount -t proc -o nosuid,nodev,noexec proc \"$R/proc\"\n\
         /bin/mount -t tmpfs -o nosuid,mode=755,size=65536k tmpfs \"$R/dev\"\n",
    );
    for d in DEVICES {
        s.push_str(&format!(
            ": > \"$R/dev/{d}\"; /bin/mount --bind /dev/{d} \"$R/dev/{d}\"\n"
        ));
    }
    s.push_str(
        "/bin/mkdir -p \"$R/dev/shm\" \"$R/dev/pts\"\n\
         /bin/mount -t tmpfs -o nosuid,nodev,noexec,mode=1777,size=65536k shm \"$R/dev/shm\"\n\
         /bin/ln -s /proc/self/fd \"$R/dev/fd\"\n\
         /bin/ln -s /proc/self/fd/0 \"$R/dev/stdin\"\n\
         /bin/ln -s /proc/self/fd/1 \"$R/dev/stdout\"\n\
         /bin/ln -s /proc/self/fd/2 \"$R/dev/stderr\"\n\
         /bin/mount -t sysfs -o ro,nosuid,nodev,noexec sysfs \"$R/sys\" 2>/dev/null || true\n",
    );
    s.push_str(&bind_lines(binds, "\"$R\""));
    s.push_str(&format!("/bin/hostname {}\n", sq(hostname)));
    // A runtime creates a missing working directory, before the root turns read-only.
    s.push_str(&format!("/bin/mkdir -p \"$R\"{}\n", sq(workdir)));
    if read_only {
        s.push_str("/bin/mount -o remount,bind,ro \"$R\"\n");
    }
    s.push_str("exec \"$@\"\n");
    s
}

/// The setup script and argv of an OCI image container: a fresh overlay (upper, work, mount
/// point) per instance, like a container's writable layer, then `enter-rootfs`.
pub fn launch(
    ctr_dir: &Path,
    oci: &OciImage,
    binds: &[Bind],
    hostname: &str,
    workdir: &str,
    id: &Identity,
    argv: &[String],
) -> Result<(String, Vec<String>), String> {
    let fresh = |sub: &str| -> Result<PathBuf, String> {
        let p = ctr_dir.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p).map_err(|e| format!("removing {}: {e}", p.display()))?;
        }
        std::fs::create_dir_all(&p).map_err(|e| format!("creating {}: {e}", p.display()))?;
        Ok(p)
    };
    let layers = Layers {
        lower: oci.rootfs.clone(),
        upper: fresh("upper")?,
        work: fresh("work")?,
        root: fresh("rootfs")?,
    };
    let agent = agent_binary().map_err(|e| format!("locating node-agent: {e}"))?;
    let script = setup_script(&layers, binds, hostname, workdir, id.read_only_root);
    Ok((script, enter_argv(&agent, &layers.root, workdir, id, argv)))
}

/// The argv that enters the root and execs the container's command as its user.
pub fn enter_argv(
    agent: &Path,
    root: &Path,
    workdir: &str,
    id: &Identity,
    argv: &[String],
) -> Vec<String> {
    let mut v = vec![
        agent.to_string_lossy().into_owned(),
        "enter-rootfs".into(),
        "--root".into(),
        root.to_string_lossy().into_owned(),
        "--workdir".into(),
        workdir.to_string(),
    ];
    v.extend(id.enter_flags());
    v.push("--".into());
    v.extend(argv.iter().cloned());
    v
}

/// The agent binary, to run `enter-rootfs` in the container's namespaces. A rebuilt agent
/// replaced the file under a running one: the kernel then names the old inode "(deleted)".
pub fn agent_binary() -> std::io::Result<PathBuf> {
    let p = std::env::current_exe()?;
    let s = p.to_string_lossy();
    Ok(match s.strip_suffix(" (deleted)") {
        Some(live) => PathBuf::from(live),
        None => p,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSecurityContext, PodSpec, SecurityContext};

    fn rootfs() -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("rootfs-test-{}", crate::ids::random_hex("t", 8)));
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::write(
            d.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nnonroot:x:65532:65532::/home:/sbin/nologin\napp:x:1000:1001::/:/x\n",
        )
        .unwrap();
        std::fs::write(
            d.join("etc/group"),
            "root:x:0:\nnonroot:x:65532:\napp:x:1001:\nextra:x:2000:app\n",
        )
        .unwrap();
        d
    }

    fn pod(psc: Option<PodSecurityContext>) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                security_context: psc,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ctr(sc: Option<SecurityContext>) -> Container {
        Container {
            name: "c".into(),
            security_context: sc,
            ..Default::default()
        }
    }

    #[test]
    fn image_user_and_security_context() {
        let r = rootfs();
        let id = identity(&pod(None), &ctr(None), "65532:65532", &r).unwrap();
        assert_eq!(
            (id.uid, id.gid, id.groups.clone()),
            (65532, 65532, vec![65532])
        );
        let id = identity(&pod(None), &ctr(None), "app", &r).unwrap();
        assert_eq!(
            (id.uid, id.gid, id.groups.clone()),
            (1000, 1001, vec![1001, 2000])
        );
        let id = identity(&pod(None), &ctr(None), "", &r).unwrap();
        assert_eq!((id.uid, id.gid), (0, 0));
        // runAsUser replaces the image's user and group; the group comes from passwd.
        let sc = SecurityContext {
            run_as_user: Some(1000),
            read_only_root_filesystem: Some(true),
            ..Default::default()
        };
        let id = identity(&pod(None), &ctr(Some(sc)), "65532:65532", &r).unwrap();
        assert_eq!((id.uid, id.gid, id.read_only_root), (1000, 1001, true));
        let psc = PodSecurityContext {
            run_as_user: Some(4242),
            run_as_group: Some(4343),
            supplemental_groups: Some(vec![7]),
            fs_group: Some(8),
            ..Default::default()
        };
        let id = identity(&pod(Some(psc)), &ctr(None), "", &r).unwrap();
        assert_eq!(
            (id.uid, id.gid, id.groups.clone()),
            (4242, 4343, vec![4343, 7, 8])
        );
        std::fs::remove_dir_all(r).unwrap();
    }

    #[test]
    fn run_as_non_root_is_enforced_like_the_kubelet() {
        let r = rootfs();
        let sc = SecurityContext {
            run_as_non_root: Some(true),
            ..Default::default()
        };
        let e = identity(&pod(None), &ctr(Some(sc.clone())), "", &r).unwrap_err();
        assert!(
            e.starts_with("container has runAsNonRoot and image will run as root"),
            "{e}"
        );
        let e = identity(&pod(None), &ctr(Some(sc.clone())), "nonroot", &r).unwrap_err();
        assert!(e.contains("non-numeric user (nonroot)"), "{e}");
        assert!(identity(&pod(None), &ctr(Some(sc)), "65532", &r).is_ok());
        std::fs::remove_dir_all(r).unwrap();
    }

    /// The emulated redis image (host binaries): its user is root, its passwd the official
    /// image's.
    fn redis_image() -> PathBuf {
        let d = std::env::temp_dir().join(format!("redis-img-{}", crate::ids::random_hex("t", 8)));
        let shims = crate::pod::image::install_redis_shims(&d).unwrap();
        crate::pod::image::redis_root(&shims)
    }

    #[test]
    fn host_image_identity_follows_the_official_image() {
        let r = redis_image();
        let plain = identity(&pod(None), &ctr(None), "", &r).unwrap();
        assert!(plain.is_plain_root(), "{plain:?}");
        assert_eq!(home(&r, 0), "/root");
        // runAsUser alone: the image's primary group of that uid (redis 999), else 0.
        let only_user = |u: i64| PodSecurityContext {
            run_as_user: Some(u),
            ..Default::default()
        };
        let id = identity(&pod(Some(only_user(999))), &ctr(None), "", &r).unwrap();
        assert_eq!((id.uid, id.gid, id.groups.clone()), (999, 999, vec![999]));
        assert_eq!(home(&r, 999), "/home/redis");
        let id = identity(&pod(Some(only_user(1234))), &ctr(None), "", &r).unwrap();
        assert_eq!((id.uid, id.gid), (1234, 0));
        // The restricted profile the operator's members use.
        let psc = PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(999),
            run_as_group: Some(999),
            fs_group: Some(999),
            ..Default::default()
        };
        let sc: SecurityContext = serde_json::from_value(serde_json::json!({
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": true
        }))
        .unwrap();
        let id = identity(&pod(Some(psc)), &ctr(Some(sc)), "", &r).unwrap();
        assert_eq!(
            id,
            Identity {
                uid: 999,
                gid: 999,
                groups: vec![999],
                read_only_root: true,
                no_new_privs: true,
                caps: Some(0),
            }
        );
        assert!(!id.is_plain_root());
        let flags = id.enter_flags().join(" ");
        assert_eq!(
            flags,
            "--uid 999 --gid 999 --groups 999 --caps 0 --no-new-privs"
        );
        // The container's runAsUser wins over the pod's; runAsNonRoot with root is refused.
        let c = SecurityContext {
            run_as_user: Some(0),
            ..Default::default()
        };
        let nonroot = PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(999),
            ..Default::default()
        };
        let e = identity(&pod(Some(nonroot)), &ctr(Some(c)), "", &r).unwrap_err();
        assert_eq!(
            e,
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u)\", container: c)"
        );
        std::fs::remove_dir_all(r.parent().unwrap().parent().unwrap()).unwrap();
    }

    #[test]
    fn script_mounts_under_the_root_then_enters() {
        let l = Layers {
            lower: "/img".into(),
            upper: "/c/upper".into(),
            work: "/c/work".into(),
            root: "/c/root".into(),
        };
        let b = Bind {
            source: "/v/tok".into(),
            target: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
            read_only: true,
        };
        let s = setup_script(&l, &[b], "op-0", "/", true);
        assert!(
            s.contains("lowerdir=/img,upperdir=/c/upper,workdir=/c/work"),
            "{s}"
        );
        assert!(
            s.contains("b '/v/tok' \"$R\"'/var/run/secrets/kubernetes.io/serviceaccount' ro\n"),
            "{s}"
        );
        let ro = s.find("remount,bind,ro \"$R\"\n").unwrap();
        assert!(ro > s.find("b '/v/tok'").unwrap());
        assert!(s.ends_with("exec \"$@\"\n"));
    }
}

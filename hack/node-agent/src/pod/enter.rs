//! `node-agent enter-rootfs`, the last step before a container's command (and before each of
//! its exec probes and hooks): what a runtime's init does between the namespaces and `execve`.
//!
//! It runs single-threaded, so the per-thread credential and namespace calls below change the
//! whole process before exec. In order:
//! - `--join PID`: enter that container's network, UTS and mount namespaces (exec probes,
//!   hooks); the mount namespace brings its root with it;
//! - `--root DIR`: pivot into an OCI image's root and detach the host's;
//! - `--read-only-root`: remount every mount of the namespace read-only except the container's
//!   writable volumes (`--keep-rw`) and /proc, /dev, /sys (host-image containers, whose root is
//!   the host's file system, seen through this private namespace only);
//! - groups, gid, the capability set (`--caps`), uid, `no_new_privs`;
//! - the working directory, then exec on the container's `PATH`.

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use rustix::process::{Gid, Uid};

use super::caps;
use crate::cli::EnterArgs;

pub fn enter(args: &EnterArgs) -> ExitCode {
    match enter_inner(args) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("node-agent enter-rootfs: {e}");
            // 127/126 would read as "command not found"; the runtime's own failures are 128.
            ExitCode::from(128)
        }
    }
}

enum Never {}

fn io(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

fn enter_inner(a: &EnterArgs) -> Result<Never, String> {
    if let Some(pid) = a.join {
        join(pid)?;
    }
    if let Some(root) = &a.root {
        // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves only
        // the image.
        rustix::process::chdir(root).map_err(|e| io("chdir to the root", e))?;
        rustix::process::pivot_root(".", ".").map_err(|e| io("pivot_root", e))?;
        rustix::mount::unmount(".", rustix::mount::UnmountFlags::DETACH)
            .map_err(|e| io("detaching the old root", e))?;
        rustix::process::chdir("/").map_err(|e| io("chdir /", e))?;
    }
    if a.read_only_root {
        read_only_root(&a.keep_rw)?;
    }
    set_credentials(a)?;
    // The working directory may not exist in the image; a runtime creates it (as root, before
    // dropping privileges), but on a read-only root it must already be there.
    if rustix::process::chdir(a.workdir.as_str()).is_err() {
        return Err(format!(
            "chdir to working directory {:?}: not found or not accessible",
            a.workdir
        ));
    }
    let Some((prog, rest)) = a.argv.split_first() else {
        return Err("no command".into());
    };
    // exec only returns on failure; PATH lookup uses the container's PATH inside its root.
    let err = std::process::Command::new(prog).args(rest).exec();
    Err(format!("exec {prog:?}: {err}"))
}

/// The namespaces of a running container, mount last (it changes root and cwd).
fn join(pid: i32) -> Result<(), String> {
    use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
    for (ns, ty) in [
        ("net", LinkNameSpaceType::Network),
        ("uts", LinkNameSpaceType::HostNameAndNISDomainName),
        ("mnt", LinkNameSpaceType::Mount),
    ] {
        let path = format!("/proc/{pid}/ns/{ns}");
        let f = std::fs::File::open(&path).map_err(|e| io(&path, e))?;
        move_into_link_name_space(std::os::fd::AsFd::as_fd(&f), Some(ty))
            .map_err(|e| io(&format!("setns {path}"), e))?;
    }
    Ok(())
}

fn set_credentials(a: &EnterArgs) -> Result<(), String> {
    let groups: Vec<Gid> = a
        .groups
        .split(',')
        .filter(|g| !g.is_empty())
        .map(|g| {
            g.parse::<u32>()
                .map(Gid::from_raw)
                .map_err(|e| format!("group {g}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    rustix::thread::set_thread_groups(&groups).map_err(|e| io("setgroups", e))?;
    let gid = Gid::from_raw(a.gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(|e| io("setresgid", e))?;
    if let Some(set) = a.caps {
        caps::apply(set)?;
    }
    // Dropping uid 0 also clears the permitted and effective sets (no keep-caps), as for a
    // non-root container.
    let uid = Uid::from_raw(a.uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(|e| io("setresuid", e))?;
    if a.no_new_privs {
        rustix::thread::set_no_new_privs(true).map_err(|e| io("no_new_privs", e))?;
    }
    Ok(())
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points to make read-only: all of the namespace's but the kept (writable volume)
/// ones and the runtime's pseudo file systems, which stay as a runtime leaves them.
pub fn read_only_targets(mountinfo: &str, keep: &[String]) -> Vec<String> {
    let pseudo = |p: &str| {
        ["/proc", "/dev", "/sys"]
            .iter()
            .any(|d| p == *d || p.starts_with(&format!("{d}/")))
    };
    let mut out: Vec<String> = Vec::new();
    for line in mountinfo.lines() {
        let Some(mp) = line.split(' ').nth(4).map(unescape) else {
            continue;
        };
        if pseudo(&mp) || keep.iter().any(|k| k.trim_end_matches('/') == mp) || out.contains(&mp) {
            continue;
        }
        out.push(mp);
    }
    out
}

/// Bind-remounts the namespace's mounts read-only, keeping each one's other flags (a remount
/// replaces them all). Only this private namespace sees it. The root must succeed; another
/// mount that refuses (a stale or special file system) is reported and left.
fn read_only_root(keep: &[String]) -> Result<(), String> {
    use rustix::mount::MountFlags;
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| io("reading /proc/self/mountinfo", e))?;
    let mut refused = Vec::new();
    for mp in read_only_targets(&info, keep) {
        let flags = rustix::fs::statvfs(mp.as_str())
            .map(|s| MountFlags::from_bits_retain(s.f_flag.bits() as _))
            .unwrap_or(MountFlags::empty());
        let keep_flags = flags
            & (MountFlags::NOSUID
                | MountFlags::NODEV
                | MountFlags::NOEXEC
                | MountFlags::NOATIME
                | MountFlags::NODIRATIME
                | MountFlags::RELATIME
                | MountFlags::SYNCHRONOUS);
        let r = rustix::mount::mount_remount(
            mp.as_str(),
            MountFlags::BIND | MountFlags::RDONLY | keep_flags,
            "",
        );
        match r {
            Ok(()) => {}
            Err(e) if mp == "/" => return Err(io("remounting / read-only", e)),
            Err(e) => refused.push(format!("{mp} ({e})")),
        }
    }
    if !refused.is_empty() {
        eprintln!(
            "node-agent enter-rootfs: left writable (remount refused): {}",
            refused.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_spares_volumes_and_pseudo_file_systems() {
        let info = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:5 / /dev rw,nosuid - devtmpfs udev rw
24 23 0:6 / /dev/shm rw - tmpfs tmpfs rw
25 22 0:7 / /proc rw - proc proc rw
26 22 0:8 / /run rw - tmpfs tmpfs rw
27 22 8:1 /state/v/data /data rw - ext4 /dev/sda1 rw
28 22 8:1 /state/v/cfg /etc/redis ro - ext4 /dev/sda1 rw
29 22 8:1 /state/v/a\\040b /my\\040dir rw - ext4 /dev/sda1 rw
30 22 8:1 /state/tmp /tmp rw - ext4 /dev/sda1 rw
31 22 8:1 /state/v/run /run rw - ext4 /dev/sda1 rw
";
        let keep = vec!["/data/".to_string(), "/my dir".to_string()];
        assert_eq!(
            read_only_targets(info, &keep),
            vec!["/", "/run", "/etc/redis", "/tmp"]
        );
    }

    #[test]
    fn octal_escapes() {
        assert_eq!(unescape("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(unescape("/plain\\"), "/plain\\");
    }
}

//! fsGroup volume ownership, as the kubelet's `SetVolumeOwnership` does it when it sets a
//! volume up: every file and directory gets group `fsGroup` and group read (+write for
//! writable volumes), directories also group search and the setgid bit, so files created later
//! inherit the group. `OnRootMismatch` skips the walk when the volume's root already looks done.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// The pod's fsGroup and whether its policy is `OnRootMismatch` (default `Always`).
pub fn fs_group(pod: &Pod) -> Result<Option<(u32, bool)>, String> {
    let Some(sc) = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()) else {
        return Ok(None);
    };
    let Some(g) = sc.fs_group else {
        return Ok(None);
    };
    let g = u32::try_from(g).map_err(|_| format!("invalid fsGroup {g}"))?;
    let on_mismatch = sc.fs_group_change_policy.as_deref() == Some("OnRootMismatch");
    Ok(Some((g, on_mismatch)))
}

/// The mode the kubelet leaves on a file: the old one with the group bits added.
pub fn new_mode(mode: u32, is_dir: bool, read_only: bool) -> u32 {
    let mut mask = if read_only { RO_MASK } else { RW_MASK };
    if is_dir {
        mask |= SETGID | EXEC_MASK;
    }
    (mode & 0o7777) | mask
}

/// `requiresPermissionChange`: the root is not a directory of group `fs_group` with at least
/// the needed group bits and setgid.
pub fn root_needs_change(
    gid: u32,
    mode: u32,
    is_dir: bool,
    fs_group: u32,
    read_only: bool,
) -> bool {
    if gid != fs_group || !is_dir {
        return true;
    }
    let need = (if read_only { RO_MASK } else { RW_MASK }) | EXEC_MASK;
    mode & need != need || mode & SETGID == 0
}

/// Applies fsGroup ownership to a volume's directory (symlinks get the group, not the mode,
/// and are not followed).
pub fn set_volume_ownership(
    dir: &Path,
    fs_group: u32,
    read_only: bool,
    on_root_mismatch: bool,
) -> std::io::Result<()> {
    if on_root_mismatch {
        let m = std::fs::metadata(dir)?;
        if !root_needs_change(m.gid(), m.mode(), m.is_dir(), fs_group, read_only) {
            return Ok(());
        }
    }
    walk(dir, fs_group, read_only, 0)
}

fn walk(p: &Path, fs_group: u32, read_only: bool, depth: usize) -> std::io::Result<()> {
    // A volume is a tree of ordinary depth; this bounds a pathological one.
    if depth > 256 {
        return Ok(());
    }
    let m = std::fs::symlink_metadata(p)?;
    std::os::unix::fs::lchown(p, None, Some(fs_group))?;
    if m.file_type().is_symlink() {
        return Ok(());
    }
    let mode = new_mode(m.mode(), m.is_dir(), read_only);
    // chown clears setuid/setgid on files, so the mode is always written back.
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    if m.is_dir() {
        for e in std::fs::read_dir(p)? {
            walk(&e?.path(), fs_group, read_only, depth + 1)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_gain_group_bits_like_the_kubelet() {
        assert_eq!(new_mode(0o644, false, false), 0o664);
        assert_eq!(new_mode(0o600, false, true), 0o640);
        assert_eq!(new_mode(0o755, true, false), 0o2775);
        assert_eq!(new_mode(0o777, true, false), 0o2777);
        assert_eq!(new_mode(0o700, true, true), 0o2750);
    }

    #[test]
    fn on_root_mismatch_looks_at_group_bits_and_setgid() {
        assert!(root_needs_change(0, 0o2775, true, 999, false));
        assert!(root_needs_change(999, 0o775, true, 999, false));
        assert!(root_needs_change(999, 0o2755, true, 999, false));
        assert!(!root_needs_change(999, 0o2775, true, 999, false));
        assert!(!root_needs_change(999, 0o2750, true, 999, true));
        assert!(root_needs_change(999, 0o2775, false, 999, false));
    }

    #[test]
    fn a_root_written_tree_becomes_group_writable() {
        let d = std::env::temp_dir().join(format!("own-{}", crate::ids::random_hex("t", 8)));
        std::fs::create_dir_all(d.join("appendonlydir")).unwrap();
        std::fs::write(d.join("nodes.conf"), "x").unwrap();
        std::fs::set_permissions(d.join("nodes.conf"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::write(d.join("appendonlydir/a.aof"), "x").unwrap();
        std::os::unix::fs::symlink("nodes.conf", d.join("link")).unwrap();
        set_volume_ownership(&d, 4242, false, false).unwrap();
        let m = |p: &str| std::fs::symlink_metadata(d.join(p)).unwrap();
        assert_eq!(
            (m("nodes.conf").gid(), m("nodes.conf").mode() & 0o7777),
            (4242, 0o660)
        );
        assert_eq!(m("appendonlydir").mode() & 0o7777 & SETGID, SETGID);
        assert_eq!(m("appendonlydir/a.aof").gid(), 4242);
        assert_eq!(m("link").gid(), 4242);
        // Done already: OnRootMismatch leaves a new root-owned file alone, Always does not.
        std::fs::write(d.join("late"), "x").unwrap();
        std::os::unix::fs::chown(d.join("late"), None, Some(0)).unwrap();
        set_volume_ownership(&d, 4242, false, true).unwrap();
        assert_eq!(m("late").gid(), 0);
        set_volume_ownership(&d, 4242, false, false).unwrap();
        assert_eq!(m("late").gid(), 4242);
        std::fs::remove_dir_all(d).unwrap();
    }
}

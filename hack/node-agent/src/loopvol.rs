//! Provisioned volumes are disks of the claim's size, so that a volume fills up as a real one
//! does: a sparse image file `<volumes>/<pv>.img` formatted ext4 and loop-mounted at
//! `<volumes>/<pv>/`, the directory the PV's `local.path` names, in the host's mount
//! namespace. The mount exists before the PV does, so everything that only sees the directory
//! (pod bind mounts, fsGroup ownership) works unchanged.
//!
//! The image is the disk: a node crash keeps it mounted, an agent restart finds it mounted, and
//! `node-agent cleanup` unmounts it but keeps the file (a pod that resolves the claim mounts it
//! again). Only deleting the PV removes it.
//!
//! Every step runs a standard tool (`mkfs.ext4`, `mount -o loop`, `umount`, `losetup`), so each
//! can be replayed by hand; `mount -o loop` sets autoclear, so the loop device goes with the
//! last unmount.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::Command;
use tracing::{info, warn};

/// The smallest image made. ext4 needs room for its metadata; a smaller claim gets this much,
/// as a cloud disk is rounded up to its minimum size (the PV's capacity says so).
pub const MIN_BYTES: u64 = 1 << 20;
const MIN_QUANTITY: &str = "1Mi";
/// Each tool gets this long; they take milliseconds (a sparse image has nothing to write).
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Serialises mount changes: a pod may resolve a claim while the provisioner works on it.
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The image file behind a volume directory: its sibling `<dir>.img`.
pub fn image_of(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".img");
    dir.with_file_name(name)
}

/// Bytes of a Kubernetes quantity (`64Mi`, `1Gi`, `500M`, `1e9`, `1.5Gi`), rounded up to a
/// whole byte; None if it is not one or is not positive.
pub fn quantity_bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let number_ok = |n: &str| {
        let n = n.strip_prefix('+').unwrap_or(n);
        !n.is_empty()
            && n.chars().all(|c| c.is_ascii_digit() || c == '.')
            && n.chars().filter(|c| *c == '.').count() <= 1
            && n != "."
    };
    // A decimal exponent (`1e3`, `1E3`) is tried first: a bare trailing `E` is the exa suffix.
    let (number, factor) = match q.find(['e', 'E']) {
        Some(i) if i + 1 < q.len() && number_ok(&q[..i]) => {
            let exp: i32 = q[i + 1..].parse().ok()?;
            (&q[..i], 10f64.powi(exp))
        }
        _ => SUFFIXES
            .iter()
            .find_map(|(s, f)| q.strip_suffix(s).map(|n| (n, *f)))
            .unwrap_or((q, 1.0)),
    };
    if !number_ok(number) {
        return None;
    }
    let bytes = (number
        .strip_prefix('+')
        .unwrap_or(number)
        .parse::<f64>()
        .ok()?
        * factor)
        .ceil();
    (bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// The image size for a claim of `requested` (a quantity), and the capacity its PV reports:
/// the request itself, or the minimum when it was rounded up to it. None if `requested` is
/// not a positive quantity.
pub fn image_size(requested: &str) -> Option<(u64, String)> {
    let bytes = quantity_bytes(requested)?;
    if bytes < MIN_BYTES {
        return Some((MIN_BYTES, MIN_QUANTITY.into()));
    }
    // Whole 4 KiB blocks: the rest of a partial block could never hold data anyway.
    Some((bytes.div_ceil(4096) * 4096, requested.to_string()))
}

/// Whether `dir` is a mount point (in this process's mount namespace, the host's).
pub fn is_mountpoint(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(&unescape_mountinfo(m)) == want)
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(oct) = b.get(i + 1..i + 4)
            && let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(oct), 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first of the usual system directories that has `name`; the agent's PATH may lack
/// /usr/sbin.
fn tool(name: &str) -> PathBuf {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

async fn run(name: &str, args: &[&std::ffi::OsStr]) -> Result<String> {
    let out = tokio::time::timeout(
        TOOL_TIMEOUT,
        Command::new(tool(name))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("{name} {args:?}: timed out after {TOOL_TIMEOUT:?}"))?
    .with_context(|| format!("running {name}"))?;
    if !out.status.success() {
        bail!(
            "{name} {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Makes the volume at `dir`: a sparse `bytes`-long ext4 image, mounted at `dir`. Idempotent:
/// an existing image (a retry after a failed PV create) is mounted, not remade.
pub async fn create(dir: &Path, bytes: u64) -> Result<()> {
    let img = image_of(dir);
    let fresh = !img.exists();
    // Formatting needs no lock (it writes a temporary file of this volume's alone), so
    // volumes are formatted side by side; only the mount is serialised.
    if fresh {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        // Formatted under a temporary name: `<pv>.img` existing means a complete file system.
        let tmp = dir.with_file_name(format!(
            ".{}.img.tmp",
            dir.file_name().unwrap_or_default().to_string_lossy()
        ));
        let f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.set_len(bytes)
            .with_context(|| format!("sizing {}", tmp.display()))?;
        drop(f);
        // `-T default`: 4 KiB blocks and the usual inode ratio even for small volumes, so `df`
        // shows close to the claim's size; no journal and no discard pass keep it fast.
        let o = |s: &'static str| std::ffi::OsStr::new(s);
        run(
            "mkfs.ext4",
            &[
                o("-q"),
                o("-F"),
                o("-T"),
                o("default"),
                o("-O"),
                o("^has_journal"),
                o("-m"),
                o("0"),
                o("-E"),
                o("nodiscard"),
                tmp.as_os_str(),
            ],
        )
        .await?;
        std::fs::rename(&tmp, &img).with_context(|| format!("renaming to {}", img.display()))?;
    }
    let _g = LOCK.lock().await;
    if is_mountpoint(dir) {
        return Ok(());
    }
    mount(&img, dir).await?;
    if fresh {
        // The volume starts empty, as the plain directory it replaces did.
        let _ = std::fs::remove_dir(dir.join("lost+found"));
    }
    Ok(())
}

async fn mount(img: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // discard: deleted files give their blocks back to the host (the image stays sparse).
    run(
        "mount",
        &[
            "-t".as_ref(),
            "ext4".as_ref(),
            "-o".as_ref(),
            "loop,discard,noatime".as_ref(),
            img.as_os_str(),
            dir.as_os_str(),
        ],
    )
    .await?;
    Ok(())
}

/// Mounts the volume at `dir` again if its image exists and it is not mounted (after
/// `node-agent cleanup`). A directory without an image (a PV of an older agent) is left alone.
pub async fn ensure_mounted(dir: &Path) -> Result<()> {
    let img = image_of(dir);
    if !img.exists() || is_mountpoint(dir) {
        return Ok(());
    }
    let _g = LOCK.lock().await;
    if is_mountpoint(dir) {
        return Ok(());
    }
    mount(&img, dir).await?;
    info!("mounted volume {} again", dir.display());
    Ok(())
}

/// Unmounts `dir` (lazily if something on the host still uses it) and detaches any loop
/// device left on `img`.
async fn unmount(dir: &Path, img: &Path) -> Result<()> {
    if is_mountpoint(dir)
        && let Err(e) = run("umount", &[dir.as_os_str()]).await
    {
        warn!("{e:#}; detaching lazily");
        run("umount", &["-l".as_ref(), dir.as_os_str()]).await?;
    }
    if is_mountpoint(dir) {
        bail!("{} is still mounted", dir.display());
    }
    // `mount -o loop` autoclears; this covers a device left between losetup and mount.
    if img.exists() {
        let listed = run("losetup", &["-j".as_ref(), img.as_os_str()])
            .await
            .unwrap_or_default();
        for dev in listed.lines().filter_map(|l| l.split(':').next()) {
            if let Err(e) = run("losetup", &["-d".as_ref(), dev.as_ref()]).await {
                warn!("{e:#}");
            }
        }
    }
    Ok(())
}

/// Deletes the volume at `dir` for good: unmounted, image and directory removed. A plain
/// directory (a PV of an older agent) is just removed. Containers started while the volume
/// was mounted hold copies of the mount in their private mount namespaces; removing the
/// directory detaches those too (the kernel detaches mounts on a deleted mount point in every
/// namespace), so the file system and its loop device go now, not when they exit.
pub async fn remove(dir: &Path) -> Result<()> {
    let _g = LOCK.lock().await;
    let img = image_of(dir);
    unmount(dir, &img).await?;
    if img.exists() {
        std::fs::remove_file(&img).with_context(|| format!("removing {}", img.display()))?;
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// `node-agent cleanup`: unmounts every volume of every node under the state dir, keeping the
/// images (the data). Returns how many were unmounted.
pub async fn unmount_all(state_dir: &Path) -> usize {
    let _g = LOCK.lock().await;
    let mut n = 0;
    let Ok(nodes) = std::fs::read_dir(state_dir.join("nodes")) else {
        return 0;
    };
    for node in nodes.flatten() {
        let Ok(entries) = std::fs::read_dir(node.path().join("volumes")) else {
            continue;
        };
        for e in entries.flatten() {
            let img = e.path();
            if img.extension().is_none_or(|x| x != "img") {
                continue;
            }
            let dir = img.with_extension("");
            let mounted = is_mountpoint(&dir);
            match unmount(&dir, &img).await {
                Ok(()) => n += usize::from(mounted),
                Err(e) => warn!("unmounting {}: {e:#}", dir.display()),
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("64Mi"), Some(64 << 20));
        assert_eq!(quantity_bytes("1Gi"), Some(1 << 30));
        assert_eq!(quantity_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(quantity_bytes("500M"), Some(500_000_000));
        assert_eq!(quantity_bytes("1e9"), Some(1_000_000_000));
        assert_eq!(quantity_bytes("1E3"), Some(1000));
        assert_eq!(quantity_bytes("2E"), Some(2_000_000_000_000_000_000));
        assert_eq!(quantity_bytes("1500m"), Some(2));
        assert_eq!(quantity_bytes("+12"), Some(12));
        assert_eq!(quantity_bytes("95551679124"), Some(95551679124));
        for bad in ["", "abc", "0", "-1Gi", "1Xi", ".", "1.2.3", "Mi"] {
            assert_eq!(quantity_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn sizes_round_up() {
        assert_eq!(image_size("64Mi"), Some((64 << 20, "64Mi".into())));
        assert_eq!(image_size("1"), Some((MIN_BYTES, "1Mi".into())));
        assert_eq!(image_size("100M"), Some((100_003_840, "100M".into())));
        assert_eq!(image_size("nope"), None);
    }

    #[test]
    fn image_beside_the_directory() {
        assert_eq!(
            image_of(Path::new("/s/nodes/n1/volumes/pvc-u1")),
            Path::new("/s/nodes/n1/volumes/pvc-u1.img")
        );
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\"), "/end\\");
    }

    /// Needs root and loop devices (as the local cluster does); skipped otherwise.
    #[tokio::test]
    async fn create_fill_remove() {
        if !rustix::process::geteuid().is_root() || !Path::new("/dev/loop-control").exists() {
            eprintln!("skipped: needs root and /dev/loop-control");
            return;
        }
        let root = std::env::temp_dir().join(format!("loopvol-test-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let dir = root.join("nodes/n1/volumes/pvc-x");
        let t0 = std::time::Instant::now();
        create(&dir, 16 << 20).await.unwrap();
        eprintln!("16Mi volume made in {:?}", t0.elapsed());
        assert!(is_mountpoint(&dir));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "starts empty");
        // Idempotent, and the data survives an unmount and mount.
        create(&dir, 16 << 20).await.unwrap();
        std::fs::write(dir.join("f"), b"kept").unwrap();
        // `node-agent cleanup` unmounts and keeps the image; resolving the claim mounts it.
        assert_eq!(unmount_all(&root).await, 1);
        assert!(!is_mountpoint(&dir) && image_of(&dir).is_file());
        assert_eq!(unmount_all(&root).await, 0);
        ensure_mounted(&dir).await.unwrap();
        assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"kept");
        // The file system honours its size.
        let big = vec![0u8; 32 << 20];
        let err = std::fs::write(dir.join("big"), &big).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28), "ENOSPC: {err}");
        remove(&dir).await.unwrap();
        assert!(!dir.exists() && !image_of(&dir).exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}

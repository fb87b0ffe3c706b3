//! Linux capabilities of a container, from `securityContext.capabilities`, as containerd
//! computes them: its default set, minus `drop`, plus `add` (`ALL` meaning every capability).

use k8s_openapi::api::core::v1::Container;

/// Capability names by number (`CAP_` prefix dropped), as in linux/capability.h.
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// containerd's default capabilities for a container (oci.DefaultCapabilities / CRI).
const DEFAULT: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

const ALL: u64 = (1 << NAMES.len()) - 1;

/// The bit of a capability name (`NET_ADMIN` or `CAP_NET_ADMIN`, any case); `ALL` is every bit.
fn bits(name: &str) -> Result<u64, String> {
    let n = name.to_ascii_uppercase();
    let n = n.strip_prefix("CAP_").unwrap_or(&n);
    if n == "ALL" {
        return Ok(ALL);
    }
    NAMES
        .iter()
        .position(|c| *c == n)
        .map(|i| 1 << i)
        .ok_or_else(|| format!("unknown capability {name:?}"))
}

/// The container's capability set (bounding; also effective and permitted for uid 0), or
/// `None` when the container sets no `capabilities`: such containers keep what this node
/// always gave them (everything for uid 0, nothing for others).
pub fn requested(c: &Container) -> Result<Option<u64>, String> {
    let Some(caps) = c
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
    else {
        return Ok(None);
    };
    let mut set = DEFAULT
        .iter()
        .map(|n| bits(n))
        .sum::<Result<u64, String>>()?;
    for d in caps.drop.iter().flatten() {
        set &= !bits(d)?;
    }
    for a in caps.add.iter().flatten() {
        set |= bits(a)?;
    }
    Ok(Some(set))
}

/// Applies a capability set before the uid changes: every other capability leaves the
/// bounding set, the inheritable and ambient sets are emptied. Execs then give uid 0 exactly
/// `set` and other users nothing (no file capabilities, no ambient set).
pub fn apply(set: u64) -> Result<(), String> {
    use rustix::thread::{self as t, CapabilitySet};
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40)
        .min(63);
    for bit in 0..=last {
        let cap = CapabilitySet::from_bits_retain(1 << bit);
        if set & (1 << bit) == 0 && t::capability_is_in_bounding_set(cap).unwrap_or(false) {
            t::remove_capability_from_bounding_set(cap)
                .map_err(|e| format!("dropping capability {bit} from the bounding set: {e}"))?;
        }
    }
    let _ = t::clear_ambient_capability_set();
    let mut sets = t::capabilities(None).map_err(|e| format!("capget: {e}"))?;
    sets.inheritable = CapabilitySet::empty();
    // Effective and permitted stay until exec (setresuid still needs them): exec then gives
    // uid 0 the bounding set and any other uid nothing.
    t::set_capabilities(None, sets).map_err(|e| format!("capset: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Capabilities, SecurityContext};

    fn ctr(drop: &[&str], add: &[&str]) -> Container {
        let v = |s: &[&str]| Some(s.iter().map(|x| x.to_string()).collect());
        Container {
            security_context: Some(SecurityContext {
                capabilities: Some(Capabilities {
                    drop: v(drop),
                    add: v(add),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn drop_all_leaves_nothing_and_add_puts_back() {
        assert_eq!(requested(&Container::default()), Ok(None));
        assert_eq!(requested(&ctr(&["ALL"], &[])), Ok(Some(0)));
        assert_eq!(
            requested(&ctr(&["ALL"], &["NET_BIND_SERVICE"])),
            Ok(Some(1 << 10))
        );
        let d = requested(&ctr(&[], &[])).unwrap().unwrap();
        assert_eq!(d.count_ones(), 14);
        assert_eq!(d & (1 << 21), 0, "no SYS_ADMIN by default");
        let less = requested(&ctr(&["cap_net_raw"], &[])).unwrap().unwrap();
        assert_eq!(less, d & !(1 << 13));
        assert!(requested(&ctr(&["NOPE"], &[])).is_err());
    }
}

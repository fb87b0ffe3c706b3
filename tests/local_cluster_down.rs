//! After `hack/local-cluster down` nothing is left: no process, network namespace, link, bridge
//! or mount. Run by `make test` right after `down`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::Command;

fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("run sh");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
#[ignore = "run by make test after hack/local-cluster down"]
fn down_leaves_nothing_behind() {
    let procs = sh(
        "pgrep -af 'kube-apiserver|kube-controller-manager|kube-scheduler|etcd --name=local|node-agent run' | grep -v pgrep || true",
    );
    assert!(procs.is_empty(), "processes left: {procs}");
    let netns = sh("ip netns list | grep '^rop-' || true");
    assert!(netns.is_empty(), "network namespaces left: {netns}");
    let links = sh("ip -o link show | awk -F': ' '{print $2}' | grep -E '^(rv|rop-)' || true");
    assert!(links.is_empty(), "links left: {links}");
    let mounts = sh(
        "findmnt -rn -o TARGET | grep -E 'redis-operator/local-cluster|/run/netns/rop-' || true",
    );
    assert!(mounts.is_empty(), "mounts left: {mounts}");
}

//! After `hack/local-cluster down` nothing is left: no process (control plane, node agent,
//! kube-proxy, CoreDNS), network namespace, link, bridge, route, nftables table or mount. Run by
//! `make test` right after `down`.

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
        "pgrep -af 'kube-apiserver|kube-controller-manager|kube-scheduler|kube-proxy|etcd --name=local|node-agent run|coredns -conf' | grep -v pgrep || true",
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
    // kube-proxy's `ip`/`ip6 kube-proxy` tables and our `inet rop-local-cluster` guard.
    let tables = sh("nft list tables 2>/dev/null | grep -E 'kube-proxy|rop-local-cluster' || true");
    assert!(tables.is_empty(), "nftables tables left: {tables}");
    let routes = sh("ip route show 10.96.0.0/16; ip -o addr show | grep -F ' 10.244.' || true");
    assert!(
        routes.is_empty(),
        "Service route or bridge addresses left: {routes}"
    );
}

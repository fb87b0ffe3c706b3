#!/usr/bin/env bash
# Installs what the build, the tests and the demo need on a fresh Debian machine. Idempotent and
# quiet when everything is already there.
set -euo pipefail

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
command -v unshare >/dev/null || need_apt+=(util-linux)
command -v findmnt >/dev/null || need_apt+=(util-linux)
command -v python3 >/dev/null || need_apt+=(python3)
command -v bc >/dev/null || need_apt+=(bc) # benchmark scripts
# kube-proxy's nftables mode drives the kernel through `nft` (iptables is not needed); dig
# queries the cluster DNS (hack/local-cluster up and dns).
command -v nft >/dev/null || need_apt+=(nftables)
command -v dig >/dev/null || need_apt+=(dnsutils)

if ((${#need_apt[@]})); then
  echo "[install-deps] apt-get install ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian's redis-server package starts a system service on 6379 at install; we only need the
  # binaries, so keep invoke-rc.d from starting anything.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1; fi
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  if ((created_policy)); then rm -f "$policy"; fi
fi

if ! command -v cargo >/dev/null; then
  echo "[install-deps] cargo (Rust) is required; install it with rustup" >&2
  exit 1
fi
if command -v rustup >/dev/null; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" >&2
  done
fi
if ! command -v go >/dev/null; then
  echo "[install-deps] Go >= 1.26 is required to build the control plane" >&2
  exit 1
fi

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
# The node agent's volumes are loop-mounted ext4 images (mkfs.ext4, mount -o loop, losetup);
# volume-fill uses fallocate and mountpoint (util-linux). /sbin may be missing from PATH.
PATH=$PATH:/usr/sbin:/sbin
command -v mkfs.ext4 >/dev/null || need_apt+=(e2fsprogs)
command -v losetup >/dev/null || need_apt+=(mount)
command -v fallocate >/dev/null || need_apt+=(util-linux)
command -v python3 >/dev/null || need_apt+=(python3)
command -v bc >/dev/null || need_apt+=(bc) # benchmark scripts
# The operator image's trust store (HTTPS to S3 for backups): Mozilla's roots as Debian ships them.
[[ -d /usr/share/ca-certificates/mozilla ]] || need_apt+=(ca-certificates)
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

# Prometheus and promtool, for the metrics end-to-end test and `promtool check rules` on
# manifests/monitoring/: Debian's `prometheus` package, downloaded and unpacked under the cache
# rather than installed (its maintainer scripts would start a system service and add a user).
prom_dir=${XDG_CACHE_HOME:-$HOME/.cache}/redis-operator/prometheus
if [[ ! -x $prom_dir/usr/bin/prometheus || ! -x $prom_dir/usr/bin/promtool ]]; then
  echo "[install-deps] prometheus (Debian package, unpacked into $prom_dir)" >&2
  deb_dir=$(mktemp -d)
  # apt's download sandbox user must be able to write there.
  chmod 755 "$deb_dir"
  if ! (cd "$deb_dir" && apt-get download prometheus >/dev/null 2>&1); then
    apt-get update -qq
    (cd "$deb_dir" && apt-get download prometheus >/dev/null)
  fi
  rm -rf "$prom_dir.partial"
  mkdir -p "$prom_dir.partial"
  dpkg-deb -x "$deb_dir"/prometheus_*.deb "$prom_dir.partial"
  rm -rf "$deb_dir" "$prom_dir"
  mv "$prom_dir.partial" "$prom_dir"
fi

# redis-py, the real application client of the soak test (tests/support/app_client.py): a venv
# under the cache with one exactly pinned version, so its retry defaults do not drift between runs.
redis_py_version=6.4.0
pyenv_dir=${XDG_CACHE_HOME:-$HOME/.cache}/redis-operator/pyenv
if ! "$pyenv_dir/bin/python" -c "import redis, sys; sys.exit(redis.__version__ != '$redis_py_version')" 2>/dev/null; then
  echo "[install-deps] redis-py $redis_py_version (venv in $pyenv_dir)" >&2
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  rm -rf "$pyenv_dir"
  python3 -m venv "$pyenv_dir"
  "$pyenv_dir/bin/python" -m pip install -q --disable-pip-version-check "redis==$redis_py_version"
fi

# versitygw, the S3-compatible server of the backup tests and the demo (hack/s3,
# tests/s3_store.rs): one pinned release built from the Go module proxy into the cache.
versitygw_version=v1.8.0
versitygw_dir=${XDG_CACHE_HOME:-$HOME/.cache}/redis-operator/versitygw
if [[ ! -x $versitygw_dir/bin/versitygw || $(cat "$versitygw_dir/version" 2>/dev/null) != "$versitygw_version" ]]; then
  echo "[install-deps] versitygw $versitygw_version (into $versitygw_dir/bin)" >&2
  mkdir -p "$versitygw_dir/bin"
  # The module proxy answers an occasional 503: a few tries before giving up.
  for attempt in 1 2 3 4; do
    GOBIN=$versitygw_dir/bin go install "github.com/versity/versitygw/cmd/versitygw@$versitygw_version" && break
    ((attempt < 4)) || exit 1
    echo "[install-deps] go install failed (attempt $attempt of 4); again in $((attempt * 10)) s" >&2
    sleep $((attempt * 10))
  done
  echo "$versitygw_version" >"$versitygw_dir/version"
fi

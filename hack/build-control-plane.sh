#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubectl
# (k8s.io/kubernetes), etcd and CoreDNS from the Go module proxy into a cache keyed by version. A
# warm cache rebuilds nothing; a cache missing some binaries builds only those.
#
# k8s.io/kubernetes cannot be `go install`ed (its go.mod has replace directives), so each build
# goes through a wrapper module (hack/k8s, hack/etcd, hack/coredns) whose replace list is derived
# from the upstream go.mod of the chosen version. CoreDNS is built with only the plugins the local
# cluster uses (hack/coredns/main.go).
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${REDIS_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/redis-operator}"
BIN_DIR="$CACHE_ROOT/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
COREDNS_BIN="$CACHE_ROOT/bin/coredns-$COREDNS_VERSION/coredns"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

if [[ "${1:-}" == "--print-bin-dir" ]]; then echo "$BIN_DIR"; exit 0; fi
if [[ "${1:-}" == "--print-coredns-bin" ]]; then echo "$COREDNS_BIN"; exit 0; fi

# The Go module proxy answers an occasional 503 (seen: a fresh build failed on one for
# golang.org/x/sys): the steps that download retry a few times before giving up.
retry() {
  local attempt
  for attempt in 1 2 3 4; do
    "$@" && return 0
    ((attempt < 4)) || break
    echo "[build-control-plane] '$*' failed (attempt $attempt of 4); again in $((attempt * 10)) s" >&2
    sleep $((attempt * 10))
  done
  return 1
}

need_go() {
  if ! command -v go >/dev/null; then echo "go is required (Go >= 1.26)" >&2; exit 1; fi
}

build_k8s() {
  local missing=()
  for b in kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl; do
    [[ -x "$BIN_DIR/$b" ]] || missing+=("k8s.io/kubernetes/cmd/$b")
  done
  ((${#missing[@]})) || return 0
  need_go
  local work; work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  cp "$HACK_DIR/k8s/tools.go" "$work/"
  (
    cd "$work"
    go mod init local/k8s-wrapper >/dev/null 2>&1
    go mod edit -go=1.26.0
    local upstream
    upstream="$(retry go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    local staging_version="v0.${K8S_VERSION#v1.}"
    for m in $(grep '=> ./staging' "$upstream" | awk '{print $1}'); do
      go mod edit -replace="$m=$m@$staging_version"
    done
    go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
    retry go mod tidy >/dev/null
    local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
    local ld="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld+=" -X '$pkg.gitVersion=$K8S_VERSION' -X '$pkg.gitMajor=1' -X '$pkg.gitMinor=$minor'"
      ld+=" -X '$pkg.gitTreeState=clean' -X '$pkg.buildDate=2026-01-01T00:00:00Z'"
    done
    mkdir -p "$BIN_DIR.tmp"
    retry go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ld" -o "$BIN_DIR.tmp/" "${missing[@]}"
  )
  mkdir -p "$BIN_DIR"
  mv "$BIN_DIR.tmp"/* "$BIN_DIR/"
  rmdir "$BIN_DIR.tmp"
}

build_etcd() {
  [[ -x "$BIN_DIR/etcd" ]] && return 0
  need_go
  local work; work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  cp "$HACK_DIR/etcd/main.go" "$work/"
  (
    cd "$work"
    go mod init local/etcd-wrapper >/dev/null 2>&1
    go mod edit -go=1.26.0
    go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    retry go mod tidy >/dev/null
    mkdir -p "$BIN_DIR.etcd"
    retry go build -trimpath -ldflags "-s -w" -o "$BIN_DIR.etcd/etcd" .
  )
  mkdir -p "$BIN_DIR"
  mv "$BIN_DIR.etcd/etcd" "$BIN_DIR/etcd"
  rmdir "$BIN_DIR.etcd"
}

build_coredns() {
  [[ -x "$COREDNS_BIN" ]] && return 0
  need_go
  local work; work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  cp "$HACK_DIR/coredns/main.go" "$work/"
  (
    cd "$work"
    go mod init local/coredns-wrapper >/dev/null 2>&1
    go mod edit -go=1.26.0
    go mod edit -require="github.com/coredns/coredns@$COREDNS_VERSION"
    retry go mod tidy >/dev/null
    mkdir -p "$(dirname "$COREDNS_BIN").tmp"
    retry go build -trimpath -ldflags "-s -w -X 'github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION'" \
      -o "$(dirname "$COREDNS_BIN").tmp/coredns" .
  )
  mkdir -p "$(dirname "$COREDNS_BIN")"
  mv "$(dirname "$COREDNS_BIN").tmp/coredns" "$COREDNS_BIN"
  rmdir "$(dirname "$COREDNS_BIN").tmp"
}

build_etcd
build_k8s
build_coredns
echo "$BIN_DIR"

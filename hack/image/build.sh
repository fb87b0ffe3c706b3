#!/usr/bin/env bash
# Builds the operator's OCI image archive without a container daemon (none runs here):
# a static binary (musl, or glibc with crt-static when the musl target cannot be installed),
# then hack/image/oci.py lays out the image. Prints "<archive> <ref> <manifest digest> <size>".
#
#   hack/image/build.sh [--check]
#
# --check builds the archive twice, from two separate assemblies, and fails unless both have the
# same digest and the image stays within the 20 MB budget.
# IMAGE_REF (default redis-operator:latest) names the image; SOURCE_DATE_EPOCH sets `created`;
# IMAGE_TARGET=x86_64-unknown-linux-gnu builds a static glibc binary instead of musl; IMAGE_OUT
# writes the archive elsewhere.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
OUT_DIR="$TARGET_DIR/oci"
REF="${IMAGE_REF:-redis-operator:latest}"
OUT="${IMAGE_OUT:-$OUT_DIR/redis-operator.oci.tar}"
MAX_BYTES=$((20 * 1000 * 1000))

log() { printf '[image] %s\n' "$*" >&2; }

# The binary must not depend on where the checkout or the cargo home lives, or two machines
# would build two digests; the Containerfile builds with the same prefixes.
remap="--remap-path-prefix=$REPO=/src --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"

# IMAGE_TARGET=x86_64-unknown-linux-gnu forces the glibc fallback.
triple="${IMAGE_TARGET:-x86_64-unknown-linux-musl}"
if [[ "$triple" == *musl ]] && ! rustup target list --installed 2>/dev/null | grep -qx "$triple" &&
  ! rustup target add "$triple" >&2; then
  log "musl target unavailable: static glibc binary instead"
  triple=x86_64-unknown-linux-gnu
fi
if [[ "$triple" == *gnu ]]; then
  remap="$remap -C target-feature=+crt-static"
fi

log "cargo build --profile image --target $triple"
# ring's C code: no musl-gcc on Debian without musl-tools; the system gcc builds it fine (ring
# uses no libc headers), and Rust links against its bundled musl.
export CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-gcc}"
(cd "$REPO" && RUSTFLAGS="$remap" cargo build --locked --profile image --target "$triple" --bin redis-operator)
binary="$TARGET_DIR/$triple/image/redis-operator"
# No program interpreter: nothing in the image could load one.
if readelf -l "$binary" | grep -q 'program interpreter'; then
  echo "[image] error: $binary is dynamically linked" >&2
  exit 1
fi

mkdir -p "$OUT_DIR"
assemble() { # out
  python3 "$REPO/hack/image/oci.py" --binary "$binary" --passwd "$REPO/hack/image/passwd" \
    --group "$REPO/hack/image/group" --ref "$REF" --out "$1"
}

if [[ "${1:-}" == --check ]]; then
  # A different umask and a fresh copy of the inputs: nothing from the build machine may leak in.
  first="$(umask 077 && assemble "$OUT_DIR/check-1.oci.tar")"
  second="$(umask 002 && assemble "$OUT_DIR/check-2.oci.tar")"
  d1="$(awk '{print $3}' <<<"$first")" d2="$(awk '{print $3}' <<<"$second")"
  if [[ "$d1" != "$d2" ]] || ! cmp -s "$OUT_DIR/check-1.oci.tar" "$OUT_DIR/check-2.oci.tar"; then
    echo "[image] error: two builds differ: $d1 vs $d2" >&2
    exit 1
  fi
  size="$(awk '{print $4}' <<<"$first")"
  if ((size > MAX_BYTES)); then
    echo "[image] error: image is $size bytes, more than $MAX_BYTES" >&2
    exit 1
  fi
  rm -f "$OUT_DIR/check-1.oci.tar" "$OUT_DIR/check-2.oci.tar"
  log "reproducible: both builds are $d1 ($size bytes)"
fi
assemble "$OUT"

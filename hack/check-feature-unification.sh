#!/usr/bin/env bash
# Fails when `cargo build --workspace` and `cargo test --workspace` would enable different
# features of a dependency: the dev builds (make build, the node agent's, the tests') then build
# that dependency and everything above it twice. The fix is a line in hack/node-agent/Cargo.toml's
# feature-unification block asking for the features the dev-dependencies turn on.
set -euo pipefail
cd "$(dirname "$0")/.."
features() { # edge kinds
  cargo tree -q --workspace -e "$1" -f '{p} {f}' --prefix none | sed 's/ (\*)$//' | sort -u
}
build="$(features normal,build)"
test="$(features normal,build,dev)"
# Crates both resolve, listed with different features (a crate only the dev-dependencies bring
# in is built once anyway).
differ="$(comm -3 <(echo "$build") <(echo "$test") | awk '{print $1}' | sort | uniq -d)"
if [[ -n "$differ" ]]; then
  echo "the dev-dependencies change the features of: $(paste -sd' ' <<<"$differ")" >&2
  comm -3 <(echo "$build") <(echo "$test") | grep -wF -f <(echo "$differ") >&2 || true
  echo "(left: cargo build --workspace, right: cargo test --workspace); ask for the right-hand" \
    "features in hack/node-agent/Cargo.toml's feature-unification block" >&2
  exit 1
fi

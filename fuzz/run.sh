#!/usr/bin/env bash
# Runs the codec fuzz target under libFuzzer for a bounded time: fuzz/run.sh [SECONDS] (default 60).
# The flags are cargo-fuzz's (coverage counters, compare tracing, AddressSanitizer), so the
# target builds with a plain nightly cargo and cargo-fuzz need not be installed. Without a
# nightly toolchain (and none installable), the same property runs on stable through
# `cargo test --test codec_fuzz` instead, so `make test` still checks it.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
target=x86_64-unknown-linux-gnu

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal >&2 || true
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "[fuzz] no nightly toolchain: running the codec property on stable instead" >&2
  exec cargo test --manifest-path ../Cargo.toml --test codec_fuzz
fi

export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Zsanitizer=address \
-Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps build scripts and proc macros uninstrumented.
cargo +nightly build --locked --release --target "$target" --bin codec >&2

mkdir -p corpus/codec artifacts/codec
# The corpus grows across local runs (it is not committed); the seeds are a few real replies.
"target/$target/release/codec" -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=1024 \
  -timeout=10 -artifact_prefix=artifacts/codec/ -print_final_stats=1 corpus/codec seeds/codec

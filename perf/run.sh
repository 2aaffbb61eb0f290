#!/usr/bin/env bash
# Builds the benchmarks in release and runs them all: `perf/run.sh` (full, ~3 min) or
# `perf/run.sh --smoke` (seconds; verifies packets, makes no speed claims). Run as root
# (DPDK); the full run reserves 1024 2 MiB hugepages if fewer are reserved.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
smoke=()
if [[ "${1:-}" == "--smoke" ]]; then
    smoke=(--smoke)
    shift
fi
cargo build --release -p gwlb-perf --bins
if [[ ${#smoke[@]} -eq 0 && "$(cat /proc/sys/vm/nr_hugepages)" -lt 512 ]]; then
    echo 1024 > /proc/sys/vm/nr_hugepages
fi
"$target/release/micro" "${smoke[@]}" "$@"
echo
"$target/release/dataplane" "${smoke[@]}"

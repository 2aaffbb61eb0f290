#!/usr/bin/env bash
# Builds the benchmarks in release and runs them all: `perf/run.sh` (full, ~12 min on a quiet
# 2-CPU machine; dataplane throughput, latency and 1 vs N workers) or `perf/run.sh --smoke`
# (seconds; verifies packets, runs the latency and scaling code, makes no speed claims).
# Run as root (DPDK); the full run reserves 1024 2 MiB hugepages if fewer are reserved. The
# full run ends with callgrind instruction counts (stable on a shared machine) when valgrind
# is installed.
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
echo
# Pipeline scenarios (both entry points) verified without valgrind in smoke mode; the
# instruction table under callgrind in a full run.
if [[ ${#smoke[@]} -ne 0 ]]; then
    "$target/release/instr" --smoke
    # The steering-rules endpoint with none and the most rules (outputs to the rule's group).
    "$target/release/instr" --smoke --modes burst \
        --scenarios steer-0-encap,steer-10000-encap,steer-0-storm,steer-10000-storm
elif command -v valgrind >/dev/null; then
    "$target/release/instr"
else
    echo "valgrind not installed: no instruction counts"
fi

#!/usr/bin/env bash
# Forwarding with a slow sensor link, A/B: runs scripts/e2e.sh (real namespaces, UML and
# AWS-style appliances, a sensor) once per gwlb binary, back to back on this machine, and
# prints each run's iperf3 figures (through gwlb uncopied; with the sensor's link shaped to
# 20 Mbit/s, uncopied and with every packet copied to it, medians of 3 rounds; unshaped and
# copied; sensor gone). Read the pairs: the VM's speed swings between runs.
#
#   sudo perf/slow-sensor.sh BASELINE_GWLB [CANDIDATE_GWLB] [RUNS]
#
# CANDIDATE_GWLB defaults to target/release/gwlb (built first); RUNS (default 1) repeats
# the pair, alternating. APP_MTU is passed through (9000: net_af_packet; 1600: net_af_xdp).
# A baseline binary: `git worktree add --detach /tmp/wt-base <commit>` and
# `CARGO_TARGET_DIR=/tmp/wt-base/target cargo build --release -p gwlb --bin gwlb` there.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=${1:?usage: perf/slow-sensor.sh BASELINE_GWLB [CANDIDATE_GWLB] [RUNS]}
CAND=${2:-}
RUNS=${3:-1}
cd "$ROOT"
cargo build --release -q -p gwlb --bin gwlb --examples
[ -n "$CAND" ] || CAND="$ROOT/target/release/gwlb"
[ -x "$BASE" ] && [ -x "$CAND" ] || { echo "slow-sensor: $BASE or $CAND is not an executable" >&2; exit 2; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for r in $(seq "$RUNS"); do
    for which in baseline candidate; do
        bin=$BASE; [ "$which" = candidate ] && bin=$CAND
        GWLB_BIN=$bin AWS_BIN="$ROOT/target/release/examples/aws_appliance" \
            flock /tmp/gwlb-e2e.lock scripts/e2e.sh >"$log" 2>&1 || true
        echo "run $r, $which ($bin, $("$bin" --version)):"
        grep -E "iperf3" "$log" | sed 's/^PASS  /  /; s/^FAIL  /  FAILED: /'
    done
done

#!/usr/bin/env bash
# The whole gwlb test suite: formatting, lints, unit/property/integration tests (with real
# DPDK vdevs), the core without DPDK, a bounded fuzz run, the end-to-end suites and the
# Debian package.
# Run as root on Debian 12; installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export CARGO_TERM_COLOR=never

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all crates, all targets, -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings
# The fuzz crates are workspaces of their own (cargo-fuzz builds them alone); lint them too,
# so an API change that breaks a fuzz target fails here, not in the fuzz step.
for fuzz in geneve/fuzz gwlb/fuzz; do
  cargo clippy --manifest-path "$fuzz/Cargo.toml" --all-targets -- -D warnings
done

step "monitoring: alerting rules and dashboard queries (promtool)"
scripts/check-monitoring.sh

step "core crates without DPDK (no libdpdk needed)"
cargo test -p geneve -p gwlb --no-default-features

# Tests that need root are #[ignore]d for plain `cargo test` (reported, never silently
# green); here, as root, they run too. Measurements (`measure_*`) are not checks: skipped.
step "all tests, with DPDK, including those that need root"
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh: the suite needs root (DPDK, network namespaces)" >&2
  exit 1
fi
cargo test --workspace -- --include-ignored --skip measure_

step "fuzz the Geneve parser for ${FUZZ_SECONDS:=30}s"
FUZZ_SECONDS=$FUZZ_SECONDS scripts/fuzz.sh

step "benchmark harness, smoke mode (every scenario runs, outputs verified, no speed claims)"
perf/run.sh --smoke

step "end-to-end suite (appliance side at MTU 9000: jumbo frames; net_af_packet)"
scripts/e2e.sh

step "end-to-end suite again, appliance side at MTU 1600 (net_af_xdp where it works)"
APP_MTU=1600 scripts/e2e.sh

step "end-to-end suite, two nodes behind an ECMP router (BGP, BFD)"
scripts/e2e-cluster.sh

step "end-to-end suite, two tenants with the same addresses on VLANs, steering rules (issue 16)"
scripts/e2e-tenants.sh

step "Debian package: build, install, the unit's commands, remove, purge"
scripts/e2e-package.sh

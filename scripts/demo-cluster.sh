#!/usr/bin/env bash
# gwlb two-node demo: two gateway nodes behind a real FRR router (ECMP, BGP + BFD), one
# Linux-kernel Geneve appliance (User-Mode-Linux) and one AWS-style appliance, in network
# namespaces on this machine. It carries HTTP, UDP and iperf3 traffic over both nodes,
# drains one node, kills one with `kill -9` under traffic, restarts it, and kills an
# appliance, then prints what the router, the nodes and the appliances saw: how fast the dead
# node left the router's ECMP set, the UDP gap and iperf3 result across it, and how many flows
# changed appliance (none).
#
#   sudo scripts/demo-cluster.sh     (Debian 12, root; about 1 minute once built)
#
# Topology: scripts/lib/cluster.sh. The checks are those of scripts/e2e-cluster.sh (this demo
# runs it); everything it creates is removed when it ends.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "demo-cluster: run as root (sudo scripts/demo-cluster.sh)" >&2; exit 2; }
scripts/install-deps.sh || exit 1
echo "demo-cluster: building gwlb and the AWS-style appliance (cargo build --release)" >&2
cargo build --release -q -p gwlb --bin gwlb || exit 1
cargo build --release -q -p geneve --example aws_appliance || exit 1
report=$(mktemp)
trap 'rm -f "$report"' EXIT
CLUSTER_REPORT=$report scripts/e2e-cluster.sh
rc=$?
echo
echo "==== two-node report ===="
cat "$report"
exit $rc

#!/usr/bin/env bash
# Placeholder until the namespace demo lands: replays mixed traffic through gwlb offline.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -p gwlb
echo "demo: namespace topology not yet available"

#!/usr/bin/env bash
# Installs everything gwlb needs on Debian 12 (run as root). Idempotent and quiet when done before.
set -euo pipefail
PKGS=(libdpdk-dev dpdk dpdk-dev clang libclang-dev pkg-config iproute2 iptables
      user-mode-linux iperf3 tcpdump tshark curl socat python3 python3-scapy ethtool procps kmod iputils-ping
      bird2 frr jq iputils-tracepath dpkg-dev prometheus)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # tshark asks whether non-root users may capture; answer no without a prompt.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "install-deps: cargo not found (install Rust with rustup)" >&2; exit 1; }
# The Debian package is built with cargo-deb (scripts/package.sh).
if ! cargo deb --version >/dev/null 2>&1; then
  echo "install-deps: installing cargo-deb"
  cargo install cargo-deb --locked --version 3.8.0 --quiet
fi

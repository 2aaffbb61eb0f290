#!/usr/bin/env bash
# Builds the Debian package of gwlb with cargo-deb: target/debian/gwlb_<version>-1_<arch>.deb
# (the path is printed last). Contents and metadata: [package.metadata.deb] in
# gwlb/Cargo.toml; the unit, /etc/default file and hugepage helper: gwlb/debian/.
#
# The release binary is built first; its man pages and shell completions are generated from
# the CLI definition (`gwlb generate-assets`) into target/release/package-assets.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cargo deb --version >/dev/null 2>&1 || { echo "package.sh: cargo-deb not found (scripts/install-deps.sh installs it)" >&2; exit 1; }

cargo build --release -p gwlb --bin gwlb
assets=target/release/package-assets
rm -rf "$assets"
target/release/gwlb generate-assets --out "$assets" >/dev/null
gzip -9n "$assets"/man/*.1

# --no-build: the binary above is the one packaged (same profile, same features).
deb="$(cargo deb -p gwlb --no-build --strip 2>&1 | tee /dev/stderr | tail -n 1)"
[[ "$deb" == *.deb && -f "$deb" ]] || { echo "package.sh: cargo-deb did not report a package" >&2; exit 1; }
echo "$deb"

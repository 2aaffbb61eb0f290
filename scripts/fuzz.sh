#!/usr/bin/env bash
# Fuzz the geneve parser with cargo-fuzz (libFuzzer).
#
#   FUZZ_SECONDS    run time in seconds (default 30)
#   FUZZ_TARGET     fuzz target (default parse)
#   FUZZ_TOOLCHAIN  "stable" forces the stable + RUSTC_BOOTSTRAP path even when nightly exists
#   FUZZ_SANITIZER  cargo-fuzz --sanitizer value (default address; "none" runs faster)
#
# Corpus: geneve/fuzz/corpus/<target> (seeded here on first run); crashes are written to
# geneve/fuzz/artifacts/<target>. Both are git-ignored.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${FUZZ_TARGET:-parse}"
seconds="${FUZZ_SECONDS:-30}"
sanitizer="${FUZZ_SANITIZER:-address}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz not found, installing it" >&2
    cargo install cargo-fuzz --locked
fi

# cargo-fuzz needs -Z flags (sanitizer, coverage instrumentation). Use nightly where rustup has
# it; otherwise let the stable compiler accept them with RUSTC_BOOTSTRAP.
toolchain=()
if [[ "${FUZZ_TOOLCHAIN:-}" != "stable" ]] \
    && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
    if [[ "${FUZZ_TOOLCHAIN:-}" == "stable" ]] && command -v rustup >/dev/null 2>&1; then
        toolchain=(+stable)
    fi
fi
echo "fuzz.sh: toolchain ${toolchain[*]:-default}${RUSTC_BOOTSTRAP:+ (RUSTC_BOOTSTRAP=1)}," \
    "target $target, ${seconds}s, sanitizer $sanitizer" >&2

cd "$root/geneve"
corpus="fuzz/corpus/$target"
artifacts="fuzz/artifacts/$target"
mkdir -p "$corpus" "$artifacts"

# Seed an empty corpus with a few valid headers so libFuzzer starts past the length checks.
if [[ -z "$(ls -A "$corpus")" ]]; then
    aws_opts='\x01\x08\x01\x02\x0b\xad\xc0\xff\xee\x00\x00\x01'
    aws_opts+='\x01\x08\x02\x02\x00\x00\x00\x00\x00\x00\x12\x34'
    aws_opts+='\x01\x08\x03\x01\x5e\xed\xf0\x0d'
    # shellcheck disable=SC2059 # the format strings are the seed bytes
    {
        printf "\x08\x00\x08\x00\x00\x0a\xbc\x00${aws_opts}\x45\x00\x00\x14" >"$corpus/aws-ipv4"
        printf "\x00\xc0\x65\x58\xff\xff\xff\x00" >"$corpus/no-options-flags"
        printf "\x03\x40\x86\xdd\x00\x00\x01\x00\x01\x08\x03\x01\x00\x00\x00\x07\xff\x00\x85\x00" \
            >"$corpus/critical-unknown"
    }
fi

status=0
cargo ${toolchain[@]+"${toolchain[@]}"} fuzz run --sanitizer "$sanitizer" "$target" "$corpus" -- \
    -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$artifacts/" || status=$?
if [[ $status -ne 0 ]]; then
    echo "fuzz.sh: fuzzing failed (exit $status); reproducers in geneve/$artifacts" >&2
fi
exit "$status"

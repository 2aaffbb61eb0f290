#!/usr/bin/env bash
# Fuzz with cargo-fuzz (libFuzzer), each target for a bounded time:
#   parse     the Geneve parser (geneve/fuzz)
#   pipeline  the whole pure-Rust packet pipeline, gwlb without DPDK (gwlb/fuzz): user frames,
#             appliance returns of both styles, forged returns, clock jumps and snapshot
#             changes, per packet and in bursts, with byte-exactness and equivalence oracles
#
#   FUZZ_SECONDS    run time of each target in seconds (default 30)
#   FUZZ_TARGET     one target (parse or pipeline); unset: both, one after the other
#   FUZZ_TOOLCHAIN  "stable" forces the stable + RUSTC_BOOTSTRAP path even when nightly exists
#   FUZZ_SANITIZER  cargo-fuzz --sanitizer value (default address; "none" runs faster)
#   FUZZ_ARGS       extra libFuzzer arguments (e.g. "-jobs=2 -workers=2")
#
# Corpus: <crate>/fuzz/corpus/<target> (seeded here on first run: geneve's from the bytes
# below, gwlb's from gwlb/fuzz/seeds/pipeline); crashes are written to
# <crate>/fuzz/artifacts/<target>. Both are git-ignored. Reproduce one with
#   cargo +nightly fuzz run --sanitizer none <target> <artifact>
# (the pipeline target explains a run, packet by packet, with GWLB_FUZZ_TRACE=1; see
# gwlb/fuzz/fuzz_targets/pipeline.rs).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${FUZZ_SECONDS:-30}"
sanitizer="${FUZZ_SANITIZER:-address}"
read -r -a extra <<<"${FUZZ_ARGS:-}"

if [[ -n "${FUZZ_TARGET:-}" ]]; then
    targets=("$FUZZ_TARGET")
else
    targets=(parse pipeline)
fi

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

# Seed an empty geneve corpus with a few valid headers so libFuzzer starts past the length
# checks.
seed_parse() {
    local corpus="$1"
    local aws_opts='\x01\x08\x01\x02\x0b\xad\xc0\xff\xee\x00\x00\x01'
    aws_opts+='\x01\x08\x02\x02\x00\x00\x00\x00\x00\x00\x12\x34'
    aws_opts+='\x01\x08\x03\x01\x5e\xed\xf0\x0d'
    # shellcheck disable=SC2059 # the format strings are the seed bytes
    {
        printf "\x08\x00\x08\x00\x00\x0a\xbc\x00${aws_opts}\x45\x00\x00\x14" >"$corpus/aws-ipv4"
        printf "\x00\xc0\x65\x58\xff\xff\xff\x00" >"$corpus/no-options-flags"
        printf "\x03\x40\x86\xdd\x00\x00\x01\x00\x01\x08\x03\x01\x00\x00\x00\x07\xff\x00\x85\x00" \
            >"$corpus/critical-unknown"
    }
}

# The pipeline target reads its input as a stream of operations (a zero byte is always the
# ordinary choice); the committed seeds are short scripts of them and past reproducers.
seed_pipeline() {
    cp "$root/gwlb/fuzz/seeds/pipeline/"* "$1/"
}

status=0
for target in "${targets[@]}"; do
    case "$target" in
        parse) crate=geneve ;;
        pipeline) crate=gwlb ;;
        *)
            echo "fuzz.sh: unknown FUZZ_TARGET '$target' (parse or pipeline)" >&2
            exit 2
            ;;
    esac
    echo "fuzz.sh: toolchain ${toolchain[*]:-default}${RUSTC_BOOTSTRAP:+ (RUSTC_BOOTSTRAP=1)}," \
        "target $crate/$target, ${seconds}s, sanitizer $sanitizer" >&2
    corpus="fuzz/corpus/$target"
    artifacts="fuzz/artifacts/$target"
    (
        cd "$root/$crate"
        mkdir -p "$corpus" "$artifacts"
        if [[ -z "$(ls -A "$corpus")" ]]; then
            "seed_$target" "$corpus"
        fi
        cargo ${toolchain[@]+"${toolchain[@]}"} fuzz run --sanitizer "$sanitizer" "$target" \
            "$corpus" -- -max_total_time="$seconds" -print_final_stats=1 \
            -artifact_prefix="$artifacts/" ${extra[@]+"${extra[@]}"}
    ) || {
        rc=$?
        echo "fuzz.sh: fuzzing $crate/$target failed (exit $rc); reproducers in $crate/$artifacts" >&2
        status=$rc
    }
done
exit "$status"

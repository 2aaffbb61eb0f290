# shellcheck shell=bash
# PASS/FAIL bookkeeping of the end-to-end scripts (source it): every check prints one line,
# `checks_summary` the totals ("N passed, M failed", the scripts' last line).
PASS=0 FAIL=0
ok()  { PASS=$((PASS + 1)); echo "PASS  $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL  $1${2:+: $2}"; }
# check NAME CMD...: passes if CMD succeeds (its output hidden).
check() { local d=$1; shift; if "$@" >/dev/null 2>&1; then ok "$d"; else bad "$d"; fi; }
checks_summary() { echo "$PASS passed, $FAIL failed"; }
# checks_exit RC: the exit status of a script whose last command returned RC.
checks_exit() { [ "$FAIL" = 0 ] && [ "$1" = 0 ] && exit 0; exit 1; }

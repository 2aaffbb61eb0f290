#!/usr/bin/env bash
# The Debian package on this machine, from a clean state:
#   - builds it (scripts/package.sh) and installs it with dpkg;
#   - checks its files: binary and --version, unit, hugepage helper, conffiles, man pages,
#     completions, docs, alerting rules and dashboard; the shipped default configuration
#     passes `gwlb check-config`;
#   - checks the unit with `systemd-analyze verify`, then runs the unit's own commands
#     (ExecStartPre, ExecStart, ExecReload, the stop signal), as systemd would, since the test
#     machines do not run systemd as PID 1: gwlb starts on a pcap config, forwards every
#     packet (Geneve to its appliances), reloads a changed file, refuses a broken one (the
#     daemon keeps running its old configuration) and stops cleanly on SIGTERM;
#   - removes the package (only the conffiles are left, and the mask deb-systemd-helper puts
#     on a removed unit) and purges it (nothing is left).
#
#   sudo scripts/e2e-package.sh     (root; dpkg; about 30 s after the release build)
#
# Prints PASS/FAIL per check and "N passed, M failed" as its last line; exit status 0 only if
# every check passed. Leaves the machine without the package, also on failure.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "e2e-package: run as root" >&2; exit 2; }
# shellcheck source=lib/checks.sh
source scripts/lib/checks.sh

WORK=$(mktemp -d /tmp/gwlb-package.XXXXXX)
MAINPID=""
RUNDIR=/run/gwlb   # the unit's RuntimeDirectory
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$MAINPID" ] && kill -KILL "$MAINPID" 2>/dev/null
    dpkg -P gwlb >/dev/null 2>&1
    rm -rf "$WORK" "$RUNDIR"
    checks_summary
    checks_exit "$rc"
}
trap cleanup EXIT INT TERM
abort() { bad "$1" "${2:-}"; exit 1; }

# --- A clean state, the package built and installed ---------------------------------------
if dpkg-query -W gwlb >/dev/null 2>&1; then
    echo "e2e-package: purging an installed gwlb first"
    dpkg -P gwlb >/dev/null || abort "purge the installed gwlb"
fi
[ -e /etc/gwlb ] && abort "clean state" "/etc/gwlb exists without the package"
pgrep -x gwlb >/dev/null && abort "clean state" "a gwlb is running ($RUNDIR is the unit's)"
rm -rf "$RUNDIR"   # left by an earlier gwlb outside systemd (its instance lock)

deb=$(scripts/package.sh 2>"$WORK/package.log" | tail -n 1)
[ -f "$deb" ] || { tail -n 20 "$WORK/package.log"; abort "scripts/package.sh builds the .deb"; }
ok "scripts/package.sh builds $(basename "$deb")"
depends=$(dpkg-deb -f "$deb" Depends)
if [[ "$depends" == *librte-eal* && "$depends" == *librte-ethdev* && "$depends" == *bird2* ]]; then
    ok "Depends names the DPDK runtime libraries and bird2"
else
    bad "Depends names the DPDK runtime libraries and bird2" "$depends"
fi
dpkg -i "$deb" >"$WORK/dpkg-i.log" 2>&1 || { cat "$WORK/dpkg-i.log"; abort "dpkg -i"; }
ok "dpkg -i installs it"
mapfile -t FILES < <(dpkg -L gwlb | while read -r f; do [ -d "$f" ] || echo "$f"; done)
mapfile -t CONFFILES < <(dpkg-query -W -f='${Conffiles}\n' gwlb | awk 'NF { print $1 }')

# --- Its files -----------------------------------------------------------------------------
version=$(/usr/bin/gwlb --version)
if [[ "$version" =~ ^gwlb\ [0-9.]+\ \(commit\ [0-9a-f]+(-dirty)?,\ DPDK\ 22\.11 ]]; then
    ok "gwlb --version: $version"
else
    bad "gwlb --version names version, commit and DPDK" "$version"
fi
UNIT=$(printf '%s\n' "${FILES[@]}" | grep -E '/systemd/system/gwlb\.service$' || true)
[ -n "$UNIT" ] || abort "the package installs gwlb.service"
ok "unit installed: $UNIT"
[ "$(printf '%s\n' "${CONFFILES[@]}" | sort | tr '\n' ' ')" = "/etc/default/gwlb /etc/gwlb/gwlb.toml " ] &&
    ok "conffiles: /etc/gwlb/gwlb.toml, /etc/default/gwlb" ||
    bad "conffiles: /etc/gwlb/gwlb.toml, /etc/default/gwlb" "${CONFFILES[*]}"
check "the shipped /etc/gwlb/gwlb.toml passes gwlb check-config" \
    /usr/bin/gwlb check-config --config /etc/gwlb/gwlb.toml
check "man page gwlb(1) and one per subcommand" \
    bash -c 'zcat /usr/share/man/man1/gwlb.1.gz | grep -q "^.TH gwlb" &&
             zcat /usr/share/man/man1/gwlb-run.1.gz | grep -qF "Configuration file (TOML)"'
check "bash completion completes subcommands" \
    bash -c 'source /usr/share/bash-completion/completions/gwlb && complete -p gwlb &&
             grep -q "check-config" /usr/share/bash-completion/completions/gwlb'
check "zsh and fish completions" \
    test -s /usr/share/zsh/vendor-completions/_gwlb -a -s /usr/share/fish/vendor_completions.d/gwlb.fish
check "docs and examples" \
    test -s /usr/share/doc/gwlb/README.md -a -s /usr/share/doc/gwlb/configuration.md \
    -a -s /usr/share/doc/gwlb/examples/pcap-offline.toml
check "alerting rules pass promtool" \
    promtool check rules /usr/share/gwlb/monitoring/gwlb-alerts.yml
check "Grafana dashboard is JSON" jq -e '.panels | length > 0' /usr/share/gwlb/monitoring/grafana-dashboard.json

# --- The unit --------------------------------------------------------------------------------
# --man=no: the Documentation= man pages are checked above (man-db need not be installed).
if systemd-analyze verify --man=no "$UNIT" >"$WORK/verify.log" 2>&1 && ! [ -s "$WORK/verify.log" ]; then
    ok "systemd-analyze verify: no complaint"
else
    bad "systemd-analyze verify" "$(head -c 600 "$WORK/verify.log")"
fi
# The unit's commands, in order, with systemd's prefixes (+, -, @, !, :) removed.
unit_cmds() { sed -n "s/^$1=//p" "$UNIT" | sed 's/^[-+@!:]*//'; }
mapfile -t START_PRE < <(unit_cmds ExecStartPre)
mapfile -t RELOAD < <(unit_cmds ExecReload)
START=$(unit_cmds ExecStart)
[ "${#START_PRE[@]}" -ge 2 ] && printf '%s\n' "${START_PRE[@]}" | grep -q 'gwlb check-config' &&
    printf '%s\n' "${RELOAD[@]}" | head -n 1 | grep -q 'gwlb check-config' &&
    ok "check-config runs before start and before reload" ||
    bad "check-config runs before start and before reload" "${START_PRE[*]} / ${RELOAD[*]}"
grep -q '^Restart=on-failure' "$UNIT" && grep -q '^CapabilityBoundingSet=' "$UNIT" &&
    grep -q '^ProtectSystem=strict' "$UNIT" && grep -q '^NoNewPrivileges=yes' "$UNIT" &&
    ok "unit restarts on failure and is hardened" || bad "unit restarts on failure and is hardened"

# The service's environment: Environment=, then EnvironmentFile= (which wins).
run_env() {
    local kv
    for kv in $(sed -n 's/^Environment=//p' "$UNIT"); do export "${kv?}"; done
    set -a
    # shellcheck disable=SC1090
    . "$(sed -n 's/^EnvironmentFile=-\{0,1\}//p' "$UNIT")"
    set +a
}
# run_cmd CMD: one Exec line, $MAINPID filled in (its words split as systemd splits them).
run_cmd() { (run_env; eval "${1//\$MAINPID/$MAINPID}"); }

# --- Start on a pcap configuration, forward ------------------------------------------------
mkdir -m 0750 "$RUNDIR"   # RuntimeDirectory=gwlb
N=50
/usr/bin/python3 - "$RUNDIR/in.pcap" "$N" <<'EOF' || abort "write the input pcap"
import sys
from scapy.all import Ether, IP, UDP, Raw, wrpcap
out, n = sys.argv[1], int(sys.argv[2])
wrpcap(out, [Ether(src="02:00:00:00:00:fe", dst="02:00:00:00:00:01") /
             IP(src="10.0.0.50", dst="10.9.0.%d" % (1 + i % 200)) /
             UDP(sport=20000 + i, dport=7000) / Raw(b"x" * 32) for i in range(n)])
EOF
config() { # the pcap example on this run's files, the API on a Unix socket, targets $1
    sed -e "s#rx_pcap=/tmp/gwlb-in.pcap,tx_pcap=/tmp/gwlb-out.pcap#rx_pcap=$RUNDIR/in.pcap,tx_pcap=$RUNDIR/out.pcap#" \
        -e "s#^api_listen = \"off\"#api_listen = \"unix:$RUNDIR/api.sock\"#" \
        gwlb/examples/pcap-offline.toml
    [ "$1" = 3 ] && printf '\n[[target_groups.targets]]\naddress = "10.0.0.13"\nmac = "02:00:00:00:00:0d"\n'
}
config 2 >/etc/gwlb/gwlb.toml
for c in "${START_PRE[@]}"; do
    run_cmd "$c" >>"$WORK/start-pre.log" 2>&1 || { cat "$WORK/start-pre.log"; abort "ExecStartPre: $c"; }
done
ok "ExecStartPre: $(grep -c . <<<"$(printf '%s\n' "${START_PRE[@]}")") commands succeed (hugepages reserved: $(cat /proc/sys/vm/nr_hugepages))"
(run_env; eval "exec $START") >"$WORK/gwlb.out" 2>"$WORK/gwlb.err" &
MAINPID=$!
cli() { /usr/bin/gwlb "$@" --api "unix:$RUNDIR/api.sock"; }
targets() { cli targets --json 2>/dev/null | jq '[.[].targets[]] | length'; }
wait_for() { # wait_for SECONDS CMD...: until CMD succeeds
    local end=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do [ $SECONDS -ge $end ] && return 1; sleep 0.2; done
}
encapsulated() { [ "$(cli stats --json | jq '.total.encapsulated')" = "$N" ]; }
if wait_for 20 encapsulated; then
    ok "ExecStart: gwlb runs and encapsulates all $N packets"
else
    tail -n 20 "$WORK/gwlb.err"; abort "ExecStart: gwlb encapsulates $N packets" "$(cli stats --json 2>&1 | head -c 300)"
fi

# --- Reload: a changed file, then a broken one --------------------------------------------
three_targets() { [ "$(targets)" = 3 ]; }
reload() { for c in "${RELOAD[@]}"; do run_cmd "$c" || return 1; done; }
config 3 >/etc/gwlb/gwlb.toml
if reload >"$WORK/reload.log" 2>&1 && wait_for 10 three_targets; then
    ok "ExecReload: a changed file is checked and applied (3 targets)"
else
    bad "ExecReload applies a changed file" "$(cat "$WORK/reload.log"; targets)"
fi
cp /etc/gwlb/gwlb.toml "$WORK/good.toml"
sed -i 's/^flow_table_capacity = .*/flow_table_capacity = "lots"/' /etc/gwlb/gwlb.toml
if reload >"$WORK/reload-bad.log" 2>&1; then
    bad "ExecReload refuses a broken file" "it succeeded"
elif grep -q 'flow_table_capacity' "$WORK/reload-bad.log" && kill -0 "$MAINPID" 2>/dev/null && [ "$(targets)" = 3 ]; then
    ok "ExecReload refuses a broken file, naming the field; gwlb keeps running its configuration"
else
    bad "ExecReload refuses a broken file and gwlb keeps running" "$(cat "$WORK/reload-bad.log")"
fi
cp "$WORK/good.toml" /etc/gwlb/gwlb.toml

# --- Stop ----------------------------------------------------------------------------------
kill -"$(sed -n 's/^KillSignal=SIG//p' "$UNIT")" "$MAINPID"
timeout "$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' "$UNIT")" tail --pid="$MAINPID" -f /dev/null
wait "$MAINPID"; rc=$?
MAINPID=""
[ "$rc" = 0 ] && ok "KillSignal stops gwlb, exit status 0" || bad "KillSignal stops gwlb" "exit $rc: $(tail -n 5 "$WORK/gwlb.err")"
geneve=$(tcpdump -nn -r "$RUNDIR/out.pcap" 'udp dst port 6081' 2>/dev/null | wc -l)
[ "$geneve" = "$N" ] && ok "the output pcap holds $N Geneve packets to the appliances" ||
    bad "the output pcap holds $N Geneve packets" "$geneve"
rm -rf "$RUNDIR"   # systemd removes the RuntimeDirectory on stop

# --- Remove, purge -------------------------------------------------------------------------
MASK=/etc/systemd/system/gwlb.service   # deb-systemd-helper masks a removed unit
dpkg -r gwlb >"$WORK/dpkg-r.log" 2>&1 || { cat "$WORK/dpkg-r.log"; abort "dpkg -r"; }
left=()
for f in "${FILES[@]}"; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    printf '%s\n' "${CONFFILES[@]}" | grep -qxF "$f" || left+=("$f")
done
missing=()
for f in "${CONFFILES[@]}"; do [ -e "$f" ] || missing+=("$f"); done
for d in /usr/share/doc/gwlb /usr/share/gwlb /usr/lib/gwlb; do [ -e "$d" ] && left+=("$d"); done
if [ ${#left[@]} = 0 ] && [ ${#missing[@]} = 0 ]; then
    ok "dpkg -r: only the conffiles are left$([ -L "$MASK" ] && echo " (and the unit's mask $MASK)")"
else
    bad "dpkg -r leaves only the conffiles" "left: ${left[*]}; conffiles gone: ${missing[*]}"
fi
dpkg -P gwlb >"$WORK/dpkg-p.log" 2>&1 || { cat "$WORK/dpkg-p.log"; abort "dpkg -P"; }
left=()
for f in "${FILES[@]}" /etc/gwlb /etc/default/gwlb "$MASK" /var/lib/systemd/deb-systemd-helper-masked/gwlb.service \
         /var/lib/systemd/deb-systemd-helper-enabled/gwlb.service.dsh-also; do
    [ -e "$f" ] || [ -L "$f" ] && left+=("$f")
done
[ ${#left[@]} = 0 ] && ok "dpkg -P: nothing is left" || bad "dpkg -P leaves nothing" "${left[*]}"

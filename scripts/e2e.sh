#!/usr/bin/env bash
# End-to-end test of gwlb with real appliances: the demo's topology (scripts/lib/topology.sh:
# client and server routed through gwlb, two UML Linux-kernel Geneve appliances and one
# AWS-style appliance, all blocking TCP/23), non-interactive, with assertions.
#
#   sudo scripts/e2e.sh        (root; expects target/release/gwlb and the aws_appliance
#                               example built, or builds them; about 20 s)
#
# Prints PASS/FAIL per check and "N passed, M failed" as its last line; exit status 0 only
# if every check passed. GWLB_DRIVER=af_packet|af_xdp forces gwlb's port driver (default:
# af_xdp, falling back to af_packet). Removes everything it created, also on Ctrl-C.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "e2e: run as root" >&2; exit 2; }
# shellcheck source=lib/topology.sh
source scripts/lib/topology.sh
export GWLB_DEMO_WORK=${GWLB_DEMO_WORK:-/run/gwlb-demo}

PASS=0 FAIL=0
ok()  { PASS=$((PASS + 1)); echo "PASS  $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL  $1${2:+: $2}"; }
check() { local d=$1; shift; if "$@" >/dev/null 2>&1; then ok "$d"; else bad "$d"; fi; }
summary() { echo "$PASS passed, $FAIL failed"; }
abort() { # a setup step failed: nothing further can be checked
    bad "$1" "${2:-}"
    for f in gwlb.err aws.err uml1.log uml2.log; do
        [ -s "$WORK/$f" ] && { echo "--- $WORK/$f"; tail -n 15 "$WORK/$f"; }
    done
    exit 1
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    topo_cleanup
    summary
    [ "$FAIL" = 0 ] && [ "$rc" = 0 ] && exit 0
    exit 1
}
TOPO_T0=$(date +%s.%N)
trap cleanup EXIT
trap 'echo "e2e: interrupted" >&2; exit 130' INT TERM

command -v linux.uml >/dev/null && command -v socat >/dev/null && command -v iperf3 >/dev/null ||
    { echo "e2e: missing tools: run scripts/install-deps.sh" >&2; FAIL=1; exit 1; }
topo_need_tools
if [ ! -x "$GWLB_BIN" ] || [ ! -x "$AWS_BIN" ]; then
    cargo build --release -q -p gwlb --bin gwlb && cargo build --release -q -p geneve --example aws_appliance ||
        abort "build"
fi

topo_cleanup
tlog "topology"
topo_create || abort "topology setup"
tlog "appliances"
topo_start_appliances || abort "appliances start (2 UML, 1 aws_appliance)"
gwlb_up || abort "gwlb starts and forwards a first ping"
ok "gwlb runs in $NS_GW with net_$DRIVER ports and forwards a first ping"
services "$NS_SERVER" "$SERVER_IP" "$BLOCKED_PORT" || abort "services in $NS_SERVER"
services "$NS_CLIENT" "$CLIENT_IP" || abort "services in $NS_CLIENT"
head -c 3000000 /dev/urandom > "$WORK/www-$NS_SERVER/blob.bin"
head -c 3000000 /dev/urandom > "$WORK/www-$NS_CLIENT/blob.bin"

cx() { ip netns exec "$NS_CLIENT" "$@"; }
sx() { ip netns exec "$NS_SERVER" "$@"; }

tlog "ICMP, TCP, UDP both ways"
check "ICMP client -> server (ping)" cx ping -c 3 -i 0.2 -W 2 -q "$SERVER_IP"
check "ICMP server -> client (ping)" sx ping -c 3 -i 0.2 -W 2 -q "$CLIENT_IP"

r=$(cx curl -s -m 5 "http://$SERVER_IP/")
[ "$r" = "hello from $NS_SERVER" ] && ok "TCP client -> server (HTTP GET)" || bad "TCP client -> server (HTTP GET)" "got '$r'"
r=$(sx curl -s -m 5 "http://$CLIENT_IP/")
[ "$r" = "hello from $NS_CLIENT" ] && ok "TCP server -> client (HTTP GET)" || bad "TCP server -> client (HTTP GET)" "got '$r'"

r=$(echo ping | cx timeout 5 socat -T3 - "UDP:$SERVER_IP:5353")
[ "$r" = "ping from $CLIENT_IP" ] && ok "UDP client -> server (echo), server saw source $CLIENT_IP" ||
    bad "UDP client -> server (echo)" "got '$r'"
r=$(echo ping | sx timeout 5 socat -T3 - "UDP:$CLIENT_IP:5353")
[ "$r" = "ping from $SERVER_IP" ] && ok "UDP server -> client (echo), client saw source $SERVER_IP" ||
    bad "UDP server -> client (echo)" "got '$r'"

tlog "no NAT, payload"
srcs=$(awk '$1 != "listening" {print $1}' "$WORK/httpd-$NS_SERVER.log" | sort -u | tr '\n' ' ')
[ "$srcs" = "$CLIENT_IP " ] && ok "no NAT: the server's HTTP log shows only the client's address $CLIENT_IP" ||
    bad "no NAT (server HTTP log)" "peers: '$srcs'"
srcs=$(awk '$1 != "listening" {print $1}' "$WORK/httpd-$NS_CLIENT.log" | sort -u | tr '\n' ' ')
[ "$srcs" = "$SERVER_IP " ] && ok "no NAT: the client's HTTP log shows only the server's address $SERVER_IP" ||
    bad "no NAT (client HTTP log)" "peers: '$srcs'"
want=$(sha256sum < "$WORK/www-$NS_SERVER/blob.bin")
got=$(cx curl -s -m 20 "http://$SERVER_IP/blob.bin" | sha256sum)
[ "$got" = "$want" ] && ok "payload intact: 3 MB download server -> client, sha256 equal" ||
    bad "payload intact (server -> client)" "sha256 ${got%% *} != ${want%% *}"
want=$(sha256sum < "$WORK/www-$NS_CLIENT/blob.bin")
got=$(sx curl -s -m 20 "http://$CLIENT_IP/blob.bin" | sha256sum)
[ "$got" = "$want" ] && ok "payload intact: 3 MB download client -> server, sha256 equal" ||
    bad "payload intact (client -> server)" "sha256 ${got%% *} != ${want%% *}"

tlog "TCP/$BLOCKED_PORT"
t0=$(date +%s.%N)
if out=$(cx timeout 6 socat -T3 - "TCP:$SERVER_IP:$BLOCKED_PORT,connect-timeout=3" </dev/null 2>&1); then
    bad "TCP/$BLOCKED_PORT client -> server blocked by the appliances" "connected: '$out'"
else
    el=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    if grep -q "timed out" <<<"$out"; then
        ok "TCP/$BLOCKED_PORT client -> server blocked (connect timed out after ${el}s)"
    else
        bad "TCP/$BLOCKED_PORT blocked by a timeout" "failed otherwise after ${el}s: $out"
    fi
fi
r=$(sx timeout 3 socat -T2 - "TCP:$SERVER_IP:$BLOCKED_PORT" </dev/null 2>&1)
[ "$r" = banner ] && ok "TCP/$BLOCKED_PORT listener answers inside the server namespace (so the block is the appliances')" ||
    bad "TCP/$BLOCKED_PORT listener sanity" "got '$r'"

tlog "stickiness"
# 12 TCP flows with known client ports; each must have crossed exactly one appliance, both ways.
PORTS=$(seq 42001 42012)
for p in $PORTS; do
    cx curl -s -o /dev/null -m 5 --local-port "$p" "http://$SERVER_IP/" || bad "HTTP from client port $p"
done
sleep 1.2   # tcpdump -U in the guests and the aws flow log (rewritten every second)
D1=$(uml_flow_dirs "$UML1"); D2=$(uml_flow_dirs "$UML2"); DA=$(aws_flows)
sticky_bad="" on_uml=0 on_aws=0 used=""
for p in $PORTS; do
    k="$CLIENT_IP.$p|$SERVER_IP.80"
    m1=$(awk -v k="$k" '$1 == k {print $2}' <<<"$D1"); m2=$(awk -v k="$k" '$1 == k {print $2}' <<<"$D2")
    a=$(awk -v k="$k" '$1 == k {print $2 "/" $3}' <<<"$DA")
    if [ "$m1" = 3 ] && [ -z "$m2" ] && [ -z "$a" ]; then on_uml=$((on_uml + 1)); used+=" $APP1_IP"
    elif [ "$m2" = 3 ] && [ -z "$m1" ] && [ -z "$a" ]; then on_uml=$((on_uml + 1)); used+=" $APP2_IP"
    elif [ -n "$a" ] && [ -z "$m1" ] && [ -z "$m2" ] && [ "${a%/*}" = "${a#*/}" ] && [ "${a%/*}" -ge 4 ]; then
        on_aws=$((on_aws + 1)); used+=" $APP3_IP"
    else
        sticky_bad+=" port $p: app1='${m1}' app2='${m2}' aws='${a}';"
    fi
done
nused=$(tr ' ' '\n' <<<"$used" | grep . | sort -u | grep -c .)
[ -z "$sticky_bad" ] && ok "12 TCP flows: each seen on exactly one appliance, both directions there ($on_uml on UML [In lines both ways in flows.log], $on_aws on aws_appliance)" ||
    bad "both directions of a flow on one appliance" "$sticky_bad"
[ "$on_uml" -ge 1 ] && ok "at least one of them crossed a UML Linux-kernel appliance" || bad "a flow crossed a UML appliance"
[ "$nused" -ge 2 ] && ok "the 12 flows spread over $nused appliances" || bad "flows spread over more than one appliance" "$nused"

tlog "gwlb counters"
pid=$(cat "$WORK/gwlb.pid" 2>/dev/null)
check "gwlb still running after all tests" kill -0 "$pid"
gwlb_stop; rc=$?
[ "$rc" = 0 ] && ok "gwlb exits 0 on SIGINT" || bad "gwlb exits 0 on SIGINT" "exit code $rc"
sed 's/^/      /' "$WORK/gwlb.out"
enc=$(awk '/^worker/ {for (i = 1; i < NF; i++) if ($i == "encapsulated") s += $(i + 1)} END {print s + 0}' "$WORK/gwlb.out")
dec=$(awk '/^worker/ {for (i = 1; i < NF; i++) if ($i == "decapsulated") s += $(i + 1)} END {print s + 0}' "$WORK/gwlb.out")
[ "$enc" -gt 0 ] && [ "$dec" -gt 0 ] && ok "gwlb counters: encapsulated $enc > 0, decapsulated $dec > 0" ||
    bad "gwlb counters encapsulated/decapsulated > 0" "$enc / $dec"
for ip in "$APP1_IP" "$APP2_IP" "$APP3_IP"; do
    f=$(awk -v a="appliance $ip:" 'index($0, a) == 1 {print $NF}' "$WORK/gwlb.out")
    [ "${f:-0}" -gt 0 ] && ok "gwlb sent flows to appliance $ip ($f)" || bad "gwlb sent flows to appliance $ip" "flows '${f}'"
done
tlog "done"

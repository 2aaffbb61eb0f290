#!/usr/bin/env bash
# gwlb demo: a client and a server whose traffic is routed through gwlb, which sends every flow
# through one of three real Geneve appliances (two Linux kernels in User-Mode-Linux, one
# AWS-style user-space appliance), all in network namespaces on this machine.
#
#   sudo scripts/demo.sh        (Debian 12, root; about 20 s once built)
#
# Topology: see scripts/lib/topology.sh. Everything it creates (namespaces, UML guests, gwlb,
# helpers, /run/gwlb-demo) is removed when it ends, also on Ctrl-C, and leftovers of an
# interrupted run are removed first.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "demo: run as root (sudo scripts/demo.sh)" >&2; exit 2; }

scripts/install-deps.sh || exit 1
# shellcheck source=lib/topology.sh
source scripts/lib/topology.sh
topo_need_tools || exit 1
echo "demo: building gwlb and the AWS-style appliance (cargo build --release)" >&2
cargo build --release -q -p gwlb --bin gwlb || exit 1
cargo build --release -q -p geneve --example aws_appliance || exit 1

TOPO_T0=$(date +%s.%N)
cleanup() {
    trap - EXIT INT TERM
    tlog "cleaning up (namespaces, appliances, gwlb)"
    topo_cleanup
    tlog "clean"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted" >&2; exit 130' INT TERM
die() { echo "demo: $*" >&2; for f in gwlb.err aws.err; do [ -s "$WORK/$f" ] && tail -n 15 "$WORK/$f" >&2; done; exit 1; }

topo_cleanup
tlog "creating namespaces, bridges and veths"
topo_create || die "topology setup failed"
tlog "booting appliances: 2 x UML Linux kernel ($APP1_IP, $APP2_IP), 1 x aws_appliance ($APP3_IP)"
topo_start_appliances || die "appliances did not start"

gwlb_up || die "gwlb did not start, or no path client -> gwlb -> appliance -> server"

# Services on the server: HTTP on 80, iperf3 on 5201, a "telnet" listener on 23.
services "$NS_SERVER" "$SERVER_IP" "$BLOCKED_PORT" || die "server services did not start"
ip netns exec "$NS_SERVER" iperf3 -s -B "$SERVER_IP" >/dev/null 2>&1 &
for _ in $(seq 50); do ip netns exec "$NS_SERVER" ss -Hltn | grep -q ":5201 " && break; sleep 0.1; done

tlog "1/4 HTTP: 20 requests (20 TCP flows) client -> http://$SERVER_IP/"
http_ok=0
for _ in $(seq 20); do
    code=$(ip netns exec "$NS_CLIENT" curl -s -o /dev/null -m 5 -w '%{http_code}' "http://$SERVER_IP/")
    [ "$code" = 200 ] && http_ok=$((http_ok + 1))
done
seen_src=$(awk '$1 != "listening" {print $1}' "$WORK/httpd-$NS_SERVER.log" | sort -u | xargs)

tlog "2/4 iperf3 -t 3 client -> server"
iperf_out=$(ip netns exec "$NS_CLIENT" iperf3 -c "$SERVER_IP" -t 3 -f m 2>&1)
iperf_rx=$(awk '/receiver/ {print $(NF-2), $(NF-1)}' <<<"$iperf_out")
iperf_retr=$(awk '/sender/ {print $(NF-1)}' <<<"$iperf_out")

tlog "3/4 telnet (TCP/$BLOCKED_PORT) client -> server: the appliances' firewall must drop it"
t0=$(date +%s.%N)
if telnet_out=$(ip netns exec "$NS_CLIENT" timeout 5 socat -T3 - \
        "TCP:$SERVER_IP:$BLOCKED_PORT,connect-timeout=3" </dev/null 2>&1); then
    telnet_res="CONNECTED (not blocked!): $telnet_out"
else
    telnet_res="blocked: no answer, gave up after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
fi
local_res=$(ip netns exec "$NS_SERVER" timeout 3 socat -T2 - "TCP:$SERVER_IP:$BLOCKED_PORT" </dev/null 2>&1)

tlog "4/4 stopping gwlb (SIGINT) and collecting counters"
sleep 0.5
gw_alive=no; kill -0 "$(cat "$WORK/gwlb.pid" 2>/dev/null)" 2>/dev/null && gw_alive=yes
gwlb_stop; gw_rc=$?
sleep 0.3
AWS=$(aws_flows)
declare -A kind=([$APP1_IP]="UML Linux kernel" [$APP2_IP]="UML Linux kernel" [$APP3_IP]="aws_appliance")

{
echo
echo "==================================== gwlb demo REPORT ===================================="
echo "topology: client $CLIENT_IP --+                                   +-- UML Linux $APP1_IP"
echo "                                +-- gwlb (netns $NS_GW, $DRIVER) --+-- UML Linux $APP2_IP"
echo "          server $SERVER_IP --+   Geneve VNI $VNI, Maglev, 1 worker +-- aws_appliance $APP3_IP"
echo
echo "(1) HTTP  : $http_ok/20 requests OK (each a new TCP flow); source address the server saw: ${seen_src:-none} (no NAT)"
echo "(2) iperf3: ${iperf_rx:-failed} client -> server in 3 s (TCP retransmits: ${iperf_retr:-?})"
echo "            not a benchmark: veth + $DRIVER + a hashed appliance; the UML guests' raw-socket NIC"
echo "            loses packets at this rate (retransmits), flows through aws_appliance show none"
echo "(3) TCP/$BLOCKED_PORT : $telnet_res"
echo "             (same port from inside the server namespace: ${local_res:-no answer}: the listener is there)"
echo "(4) gwlb stopped with SIGINT (was running: $gw_alive, exit code $gw_rc). Its counters:"
sed 's/^/      /' "$WORK/gwlb.out"
echo
echo "    How flows spread, as each appliance saw them (TCP/UDP flows; ICMP not counted):"
printf '      %-11s %-17s %s\n' appliance kind "evidence"
for pair in "$APP1_IP $UML1" "$APP2_IP $UML2"; do
    set -- $pair
    dirs=$(uml_flow_dirs "$2")
    both=$(awk '$2 == 3' <<<"$dirs" | grep -c . || true)
    one=$(awk '$2 != 3' <<<"$dirs" | grep -c . || true)
    blk=$(awk -v p="$SERVER_IP.$BLOCKED_PORT" '$2 == 1 && index($1, p)' <<<"$dirs" | grep -c . || true)
    pin=$(uml_count "$2" ' gnv0 +In ')
    pout=$(uml_count "$2" ' gnv0 +Out ')
    printf '      %-11s %-17s flows.log: %s flows seen in both directions, %s one way only (%s of them TCP/%s, blocked); %s pkts in, %s out*\n' \
        "$1" "${kind[$1]}" "$both" "$one" "$blk" "$BLOCKED_PORT" "$pin" "$pout"
done
printf '      %-11s %-17s flow log: %s flows, %s pkts in, %s returned, %s blocked\n' "$APP3_IP" "${kind[$APP3_IP]}" \
    "$(grep -c . <<<"$AWS" || true)" $(awk '{i+=$2; r+=$3; b+=$4} END {print i+0, r+0, b+0}' <<<"$AWS")
multi=$( { uml_flow_dirs "$UML1"; uml_flow_dirs "$UML2"; awk '{print $1, 3}' <<<"$AWS"; } |
    awk 'NF {n[$1]++} END {m = 0; for (k in n) if (n[k] > 1) m++; print m}')
echo "      flows that reached more than one appliance: $multi (both directions of a flow use one appliance)"
echo "      * tcpdump in the UML guest logs only part of the packets at iperf rates; gwlb's counters are exact"
echo
echo "    Killing an appliance / health checks / failover: not in this demo yet (gwlb has no"
echo "    health checks yet; they come with a later issue)."
echo "==========================================================================================="
}
tlog "demo done"

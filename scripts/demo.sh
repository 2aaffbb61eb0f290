#!/usr/bin/env bash
# gwlb demo: a client and a server whose traffic is routed through gwlb, which sends every flow
# through one of three real Geneve appliances (two Linux kernels in User-Mode-Linux, one
# AWS-style user-space appliance), all in network namespaces on this machine. Shows HTTP and
# iperf3 through the appliances, the appliances' firewall at work, gwlb's per-appliance
# counters, and failover: one appliance is killed (gwlb's health checks notice, new and
# existing flows go on through the others), then restarted and taken back.
#
#   sudo scripts/demo.sh        (Debian 12, root; about 60 s once built, two UML boots)
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

# Services on the server: HTTP on 80, iperf3 on 5201, a "telnet" listener on 23, UDP echo.
services "$NS_SERVER" "$SERVER_IP" "$BLOCKED_PORT" || die "server services did not start"
udp_echo "$NS_SERVER" "$SERVER_IP" || die "UDP echo did not start"
ip netns exec "$NS_SERVER" iperf3 -s -B "$SERVER_IP" >/dev/null 2>&1 &
for _ in $(seq 50); do ip netns exec "$NS_SERVER" ss -Hltn | grep -q ":5201 " && break; sleep 0.1; done

tlog "1/6 HTTP: 20 requests (20 TCP flows) client -> http://$SERVER_IP/"
http_ok=0
for _ in $(seq 20); do
    code=$(ip netns exec "$NS_CLIENT" curl -s -o /dev/null -m 5 -w '%{http_code}' "http://$SERVER_IP/")
    [ "$code" = 200 ] && http_ok=$((http_ok + 1))
done
seen_src=$(awk '$1 != "listening" {print $1}' "$WORK/httpd-$NS_SERVER.log" | sort -u | xargs)

tlog "2/6 iperf3 -t 3 client -> server"
iperf_out=$(ip netns exec "$NS_CLIENT" iperf3 -c "$SERVER_IP" -t 3 -f m 2>&1)
iperf_rx=$(awk '/receiver/ {print $(NF-2), $(NF-1)}' <<<"$iperf_out")
iperf_retr=$(awk '/sender/ {print $(NF-1)}' <<<"$iperf_out")

tlog "3/6 telnet (TCP/$BLOCKED_PORT) client -> server: the appliances' firewall must drop it"
t0=$(date +%s.%N)
if telnet_out=$(ip netns exec "$NS_CLIENT" timeout 5 socat -T3 - \
        "TCP:$SERVER_IP:$BLOCKED_PORT,connect-timeout=3" </dev/null 2>&1); then
    telnet_res="CONNECTED (not blocked!): $telnet_out"
else
    telnet_res="blocked: no answer, gave up after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
fi
local_res=$(ip netns exec "$NS_SERVER" timeout 3 socat -T2 - "TCP:$SERVER_IP:$BLOCKED_PORT" </dev/null 2>&1)

# What gwlb says about its appliances right now: the report reads only gw_targets/gw_stats
# (scripts/lib/topology.sh), the one place to switch to the `gwlb targets` / `gwlb stats` CLI.
targets_table() {
    printf '      %-11s %-17s %-9s %9s %7s\n' appliance kind state packets flows
    gw_targets | while read -r ip st pk fl; do
        printf '      %-11s %-17s %-9s %9s %7s\n' "$ip" "${kind[$ip]}" "$st" "$pk" "$fl"
    done
}
declare -A kind=([$APP1_IP]="UML Linux kernel" [$APP2_IP]="UML Linux kernel" [$APP3_IP]="aws_appliance")
gw_wait_report
targets_before=$(targets_table)

tlog "4/6 24 long-lived UDP flows client -> server (one datagram per flow every 50 ms)"
SLO=46001 SHI=46024
streams_start "$SLO" "$SHI"
st=$(flows_seen "$SLO" "$SHI")
n1=$(awk -v a="$APP1_IP" '$1 == a' <<<"$st" | grep -c .)
n2=$(awk -v a="$APP2_IP" '$1 == a' <<<"$st" | grep -c .)
if [ "$n1" -ge "$n2" ]; then V=1 VIP=$APP1_IP; else V=2 VIP=$APP2_IP; fi
VPORTS=$(awk -v a="$VIP" '$1 == a {print $2}' <<<"$st" | xargs)
spread=$(awk '{print $1}' <<<"$st" | sort | uniq -c | awk '{printf "%s on %s, ", $1, $2}')

tlog "5/6 killing UML appliance $VIP (SIGKILL, no shutdown)"
t_kill=$(date +%s.%N)
uml_kill "$V"
det_res="NOT detected within 10 s"
if line=$(gw_wait_health "$VIP" unhealthy "$t_kill" 10); then
    read -r t_det _ _ det_reason <<<"$line"
    det_res="marked unhealthy $(elapsed_ms "$t_kill" "$t_det") ms after the kill (bound $(hc_detect_bound_ms) ms); gwlb: \"$det_reason\""
else
    t_det=$(date +%s.%N)
fi
sleep 0.5
http_after=0
for _ in $(seq 10); do
    [ "$(ip netns exec "$NS_CLIENT" curl -s -o /dev/null -m 5 -w '%{http_code}' "http://$SERVER_IP/")" = 200 ] &&
        http_after=$((http_after + 1))
done
burst_after=$(udp_burst 47001 47040)
sleep 1
moved="" gaps=""
st2=$(flows_seen "$SLO" "$SHI")
for p in $VPORTS; do
    nafter=$(awk -v p="$p" -v t="$t_det" '$2 == p && $1 > t + 0.5' "$WORK/streams.log" | grep -c .)
    gap=$(awk -v p="$p" -v a="$t_kill" '$2 == p {if (last != "" && $1 > a && $1 - last > g) g = $1 - last; last = $1}
        END {printf "%d", g * 1000}' "$WORK/streams.log")
    where=$(awk -v p="$p" -v a="$VIP" '$2 == p && $1 != a {print $1}' <<<"$st2" | xargs)
    moved+="$p -> ${where:-nowhere} ($nafter answers since, gap ${gap} ms); "
done
gw_wait_report
targets_dead=$(targets_table)

tlog "6/6 restarting $VIP (UML boot)"
t_start=$(date +%s.%N)
uml_start "$V" || die "could not restart $VIP: $(tail -n 5 "$WORK/uml$V.log")"
back_res="NOT healthy within 10 s"
line=$(gw_wait_health "$VIP" healthy "$t_start" 10) &&
    back_res="healthy again $(elapsed_ms "$t_start" "$(cut -d' ' -f1 <<<"$line")") ms after the restart began (boot included)"
burst_back=$(udp_burst 48001 48040)
back_flows=$(flows_seen 48001 48040 | awk -v a="$VIP" '$1 == a' | grep -c .)
stayed=$(flows_seen "$SLO" "$SHI" | awk -v a="$VIP" '$1 == a' | grep -c .)
kill -INT "$(cat "$WORK/streams.pid")" 2>/dev/null; rm -f "$WORK/streams.pid"

tlog "stopping gwlb (SIGINT) and collecting counters"
sleep 0.5
gw_alive=no; kill -0 "$(cat "$WORK/gwlb.pid" 2>/dev/null)" 2>/dev/null && gw_alive=yes
gwlb_stop; gw_rc=$?
sleep 0.3
targets_end=$(targets_table)
AWS=$(aws_flows)

{
echo
echo "==================================== gwlb demo REPORT ===================================="
echo "topology: client $CLIENT_IP --+                                   +-- UML Linux $APP1_IP (weight $W1)"
echo "                                +-- gwlb (netns $NS_GW, $DRIVER) --+-- UML Linux $APP2_IP (weight $W2)"
echo "          server $SERVER_IP --+   Geneve VNI $VNI, Maglev, 1 worker +-- aws_appliance $APP3_IP (weight $W3)"
echo "          health checks: TCP :$HC_PORT every $HC_INTERVAL_MS ms from $GW_APP_IP (exception path $GW_APP_KIF),"
echo "          unhealthy/healthy after $HC_THRESHOLD; on_unhealthy = $ON_UNHEALTHY; appliance MACs learned by ARP"
echo
echo "(1) HTTP  : $http_ok/20 requests OK (each a new TCP flow); source address the server saw: ${seen_src:-none} (no NAT)"
echo "(2) iperf3: ${iperf_rx:-failed} client -> server in 3 s (TCP retransmits: ${iperf_retr:-?})"
echo "            not a benchmark: veth + $DRIVER + UML guests whose raw-socket NIC drops packets at"
echo "            this rate (retransmits); a flow that hashes to aws_appliance shows none"
echo "(3) TCP/$BLOCKED_PORT : $telnet_res"
echo "             (same port from inside the server namespace: ${local_res:-no answer}: the listener is there)"
echo "    gwlb's per-appliance counters after (1)-(3):"
echo "$targets_before"
echo
echo "(4) 24 long-lived UDP flows: ${spread%, }"
echo "(5) killed $VIP: $det_res"
echo "    new connections while it is down: HTTP $http_after/10 OK; UDP ${burst_after%%$'\n'*}"
echo "    its $(wc -w <<<"$VPORTS") long-lived flows ($ON_UNHEALTHY): ${moved%; }"
echo "$targets_dead"
echo "(6) restarted $VIP: $back_res"
echo "    40 new UDP flows: ${burst_back%%$'\n'*}, $back_flows of them on $VIP (weight share $((100 * W$V / (W1 + W2 + W3))) %)"
echo "    moved flows back on $VIP: $stayed (they stay where they were rebalanced to)"
echo
echo "gwlb stopped with SIGINT (was running: $gw_alive, exit code $gw_rc). Final per-appliance counters:"
echo "$targets_end"
echo "    and per worker (drops by reason):"
gw_stats | grep -v '^appliance' | sed 's/^/      /'
echo "    health transitions gwlb logged:"
gw_health_lines | while read -r t s ip r; do
    printf '      +%6.1f s  %-9s %s  (%s)\n' "$(awk -v a="$TOPO_T0" -v b="$t" 'BEGIN {print b - a}')" "$s" "$ip" "$r"
done
echo "    (flows: new flows gwlb gave the appliance plus flows moved to it; neighbor_unresolved: packets"
echo "     of the first moments, before gwlb had learned the appliances' MACs)"
echo "    aws_appliance's own flow log: $(grep -c . <<<"$AWS" || true) flows, $(awk '{i += $2; r += $3; b += $4} END {printf "%d pkts in, %d returned, %d blocked", i, r, b}' <<<"$AWS")"
echo "==========================================================================================="
}
tlog "demo done"

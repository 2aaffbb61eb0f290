#!/usr/bin/env bash
# End-to-end test of scale-out: two gwlb nodes behind a real FRR router doing ECMP with L4
# hashing, announced by BGP (BIRD run by gwlb) with BFD, in front of two real appliances (a
# User-Mode-Linux kernel-Geneve one with a fixed remote, and the AWS-style one); topology in
# scripts/lib/cluster.sh. Asserts: both nodes carry flows; a flow reaches one appliance
# whichever node carried each direction; a drain resets no connection; `kill -9` of a node
# under an iperf3 transfer and 20 long-lived UDP flows: the router drops it in under 1 s (its
# own table), iperf3 completes, UDP gaps stay under 1 s, no flow changes appliance; the node
# restarts, re-joins and carries flows again; an appliance failure seen by both nodes, and
# how long they disagree (bounded by the health-check detection time).
#
#   sudo scripts/e2e-cluster.sh    (root; builds target/release/gwlb and aws_appliance if
#                                   missing; about 2 minutes, one UML boot included)
#
# Prints PASS/FAIL per check and "N passed, M failed" last; exit 0 only if all passed.
# With CLUSTER_REPORT=FILE the measured figures are also written to FILE (the demo's report).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OWN_BINS=${GWLB_BIN:-}${AWS_BIN:-}
[ "$(id -u)" = 0 ] || { echo "e2e-cluster: run as root" >&2; exit 2; }
# shellcheck source=lib/cluster.sh
source scripts/lib/cluster.sh

# shellcheck source=lib/checks.sh
source scripts/lib/checks.sh
REPORT=${CLUSTER_REPORT:-/dev/null}
: > "$REPORT"
figure() { echo "$*" | tee -a "$REPORT"; }
abort() {
    bad "$1" "${2:-}"
    for f in n1.err n2.err aws.err uml.log frr/bgpd.log; do
        [ -s "$CW/$f" ] && { echo "--- $CW/$f"; tail -n 15 "$CW/$f"; }
    done
    exit 1
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    cl_cleanup
    checks_summary
    checks_exit "$rc"
}
CL_T0=$(date +%s.%N)
trap cleanup EXIT
trap 'echo "e2e-cluster: interrupted" >&2; exit 130' INT TERM

for t in linux.uml iperf3 jq /usr/lib/frr/bgpd /usr/sbin/bird nstat; do
    command -v "$t" >/dev/null || [ -x "$t" ] || { echo "e2e-cluster: $t missing: run scripts/install-deps.sh" >&2; FAIL=1; exit 1; }
done
# Built (a no-op when up to date) unless GWLB_BIN/AWS_BIN name binaries of their own: a stale
# target/release/gwlb would test old code.
if [ -z "$OWN_BINS" ] || [ ! -x "$GWLB_BIN" ] || [ ! -x "$AWS_BIN" ]; then
    cargo build --release -q -p gwlb --bin gwlb && cargo build --release -q -p geneve --example aws_appliance ||
        abort "build"
fi

cx() { ip netns exec "$NS_C" "$@"; }
sx() { ip netns exec "$NS_S" "$@"; }
# per-node JSON
stats() { cl_gwlb "$1" stats --json 2>/dev/null; }
encap_of() { stats "$1" | jq -r '.total.encapsulated // 0'; }
target_state() { cl_gwlb "$1" targets --json 2>/dev/null | jq -r --arg a "$2" '.[].targets[] | select(.address == $a) | .state'; }
resets() { # TcpEstabResets + TcpExtTCPAbortOnData + ...OnClose in the client and server
    local ns s=0 v
    for ns in "$NS_C" "$NS_S"; do
        v=$(ip netns exec "$ns" nstat -az TcpEstabResets TcpExtTCPAbortOnData TcpExtTCPAbortOnClose 2>/dev/null |
            awk 'NR > 1 {s += $2} END {print s + 0}')
        s=$((s + v))
    done
    echo "$s"
}
# iperf_summary JSON: "X Mbit/s received, N bytes, R retransmits"
iperf_summary() {
    jq -r '"\(.end.sum_received.bits_per_second / 1e6 * 10 | floor / 10) Mbit/s received, \(.end.sum_received.bytes) bytes, \(.end.sum_sent.retransmits) retransmits"' "$1" 2>/dev/null
}
# iperf_ok JSON NAME: passes if iperf3 reported no error and received at least 80 % of the
# bytes it sent (a transfer that stalls for good receives far less).
iperf_ok() {
    local err sent got
    err=$(jq -r '.error // empty' "$1" 2>/dev/null)
    sent=$(jq -r '.end.sum_sent.bytes // 0' "$1" 2>/dev/null) got=$(jq -r '.end.sum_received.bytes // 0' "$1" 2>/dev/null)
    if [ -z "$err" ] && [ "${got:-0}" -gt 0 ] && [ $((got * 10)) -ge $((sent * 8)) ]; then
        ok "$2 completed: $(iperf_summary "$1")"
    else
        bad "$2" "${err:-received $got of $sent bytes}"
    fi
}
# test flow keys (client <-> server only) seen by both appliances: must be none
both_appliances() {
    comm -12 <(cl_uml_flows | grep -F "$C_IP." | grep -F "$S_IP.") <(cl_aws_flows | grep -F "$C_IP." | grep -F "$S_IP.")
}

cl_cleanup
ctlog "topology: router, client, server, two nodes, appliance subnet"
cl_create || abort "topology setup"
cl_router_start || abort "FRR router starts"
ctlog "appliances: UML kernel Geneve ($A1_IP, remote $CLUSTER_IP) and aws_appliance ($A2_IP)"
cl_appliances_start || abort "appliances start"
ctlog "nodes: gwlb + BIRD on gwc-n1 and gwc-n2"
cl_node_start 1 || abort "node 1 starts"
cl_node_start 2 || abort "node 2 starts"
ok "two gwlb nodes run (BIRD announcing through their exception paths)"

t=$(cl_wait_nexthops 10.40.2.0/25 2 40) && ok "the router has two ECMP next hops for the service prefixes after ${t}s" ||
    abort "the router learns both nodes" "$(ip -n "$NS_R" route show 10.40.2.0/25); $(cl_vtysh show bgp summary)"
check "the router has both nodes for the cluster address $CLUSTER_IP" cl_wait_nexthops "$CLUSTER_IP" 2 10
# BFD comes up after BGP (routing-lab pitfall 3): wait for both sessions.
for _ in $(seq 100); do [ "$(cl_vtysh show bfd peers brief | grep -c ' up ')" -ge 2 ] && break; sleep 0.1; done
check "BFD is up with both nodes (router's view)" test "$(cl_vtysh show bfd peers brief | grep -c ' up ')" -ge 2
for n in 1 2; do
    check "node $n shows its session established and the prefixes announced (gwlb stats)" \
        test "$(stats $n | jq -r '.routing.announced and .routing.sessions[0].established')" = true
done
check "both nodes pick the same appliances (check-config --compare)" "$GWLB_BIN" check-config --config "$CW/n1.toml" --compare "$CW/n2.toml"
check "both nodes show the same choice digest" test "$(stats 1 | jq -r .choice_digest)" = "$(stats 2 | jq -r .choice_digest)"
for n in 1 2; do
    for _ in $(seq 60); do
        [ "$(target_state $n $A1_IP)$(target_state $n $A2_IP)" = healthyhealthy ] && break; sleep 0.25
    done
    check "node $n sees both appliances healthy (its own health checks, through the router)" \
        test "$(target_state $n $A1_IP)$(target_state $n $A2_IP)" = healthyhealthy
done

# services on the server
mkdir -p "$CW/www"
echo "hello from the server" > "$CW/www/index.html"
sx "$PY" scripts/lib/httpd.py "$S_IP" 80 "$CW/www" 2>"$CW/httpd.log" &
sx "$PY" scripts/lib/udpflows.py echo "$S_IP" 5354 2>"$CW/udpecho.log" &
sx iperf3 -s -B "$S_IP" >/dev/null 2>&1 &
sx socat "TCP-LISTEN:$CL_BLOCKED,bind=$S_IP,reuseaddr,fork" SYSTEM:'echo banner' >/dev/null 2>&1 &
for _ in $(seq 50); do
    sx ss -Hltn | grep -q "$S_IP:5201 " && sx ss -Hltn | grep -q "$S_IP:80 " && sx ss -Hlun | grep -q "$S_IP:5354 " && break
    sleep 0.1
done

ctlog "1. flows over both nodes, one appliance per flow"
http_ok=0
for p in $(seq 30001 30040); do
    [ "$(cx curl -s -m 5 --local-port "$p" "http://$S_IP/")" = "hello from the server" ] && http_ok=$((http_ok + 1))
done
[ "$http_ok" = 40 ] && ok "40 HTTP requests (40 TCP flows) client -> server" || bad "40 HTTP requests" "$http_ok of 40 answered"
r=$(cx "$PY" scripts/lib/udpflows.py burst --src "$C_IP" --dst "$S_IP" --port 5354 --sports 20000-20099 --timeout 2)
[ $? = 0 ] && ok "100 UDP flows answered ($r)" || bad "100 UDP flows answered" "$r"
check "the appliances' firewall still blocks TCP/$CL_BLOCKED" bash -c "! ip netns exec $NS_C socat -T 2 - TCP:$S_IP:$CL_BLOCKED,connect-timeout=2 </dev/null | grep -q banner"
e1=$(encap_of 1) e2=$(encap_of 2)
figure "flows: node 1 encapsulated $e1 packets, node 2 $e2"
[ "$e1" -gt 0 ] && [ "$e2" -gt 0 ] && ok "both nodes carry flows (encapsulated: $e1 / $e2)" || bad "both nodes carry flows" "$e1 / $e2"
cl_gwlb 1 flows --all --json 2>/dev/null | jq -r '.flows[] | "\(.addr_a).\(.port_a)|\(.addr_b).\(.port_b) \(.appliance)"' | sort > "$CW/flows1"
cl_gwlb 2 flows --all --json 2>/dev/null | jq -r '.flows[] | "\(.addr_a).\(.port_a)|\(.addr_b).\(.port_b) \(.appliance)"' | sort > "$CW/flows2"
split=$(join "$CW/flows1" "$CW/flows2" | wc -l)
split_other=$(join "$CW/flows1" "$CW/flows2" | awk '$2 != $3' | wc -l)
figure "split flows (one direction through each node): $split, with different appliances on the two nodes: $split_other"
[ "$split" -gt 0 ] && ok "$split flows had their two directions on different nodes" || bad "some flows split over the nodes" "none (ECMP hashing?)"
[ "$split_other" = 0 ] && ok "each split flow has the same appliance on both nodes" || bad "split flows keep one appliance" "$split_other differ"
sr1=$(stats 1 | jq -r '.total.stateless_returns') sr2=$(stats 2 | jq -r '.total.stateless_returns')
figure "returns a node took for flows it never saw (the appliance's choice only): node 1 $sr1, node 2 $sr2"
[ $((sr1 + sr2)) -gt 0 ] && ok "returns reach either node through the cluster address and are taken for unseen flows ($sr1 / $sr2)" ||
    bad "returns for unseen flows taken" "$sr1 / $sr2"
uml_n=$(cl_uml_flows | grep -cF "$S_IP.") aws_n=$(cl_aws_flows | grep -cF "$S_IP.")
dup=$(both_appliances | wc -l)
figure "appliances: UML saw $uml_n client-server flows, aws_appliance $aws_n, both: $dup"
[ "$uml_n" -gt 0 ] && [ "$aws_n" -gt 0 ] && ok "both appliances inspect flows ($uml_n / $aws_n)" || bad "both appliances inspect flows" "$uml_n / $aws_n"
[ "$dup" = 0 ] && ok "no flow reached both appliances (both directions, whichever node)" || bad "no flow reached both appliances" "$dup: $(both_appliances | head -3 | xargs)"

ctlog "2. drain of node 1 under traffic: withdrawn, no connection reset"
r0=$(resets)
cx iperf3 -J -c "$S_IP" -t 5 -b 40M --cport 40100 >"$CW/iperf-drain.json" 2>&1 &
ip=$!
cx "$PY" scripts/lib/udpflows.py stream --src "$C_IP" --dst "$S_IP" --port 5354 --sports 21000-21019 --interval 0.05 --log "$CW/udp-drain.log" &
up=$!
sleep 1.5
cl_gwlb 1 drain >/dev/null 2>&1 || bad "gwlb drain on node 1"
t=$(cl_wait_nexthops 10.40.2.0/25 1 5) && { ok "drain: the router withdrew node 1 after ${t}s"; figure "drain: withdrawn from the router after ${t}s"; } || bad "drain withdraws node 1"
check "node 1 reports draining, withdrawn for draining" test "$(cl_gwlb 1 stats --json | jq -r '.routing.withdrawn_because')" = draining
wait $ip; iperf_ok "$CW/iperf-drain.json" "iperf3 (40 Mbit/s, 5 s) across the drain"
kill -TERM $up 2>/dev/null; wait $up 2>/dev/null
r1=$(resets)
[ "$r1" = "$r0" ] && ok "no TCP connection reset by the drain (client and server resets: $r0 -> $r1)" || bad "no reset by the drain" "$r0 -> $r1"
cl_gwlb 1 drain --resume >/dev/null 2>&1
t=$(cl_wait_nexthops 10.40.2.0/25 2 10) && ok "resume: node 1 back in the ECMP set after ${t}s" || bad "resume announces node 1"
# BFD slow start after the session is back (routing-lab pitfall 3): let it settle.
sleep 4

ctlog "3. kill -9 of a node under iperf3 and 20 long-lived UDP flows"
victim=$(ip -n "$NS_R" route get "$S_IP" from "$C_IP" iif rc ipproto tcp sport 40200 dport 5201 | grep -o 'via 10\.41\.[12]\.1' | cut -d. -f3)
[ -n "$victim" ] || victim=1
cl_uml_flows > "$CW/uml-before" ; cl_aws_flows > "$CW/aws-before"
cx iperf3 -J -c "$S_IP" -t 8 -b 40M --cport 40200 >"$CW/iperf-kill.json" 2>&1 &
ip=$!
cx "$PY" scripts/lib/udpflows.py stream --src "$C_IP" --dst "$S_IP" --port 5354 --sports 22000-22019 --interval 0.05 --log "$CW/udp-kill.log" &
up=$!
sleep 2.5
kill_t=$(date +%s.%N)
cl_node_kill "$victim"
t=$(cl_wait_nexthops 10.40.2.0/25 1 5)
if [ -n "$t" ]; then
    figure "kill -9 of node $victim: the router dropped it after ${t}s (its own table, BFD 100 ms x 3)"
    awk -v t="$t" 'BEGIN{exit !(t < 1.0)}' && ok "the router dropped the killed node $victim in ${t}s (< 1 s)" || bad "router drops the killed node in < 1 s" "${t}s"
else
    bad "the router drops the killed node" "still $(cl_nexthops 10.40.2.0/25 | wc -l) next hops after 5 s"
fi
wait $ip; iperf_ok "$CW/iperf-kill.json" "iperf3 (40 Mbit/s, 8 s) across the kill"
figure "iperf3 across the kill: $(iperf_summary "$CW/iperf-kill.json")"
sleep 1
kill -TERM $up 2>/dev/null; wait $up 2>/dev/null
gap=$(awk -v k="$kill_t" '{ if ($2 in last) { g = $1 - last[$2]; if (g > max[$2]) max[$2] = g } ; last[$2] = $1 }
    END { m = 0; n = 0; for (p in max) { n++; if (max[p] > m) m = max[p] }; printf "%.3f %d\n", m, n }' "$CW/udp-kill.log")
figure "UDP: largest gap between answers of one of the 20 flows: ${gap% *}s (flows answered: ${gap#* })"
[ "${gap#* }" = 20 ] && awk -v g="${gap% *}" 'BEGIN{exit !(g < 1.0)}' && ok "20 UDP flows: largest gap ${gap% *}s (< 1 s)" || bad "UDP gaps under 1 s" "$gap"
moved=$(both_appliances | wc -l)
figure "flows that changed appliance across the kill: $moved"
[ "$moved" = 0 ] && ok "no flow changed appliance across the kill" || bad "no flow changed appliance" "$moved: $(both_appliances | head -3 | xargs)"

ctlog "   node $victim restarts and re-joins"
cl_node_start "$victim" || abort "node $victim restarts"
t=$(cl_wait_nexthops 10.40.2.0/25 2 40) && { ok "node $victim re-joined the ECMP set ${t}s after its restart"; figure "restart: back in the ECMP set after ${t}s"; } ||
    bad "node $victim re-joins" "$(cl_vtysh show bgp summary)"
for _ in $(seq 60); do
    [ "$(target_state "$victim" $A1_IP)$(target_state "$victim" $A2_IP)" = healthyhealthy ] && break; sleep 0.25
done
r=$(cx "$PY" scripts/lib/udpflows.py burst --src "$C_IP" --dst "$S_IP" --port 5354 --sports 23000-23059 --timeout 2)
[ $? = 0 ] && ok "60 new UDP flows after the re-join answered" || bad "new flows after the re-join" "$r"
e=$(encap_of "$victim")
[ "$e" -gt 0 ] && ok "the restarted node $victim carries flows again (encapsulated $e)" || bad "the restarted node carries flows" "encapsulated $e"
check "still no flow at both appliances" test "$(both_appliances | wc -l)" = 0

ctlog "4. an appliance fails: each node detects it on its own; how long they disagree"
bound_ms=$(( CL_HC_THRESHOLD * CL_HC_INTERVAL_MS * 11 / 10 + CL_HC_TIMEOUT_MS + 500 ))
kill -KILL "$(cat "$CW/aws.pid")"
t0=$(date +%s.%N) d1= d2=
while [ -z "$d1" ] || [ -z "$d2" ]; do
    now=$(date +%s.%N)
    el=$(awk -v a="$t0" -v b="$now" 'BEGIN{printf "%d", (b-a)*1000}')
    [ -z "$d1" ] && [ "$(target_state 1 $A2_IP)" = unhealthy ] && d1=$el
    [ -z "$d2" ] && [ "$(target_state 2 $A2_IP)" = unhealthy ] && d2=$el
    [ "$el" -gt 10000 ] && break
    sleep 0.05
done
figure "appliance killed: node 1 marked it unhealthy after ${d1:-never} ms, node 2 after ${d2:-never} ms (bound ${bound_ms} ms)"
if [ -n "$d1" ] && [ -n "$d2" ]; then
    diff=$(( d1 > d2 ? d1 - d2 : d2 - d1 ))
    [ "$d1" -le "$bound_ms" ] && [ "$d2" -le "$bound_ms" ] && ok "both nodes detected the dead appliance within the bound (${d1} / ${d2} ms <= ${bound_ms} ms)" ||
        bad "detection within the bound" "${d1} / ${d2} ms > ${bound_ms} ms"
    ok "the nodes disagreed for ${diff} ms (<= the detection bound)"
    figure "health views disagreed for ${diff} ms"
else
    bad "both nodes detect the dead appliance" "node 1: ${d1:-never}, node 2: ${d2:-never}"
fi
r=$(cx "$PY" scripts/lib/udpflows.py burst --src "$C_IP" --dst "$S_IP" --port 5354 --sports 24000-24039 --timeout 2)
[ $? = 0 ] && ok "40 new UDP flows answered with one appliance left" || bad "flows with one appliance left" "$r"
cl_aws_start || bad "aws_appliance restarts"
for _ in $(seq 80); do
    [ "$(target_state 1 $A2_IP)$(target_state 2 $A2_IP)" = healthyhealthy ] && break; sleep 0.1
done
check "both nodes take the restarted appliance back" test "$(target_state 1 $A2_IP)$(target_state 2 $A2_IP)" = healthyhealthy

for n in 1 2; do
    kill -0 "$(cat "$CW/n$n.pid")" 2>/dev/null && ok "node $n still running" || bad "node $n still running"
done

ctlog "5. path MTU discovery: the nodes restart with MTU 1500 toward the appliances"
# 1500 - 68 bytes of Geneve: the largest user packet is now 1432 bytes, less than the client's
# and server's 1500: full-size TCP segments only pass once the ends have learnt that from
# gwlb's ICMP "fragmentation needed".
for n in 1 2; do
    cl_node_stop "$n"
    CL_NODE_MTU=1500 cl_node_start "$n" || abort "node $n restarts with MTU 1500"
done
cl_wait_nexthops 10.40.2.0/25 2 40 >/dev/null || bad "both nodes back after the MTU restart"
for n in 1 2; do
    for _ in $(seq 60); do
        [ "$(target_state $n $A1_IP)$(target_state $n $A2_IP)" = healthyhealthy ] && break; sleep 0.25
    done
done
for ns in "$NS_C" "$NS_S"; do ip -n "$ns" route flush cache; done
head -c 2000000 /dev/urandom > "$CW/www/blob.bin"
got=$(cx curl -s -m 20 "http://$S_IP/blob.bin" | cmp - "$CW/www/blob.bin" && echo same)
[ "$got" = same ] && ok "a 2 MB HTTP download completes through a 1500-byte appliance side" || bad "2 MB download with MTU 1500" "${got:-stalled or different}"
pmtu=$(cx tracepath -n -m 5 "$S_IP" 2>/dev/null | grep -o 'pmtu [0-9]*' | tail -n 1)
figure "path MTU: tracepath from the client reports '${pmtu:-nothing}'"
[ "$pmtu" = "pmtu 1432" ] && ok "tracepath reports the reduced path MTU ($pmtu)" || bad "tracepath reports pmtu 1432" "${pmtu:-nothing}"
i1=$(stats 1 | jq -r '.total.icmp_too_big') i2=$(stats 2 | jq -r '.total.icmp_too_big')
figure "ICMP too-big sent: node 1 $i1, node 2 $i2"
[ $((i1 + i2)) -gt 0 ] && ok "the nodes sent ICMP fragmentation-needed ($i1 / $i2)" || bad "ICMP fragmentation-needed sent" "$i1 / $i2"
ctlog "done"

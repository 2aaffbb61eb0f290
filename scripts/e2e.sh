#!/usr/bin/env bash
# End-to-end test of gwlb with real appliances: the demo's topology (scripts/lib/topology.sh:
# client and server routed through gwlb, two UML Linux-kernel Geneve appliances and one
# AWS-style appliance, all blocking TCP/23; TCP health checks through gwlb's exception path),
# non-interactive, with assertions: forwarding both ways, no NAT, payload, the firewall,
# stickiness, health checks and neighbour learning, weights, bad and oversize traffic, jumbo
# frames (8,900-byte packets through both appliance kinds), an appliance killed (detection
# time, failover with on_unhealthy = rebalance) and restarted.
#
# The appliance side's MTU is APP_MTU (default here 9000; the demo's is 1600). Jumbo links
# need net_af_packet (DPDK 22.11's af_xdp carries at most a 4 KiB frame), so scripts/test.sh
# also runs the suite with APP_MTU=1600, where net_af_xdp is used where it works.
#
#   sudo scripts/e2e.sh        (root; expects target/release/gwlb and the aws_appliance
#                               example built, or builds them; about 90 s, two UML boots
#                               included)
#
# Prints PASS/FAIL per check and "N passed, M failed" as its last line; exit status 0 only
# if every check passed. GWLB_DRIVER=af_packet|af_xdp forces gwlb's port driver (default:
# af_xdp, falling back to af_packet; af_packet when a link is larger than 3000 bytes). Removes everything it created, also on Ctrl-C.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OWN_BINS=${GWLB_BIN:-}${AWS_BIN:-}
[ "$(id -u)" = 0 ] || { echo "e2e: run as root" >&2; exit 2; }
# The appliance side carries jumbo frames (9000 bytes; the demo uses 1600).
export APP_MTU=${APP_MTU:-9000}
# shellcheck source=lib/topology.sh
source scripts/lib/topology.sh
export GWLB_DEMO_WORK=${GWLB_DEMO_WORK:-/run/gwlb-demo}

# shellcheck source=lib/checks.sh
source scripts/lib/checks.sh
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
    checks_summary
    checks_exit "$rc"
}
TOPO_T0=$(date +%s.%N)
trap cleanup EXIT
trap 'echo "e2e: interrupted" >&2; exit 130' INT TERM

command -v linux.uml >/dev/null && command -v socat >/dev/null && command -v iperf3 >/dev/null ||
    { echo "e2e: missing tools: run scripts/install-deps.sh" >&2; FAIL=1; exit 1; }
topo_need_tools
# Built (a no-op when up to date) unless GWLB_BIN/AWS_BIN name binaries of their own: a stale
# target/release/gwlb would test old code.
if [ -z "$OWN_BINS" ] || [ ! -x "$GWLB_BIN" ] || [ ! -x "$AWS_BIN" ]; then
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
udp_echo "$NS_SERVER" "$SERVER_IP" || abort "UDP echo in $NS_SERVER"
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

tlog "health checks, exception path, neighbour learning"
# Probes leave from the gateway's own address through DPDK: capture them on an appliance link.
n=$(ip netns exec "$NS_APP3" timeout 3 tcpdump -i eth0 -n -c 3 \
    "tcp dst port $HC_PORT and src host $GW_APP_IP and tcp[tcpflags] & tcp-syn != 0" 2>/dev/null | grep -c .)
[ "$n" = 3 ] && ok "health-check probes (TCP SYN to :$HC_PORT from $GW_APP_IP) arrive at $APP3_IP: 3 within 3 s (interval ${HC_INTERVAL_MS} ms)" ||
    bad "health-check probes from $GW_APP_IP arrive at $APP3_IP" "$n SYNs in 3 s"
neigh=$(ip -n "$NS_GW" neigh show dev "$GW_APP_KIF")
learned=0
for pair in "$APP1_IP $APP1_MAC" "$APP2_IP $APP2_MAC" "$APP3_IP $APP3_MAC"; do
    read -r ip mac <<<"$pair"
    grep -q "^$ip lladdr $mac " <<<"$neigh" && learned=$((learned + 1))
done
[ "$learned" = 3 ] && ok "the gateway kernel resolved all 3 appliances on $GW_APP_KIF (gwlb learns their MACs from it; none configured)" ||
    bad "appliance MACs resolved on $GW_APP_KIF" "$(tr '\n' ';' <<<"$neigh")"
g=$(ip -n "$NS_APP3" neigh show "$GW_APP_IP")
[[ "$g" == *"lladdr $GW_APP_MAC"* && "$g" != *PERMANENT* ]] &&
    ok "the appliances learn the gateway by ARP through the exception path ($APP3_IP: $g)" ||
    bad "appliance $APP3_IP resolved $GW_APP_IP by ARP" "'$g'"

tlog "weights"
# Each new flow lands on appliance i with probability p_i = W_i / sum(W) (Maglev, table 1021).
# The count on i is binomial(n, p_i): accept |count - n p_i| <= 4 sd + 1 % of n (the 1 % covers
# the Maglev table's own deviation from the exact weights; 4 sd: a false failure ~1e-4).
NW=400 WLO=44001
if r=$(udp_burst "$WLO" $((WLO + NW - 1))); then ok "weights: $NW new UDP flows (distinct client ports), all answered"
else bad "weights: $NW UDP flows answered" "$r"; fi
gw_wait_report
seen=$(flows_seen "$WLO" $((WLO + NW - 1)))
nflows=$(awk '{print $2}' <<<"$seen" | sort -u | grep -c .)
ndup=$(awk '{print $2}' <<<"$seen" | sort | uniq -d | grep -c .)
[ "$nflows" = "$NW" ] && [ "$ndup" = 0 ] && ok "weights: every one of the $NW flows seen on exactly one appliance's own log" ||
    bad "weights: flows seen on exactly one appliance" "$nflows distinct flows seen, $ndup on more than one"
wsum=$((W1 + W2 + W3))
for pair in "$APP1_IP $W1" "$APP2_IP $W2" "$APP3_IP $W3"; do
    read -r ip w <<<"$pair"
    c=$(awk -v a="$ip" '$1 == a' <<<"$seen" | grep -c .)
    verdict=$(awk -v n="$NW" -v w="$w" -v s="$wsum" -v c="$c" 'BEGIN {
        p = w / s; e = n * p; tol = 4 * sqrt(n * p * (1 - p)) + 0.01 * n
        d = c - e; if (d < 0) d = -d
        printf "%s %.1f %.1f %.1f", (d <= tol) ? "ok" : "bad", e, tol, 100 * c / n }')
    read -r v e tol pct <<<"$verdict"
    msg="weights: $ip (weight $w/$wsum) got $c of $NW flows ($pct %), expected $e +- $tol"
    [ "$v" = ok ] && ok "$msg" || bad "$msg"
done

tlog "bad traffic"
BT=$TOPO_ROOT/scripts/lib/badtraffic.py
declare -A before
reasons="unknown_appliance no_flow_for_return geneve_malformed geneve_bad_protocol bad_ipv4_ihl"
for r in $reasons; do before[$r]=$(gw_drop "$r"); done
dec0=$(gw_count decapsulated)
a3() { ip netns exec "$NS_APP3" "$PY" "$BT" "$@" --iface eth0 --dst-mac "$GW_APP_MAC" --dst "$GW_APP_IP" --count 5 >/dev/null; }
a3 geneve --src 10.99.0.99 || bad "send Geneve from 10.99.0.99"
a3 geneve --src "$APP3_IP" --inner-sport 61000 --inner-dport 9 || bad "send Geneve for a foreign flow"
a3 geneve-truncated --src "$APP3_IP" || bad "send truncated Geneve"
a3 geneve-ethernet --src "$APP3_IP" || bad "send Geneve with an Ethernet payload"
cx "$PY" "$BT" ipv4-bad-ihl --iface eth0 --dst-mac "$GW_USER_MAC" --src "$CLIENT_IP" --dst "$SERVER_IP" --count 5 >/dev/null ||
    bad "send IPv4 with IHL 3"
gw_wait_report
declare -A what=([unknown_appliance]="Geneve from 10.99.0.99, not a registered appliance"
    [no_flow_for_return]="Geneve from appliance $APP3_IP for a flow it was never given"
    [geneve_malformed]="Geneve header announcing options that are not there (appliance side)"
    [geneve_bad_protocol]="Geneve with an Ethernet payload (appliance side)"
    [bad_ipv4_ihl]="IPv4 with IHL 3 from the client (user side)")
for r in $reasons; do
    d=$(( $(gw_drop "$r") - ${before[$r]} ))
    [ "$d" = 5 ] && ok "5 x ${what[$r]}: dropped, counted as $r (+$d)" || bad "5 x ${what[$r]} counted as $r" "+$d"
done
dec1=$(gw_count decapsulated)
[ "$dec1" = "$dec0" ] && ok "none of them was decapsulated and forwarded (decapsulated stays $dec0)" ||
    bad "bad Geneve not forwarded" "decapsulated $dec0 -> $dec1"
check "gwlb still running and forwarding after bad traffic (ping)" cx ping -c 2 -i 0.2 -W 2 -q "$SERVER_IP"

tlog "oversize"
# gwlb's user link (gwu0) takes 2000-byte frames; the appliance port's MTU is $APP_MTU, so an
# inner packet may have at most $MAX_INNER bytes. Sent from the LAN switch's port toward gwlb.
ov0=$(gw_drop oversize) enc0=$(gw_count encapsulated) frag0=$(gw_count fragmented)
big() { ip netns exec "$NS_LAN" "$PY" "$BT" udp-len --iface gw --dst-mac "$GW_USER_MAC" \
            --src "$CLIENT_IP" --dst "$SERVER_IP" --count 3 "$@" >/dev/null; }
# With DF, a packet too big gets ICMP "fragmentation needed" (scripts/e2e-cluster.sh and the
# pcap data-path test check that). Without DF gwlb fragments it, as a router would.
big --ip-len $((MAX_INNER + 1)) --inner-sport 45001 --no-df || bad "send oversize"
big --ip-len "$MAX_INNER" --inner-sport 45002 || bad "send largest packet"
gw_wait_report
d=$(( $(gw_drop oversize) - ov0 )) e=$(( $(gw_count encapsulated) - enc0 ))
f=$(( $(gw_count fragmented) - frag0 ))
# The 3 that fit come back from the appliance larger than the user port's MTU (1500), with
# DF: not sent out of it (egress MTU check), counted as oversize, answered with ICMP.
[ "$d" = 3 ] && ok "3 returned $MAX_INNER B packets with DF (> user MTU 1500): dropped, counted as oversize (+$d)" ||
    bad "oversize counted" "+$d (want 3)"
# The 3 without DF: each split in 2 and encapsulated (3 + 6), and the appliances' returns,
# over the user port's MTU again, split for it (at least 3 more splits).
[ "$e" -ge 9 ] && [ "$f" -ge 6 ] &&
    ok "3 x inner $((MAX_INNER + 1)) B without DF (+68 B Geneve > MTU $APP_MTU): fragmented and each fragment encapsulated, the returns fragmented for the user port (encapsulated +$e, fragmented +$f)" ||
    bad "no-DF packets fragmented" "encapsulated +$e (want >= 9), fragmented +$f (want >= 6)"
[ -n "$(flows_seen 45002 45002)" ] &&
    ok "3 x inner $MAX_INNER B (exactly fits): encapsulated and seen by appliance $(flows_seen 45002 45002 | awk '{print $1}')" ||
    bad "largest packet encapsulated and seen by an appliance" "seen: '$(flows_seen 45002 45002)'"
r=$(cx curl -s -m 5 "http://$SERVER_IP/")
[ "$r" = "hello from $NS_SERVER" ] && ok "gwlb still forwards after oversize packets (HTTP GET)" || bad "HTTP after oversize" "got '$r'"

tlog "jumbo frames"
# 8,900-byte packets, 24 flows: encapsulated into 8,968-byte frames on the appliance side,
# through both kinds of appliance (kernel Geneve in UML, AWS-style) and back to gwlb, which
# decapsulates them; its user port (MTU 1500) then stops each one (egress check, oversize).
if [ "$APP_MTU" -ge 8968 ]; then
    ov0=$(gw_drop oversize) enc0=$(gw_count encapsulated)
    for p in $(seq 45101 45124); do
        big --ip-len 8900 --inner-sport "$p" --count 1 || bad "send an 8,900-byte packet"
    done
    gw_wait_report
    d=$(( $(gw_drop oversize) - ov0 )) e=$(( $(gw_count encapsulated) - enc0 ))
    kinds=$(flows_seen 45101 45124 | awk -v a3="$APP3_IP" '{ print ($1 == a3 ? "aws" : "kernel") }' | sort -u | tr '\n' ' ')
    [ "$e" = 24 ] && [ "$kinds" = "aws kernel " ] &&
        ok "24 x 8,900 B packets (MTU $APP_MTU appliance side): encapsulated (+$e), seen by both appliance kinds" ||
        bad "8,900 B packets through both appliance kinds" "encapsulated +$e; kinds seen: '$kinds'; $(flows_seen 45101 45124 | tr '\n' ' ')"
    [ "$d" = 24 ] && ok "all 24 came back from the appliances, were decapsulated and stopped by the 1500-byte user port (oversize +$d)" ||
        bad "8,900 B packets returned by the appliances" "oversize +$d (want 24)"
else
    echo "SKIP  jumbo frames: APP_MTU=$APP_MTU < 8968"
fi

tlog "kill an appliance"
# Long-lived UDP flows (24 client ports, one datagram each per 50 ms, echoed by the server).
SLO=46001 SHI=46024
streams_start "$SLO" "$SHI"
st=$(flows_seen "$SLO" "$SHI")
n1=$(awk -v a="$APP1_IP" '$1 == a' <<<"$st" | grep -c .) n2=$(awk -v a="$APP2_IP" '$1 == a' <<<"$st" | grep -c .)
if [ "$n1" -ge "$n2" ]; then V=1 VIP=$APP1_IP; else V=2 VIP=$APP2_IP; fi
VPORTS=$(awk -v a="$VIP" '$1 == a {print $2}' <<<"$st" | xargs)
[ -n "$VPORTS" ] && ok "streams: $(grep -c . <<<"$st") of 24 long-lived UDP flows seen; ${VPORTS// /,} on UML appliance $VIP, which is killed" ||
    abort "long-lived UDP flows on a UML appliance" "$(tr '\n' ';' <<<"$st")"
wire_capture "gwlb-app$V" "$WORK/wire.log"
t_kill=$(date +%s.%N)
uml_kill "$V"
if line=$(gw_wait_health "$VIP" unhealthy "$t_kill" 10); then
    read -r t_det _ _ reason <<<"$line"
    det_ms=$(elapsed_ms "$t_kill" "$t_det") bound=$(hc_detect_bound_ms)
    msg="$VIP killed (SIGKILL): gwlb logged it unhealthy after $det_ms ms (bound $bound ms = $HC_THRESHOLD x ${HC_INTERVAL_MS} ms x 1.$HC_JITTER + timeout $HC_TIMEOUT_MS + 400 margin; reason: $reason)"
    [ "$det_ms" -le "$bound" ] && ok "$msg" || bad "$msg"
else
    bad "$VIP killed: gwlb logs it unhealthy within 10 s"
    t_det=$(date +%s.%N)
fi
sleep 0.5
gw_wait_report
vp0=$(gw_app "$VIP" packets) vf0=$(gw_app "$VIP" flows)
NLO=47001 NHI=47060
if r=$(udp_burst "$NLO" "$NHI"); then ok "after the kill: 60 new UDP flows all answered"; else bad "after the kill: new UDP flows answered" "$r"; fi
hok=0; for _ in 1 2 3 4 5; do [ "$(cx curl -s -m 5 "http://$SERVER_IP/")" = "hello from $NS_SERVER" ] && hok=$((hok + 1)); done
[ "$hok" = 5 ] && ok "after the kill: 5 new HTTP connections OK" || bad "after the kill: HTTP connections" "$hok of 5"
nseen=$(flows_seen "$NLO" "$NHI")
non=$(awk -v a="$VIP" '$1 != a' <<<"$nseen" | grep -c .)
[ "$non" = 60 ] && ok "the 60 new flows are on the surviving appliances ($(awk '{print $1}' <<<"$nseen" | sort | uniq -c | awk '{printf "%s: %s  ", $2, $1}'))" ||
    bad "new flows on the survivors" "$non of 60 seen there"
gw_wait_report
vp1=$(gw_app "$VIP" packets) vf1=$(gw_app "$VIP" flows)
[ "$vp1" = "$vp0" ] && [ "$vf1" = "$vf0" ] && ok "gwlb's counters for $VIP unchanged after detection (packets $vp1, flows $vf1): nothing sent to it" ||
    bad "nothing sent to $VIP after detection" "packets $vp0 -> $vp1, flows $vf0 -> $vf1"
wire_capture_stop "gwlb-app$V"
before_det=$(awk -v a="$t_kill" -v b="$t_det" '$1 >= a && $1 < b' "$WORK/wire.log" | grep -c .)
after_det=$(awk -v b="$t_det" '$1 > b + 0.1' "$WORK/wire.log" | grep -c .)
[ "$after_det" = 0 ] && [ "$before_det" -gt 0 ] &&
    ok "on $VIP's link: $before_det Geneve packets between kill and detection, 0 after detection + 100 ms" ||
    bad "no Geneve packet on $VIP's link after detection" "$before_det before, $after_det after"
# on_unhealthy = rebalance: the streams that were on the dead appliance go on through others.
moved_ok=0 moved_bad="" gaps=""
for p in $VPORTS; do
    nafter=$(awk -v p="$p" -v t="$t_det" '$2 == p && $1 > t + 0.5' "$WORK/streams.log" | grep -c .)
    gap=$(awk -v p="$p" -v a="$t_kill" '$2 == p {if (last != "" && $1 > a && $1 - last > g) g = $1 - last; last = $1}
        END {printf "%d", g * 1000}' "$WORK/streams.log")
    where=$(awk -v p="$p" -v a="$VIP" '$2 == p && $1 != a {print $1}' <<<"$(flows_seen "$SLO" "$SHI")" | xargs)
    gaps+=" $p:${gap}ms"
    if [ "$nafter" -ge 10 ] && [ -n "$where" ]; then moved_ok=$((moved_ok + 1)); else moved_bad+=" $p (answers $nafter, now on '$where')"; fi
done
nv=$(wc -w <<<"$VPORTS")
[ "$moved_ok" = "$nv" ] && ok "rebalance: all $nv streams of $VIP continue through another appliance (longest gap per stream:$gaps)" ||
    bad "rebalance: streams of $VIP continue elsewhere" "$moved_bad"

tlog "bring it back"
t_start=$(date +%s.%N)
uml_start "$V" || abort "restart UML appliance $V" "$(tail -n 5 "$WORK/uml$V.log")"
t_ready=$(date +%s.%N)
if line=$(gw_wait_health "$VIP" healthy "$t_start" 10); then
    read -r t_up _ _ reason <<<"$line"
    up_ms=$(elapsed_ms "$t_start" "$t_up") boot_ms=$(elapsed_ms "$t_start" "$t_ready")
    # The guest's HC listener is up before it reports ready (it then waits for its tcpdump).
    msg="$VIP restarted: gwlb logged it healthy $up_ms ms after the restart began (guest ready after $boot_ms ms; $reason)"
    [ "$up_ms" -le $((boot_ms + 1000)) ] && ok "$msg" || bad "$msg" "more than 1 s after the guest was ready"
else
    bad "$VIP restarted: gwlb logs it healthy within 10 s"
fi
RLO=48001 RHI=48060
if r=$(udp_burst "$RLO" "$RHI"); then ok "after the restart: 60 new UDP flows all answered"; else bad "after the restart: new UDP flows answered" "$r"; fi
rseen=$(flows_seen "$RLO" "$RHI")
nv=$(awk -v a="$VIP" '$1 == a' <<<"$rseen" | grep -c .)
[ "$nv" -ge 1 ] && ok "new flows reach $VIP again: $nv of 60 (weight share $(( 100 * W$V / (W1 + W2 + W3) )) %)" ||
    bad "new flows reach $VIP again" "0 of 60"
back=$(awk -v a="$VIP" '$1 == a {print $2}' <<<"$(flows_seen "$SLO" "$SHI")" | xargs)
[ -z "$back" ] && ok "the moved streams stay on their new appliance (none back on $VIP)" ||
    bad "moved streams stay where they are" "back on $VIP: $back"
kill -INT "$(cat "$WORK/streams.pid")" 2>/dev/null; rm -f "$WORK/streams.pid"
# Each appliance's first transition, initial -> healthy at start, is not a change of health.
others=$(gw_health_lines | awk -v v="$VIP" '$3 != v { if (!($3 in n) && $2 == "healthy") { n[$3] = 1; next } n[$3] = 1; print }' | xargs)
[ -z "$others" ] && ok "no other appliance changed health during the run (no false positives; each started initial and turned healthy once)" ||
    bad "no health flaps of the other appliances" "$others"

tlog "data path: an appliance that answers its health check but forwards nothing"
# The checks send a data-path probe through each appliance after the TCP check passes
# (data_path = true): IP forwarding off in a UML guest keeps its TCP listener answering, and
# only the probe, routed by the guest's kernel like user traffic, notices.
O=$((3 - V)); OIP=$(eval echo "\$APP${O}_IP")
t_dp=$(date +%s.%N)
gw_cli health-check demo-fw --data-path true >/dev/null && ok "data-path probes turned on live (gwlb health-check demo-fw --data-path true)" ||
    bad "turn data-path probes on through the CLI"
# Every appliance passes a check with its data-path probe before the test.
dp_ok=""
for _ in $(seq 60); do
    dp_ok=$(gw_cli targets demo-fw --json | "$PY" -c 'import json,sys
g = json.load(sys.stdin)
g = g[0] if isinstance(g, list) else g
print(sum(1 for t in g["targets"] if "data path ok" in (t.get("reason") or "")))')
    [ "$dp_ok" = 3 ] && break
    sleep 0.1
done
[ "$dp_ok" = 3 ] && ok "all 3 appliances pass their checks with the data-path probe" ||
    bad "every appliance passes the data-path probe" "$dp_ok of 3"
# Long-lived flows, some of them on the appliance about to stop forwarding: they must follow
# the failover policy (on_unhealthy = rebalance) once its probe fails.
DLO=49101 DHI=49124
rm -f "$WORK/streams.log"
streams_start "$DLO" "$DHI"
OPORTS=$(awk -v a="$OIP" '$1 == a {print $2}' <<<"$(flows_seen "$DLO" "$DHI")" | xargs)
[ -n "$OPORTS" ] && ok "streams: ${OPORTS// /,} of 24 long-lived UDP flows on $OIP" ||
    bad "some long-lived flows on $OIP" "none of 24"
t_off=$(date +%s.%N)
"$UML_SH" exec --name "gwlb-app$O" -- sysctl -qw net.ipv4.ip_forward=0 ||
    bad "ip_forward=0 in UML appliance $O"
if line=$(gw_wait_health "$OIP" unhealthy "$t_off" 10); then
    read -r t_det _ _ reason <<<"$line"
    det_ms=$(elapsed_ms "$t_off" "$t_det") bound=$(( $(hc_detect_bound_ms) + 250 ))
    msg="$OIP forwarding off: unhealthy after $det_ms ms (bound $bound ms, the kill bound + 250 ms for the guest's control loop; reason: $reason)"
    { [ "$det_ms" -le "$bound" ] && grep -q "data-path probe not returned (TCP connect ok)" <<<"$reason"; } &&
        ok "$msg" || bad "$msg"
else
    bad "$OIP forwarding off: gwlb logs it unhealthy within 10 s"
fi
ip netns exec "$NS_GW" timeout 3 socat -T2 - "TCP:$OIP:$HC_PORT,connect-timeout=2" </dev/null >/dev/null 2>&1 &&
    ok "its TCP health-check port still accepts connections (a TCP check alone would keep it healthy)" ||
    bad "TCP health-check port of $OIP still answers"
# Its streams go on through the others (answered again after detection + 0.5 s).
sleep 1.5
dseen=$(flows_seen "$DLO" "$DHI")
moved_ok=0 moved_bad=""
for p in $OPORTS; do
    nafter=$(awk -v p="$p" -v t="${t_det:-0}" '$2 == p && $1 > t + 0.5' "$WORK/streams.log" | grep -c .)
    where=$(awk -v p="$p" -v a="$OIP" '$2 == p && $1 != a {print $1}' <<<"$dseen" | xargs)
    if [ "$nafter" -ge 10 ] && [ -n "$where" ]; then moved_ok=$((moved_ok + 1)); else moved_bad+=" $p (answers $nafter, now on '$where')"; fi
done
kill -INT "$(cat "$WORK/streams.pid")" 2>/dev/null; rm -f "$WORK/streams.pid"
no=$(wc -w <<<"$OPORTS")
[ "$no" -gt 0 ] && [ "$moved_ok" = "$no" ] && ok "rebalance: all $no streams of $OIP continue through another appliance once its probe fails" ||
    bad "rebalance after a failed data-path probe: streams of $OIP continue elsewhere" "$moved_bad"
FLO=49001 FHI=49060
if r=$(udp_burst "$FLO" "$FHI"); then ok "forwarding off: 60 new UDP flows all answered"; else bad "forwarding off: new UDP flows answered" "$r"; fi
fseen=$(flows_seen "$FLO" "$FHI")
non=$(awk -v a="$OIP" '$1 != a' <<<"$fseen" | grep -c .)
[ "$non" = 60 ] && ok "the 60 new flows avoid $OIP ($(awk '{print $1}' <<<"$fseen" | sort | uniq -c | awk '{printf "%s: %s  ", $2, $1}'))" ||
    bad "new flows avoid the appliance that does not forward" "$non of 60 elsewhere"
t_on=$(date +%s.%N)
"$UML_SH" exec --name "gwlb-app$O" -- sysctl -qw net.ipv4.ip_forward=1 ||
    bad "ip_forward=1 in UML appliance $O"
if line=$(gw_wait_health "$OIP" healthy "$t_on" 10); then
    read -r t_up _ _ reason <<<"$line"
    grep -q "TCP connect ok, data path ok" <<<"$reason" &&
        ok "forwarding back on: $OIP healthy again after $(elapsed_ms "$t_on" "$t_up") ms ($reason)" ||
        bad "forwarding back on: healthy through the data path" "$reason"
else
    bad "forwarding back on: $OIP healthy again within 10 s"
fi
probe_fails=$(gw_health_lines | awk -v v="$OIP" -v t="$t_dp" '$1 >= t && $3 != v && /data-path probe not returned/' | grep -c .)
[ "$probe_fails" = 0 ] && ok "no other appliance ever failed a data-path probe (the AWS-style one echoes them, the other UML guest routes them)" ||
    bad "data-path probes pass through every forwarding appliance" "$probe_fails failures elsewhere"

tlog "mirroring to an IDS sensor (issue 17)"
# Two sessions copy UDP flows to the sensor namespace: every packet of client ports
# $MIRROR_ALL_PORTS in VXLAN (VNI 100), 1 in $MIRROR_SAMPLE of ports $MIRROR_SAMPLED_PORTS in
# Geneve (VNI 101). Compared with what reached gwlb from users (captured on the LAN bridge's
# port toward gwlb): every copy, request and echo, byte for byte.
gw_wait_health "$SENSOR_IP" healthy "$GW_STARTED" 10 >/dev/null && ok "the sensor $SENSOR_IP passed its health checks" ||
    bad "the sensor passed its health checks"
ip netns exec "$NS_LAN" tcpdump -i gw -Q out -n -U -s 0 -w "$WORK/user-in.pcap" udp >/dev/null 2>&1 &
ucap=$!
sleep 0.5
r1=$(udp_burst "${MIRROR_ALL_PORTS%-*}" "${MIRROR_ALL_PORTS#*-}") && r2=$(udp_burst "${MIRROR_SAMPLED_PORTS%-*}" "${MIRROR_SAMPLED_PORTS#*-}") &&
    ok "300 UDP flows through gwlb, all answered with the sessions on ($r1; $r2)" || bad "mirrored UDP flows answered" "$r1 $r2"
sleep 1
kill -INT "$ucap" 2>/dev/null; sleep 0.3
vx=$(tshark -r "$WORK/sensor.pcap" -d udp.port==4789,vxlan -Y "vxlan.vni == 100" 2>/dev/null | grep -c .)
gn=$(tshark -r "$WORK/sensor.pcap" -Y "geneve.vni == 101" 2>/dev/null | grep -c .)
[ "$vx" = 200 ] && [ "$gn" = 100 ] &&
    ok "tshark at the sensor decodes 200 VXLAN copies (VNI 100: 100 requests + 100 echoes) and 100 Geneve copies (VNI 101: 1 in $MIRROR_SAMPLE of 200 requests + 200 echoes)" ||
    bad "tshark decodes the copies at the sensor" "VXLAN $vx (want 200), Geneve $gn (want 100)"
cmp_out=$("$PY" - "$WORK/user-in.pcap" "$WORK/sensor.pcap" "$MIRROR_ALL_PORTS" "$MIRROR_SAMPLED_PORTS" <<'PY'
import struct, sys
from collections import Counter
from scapy.all import rdpcap
users, sensor = rdpcap(sys.argv[1]), rdpcap(sys.argv[2])
lo1, hi1 = map(int, sys.argv[3].split("-")); lo2, hi2 = map(int, sys.argv[4].split("-"))
def frame_ports(f):
    if len(f) < 42 or f[12:14] != b"\x08\x00" or f[23] != 17:
        return None
    ihl = (f[14] & 15) * 4
    total = struct.unpack("!H", f[16:18])[0]
    sp, dp = struct.unpack("!HH", f[14 + ihl:18 + ihl])
    return f[:14 + total], sp, dp
sel = {1: Counter(), 2: Counter()}
for p in users:
    r = frame_ports(bytes(p))
    if r:
        f, sp, dp = r
        for k, (lo, hi) in ((1, (lo1, hi1)), (2, (lo2, hi2))):
            if lo <= sp <= hi or lo <= dp <= hi:
                sel[k][f] += 1
got = {1: Counter(), 2: Counter()}
for p in sensor:
    b = bytes(p)
    dport = struct.unpack("!H", b[36:38])[0]
    vni = int.from_bytes(b[46:49], "big")
    if dport == 4789 and vni == 100:
        got[1][b[50:]] += 1
    elif dport == 6081 and vni == 101:
        opt = (b[42] & 0x3f) * 4
        got[2][b[50 + opt:]] += 1
ok1 = got[1] == sel[1]
ok2 = sum(got[2].values()) == sum(sel[2].values()) // 4 and all(sel[2][f] >= n for f, n in got[2].items())
print(f"{sum(sel[1].values())} selected frames of session 1, {sum(got[1].values())} copies, equal: {ok1}; "
      f"{sum(sel[2].values())} of session 2, {sum(got[2].values())} copies, each one of them: {ok2}")
sys.exit(0 if ok1 and ok2 else 1)
PY
) && ok "each copy's inner frame is byte-equal to a frame gwlb received: $cmp_out" || bad "copies byte-equal to the originals" "$cmp_out"
ms=$(curl -s --unix-socket "$WORK/api.sock" http://gwlb/v1/mirror-sessions)
mp=$("$PY" -c 'import json,sys; print(" ".join("%s=%s" % (m["name"], m["packets"]) for m in json.load(sys.stdin)))' <<<"$ms")
[ "$mp" = "ids-all=200 ids-sampled=100" ] && ok "GET /v1/mirror-sessions counts the same copies ($mp)" ||
    bad "the API's mirror counters" "$mp"
# Copies of a TCP connection: iperf3 through gwlb with no session selecting it; with the
# sensor's link cut to 20 Mbit/s (tbf), three rounds of: uncopied, then with a session
# (created live, 128-byte snap length) copying every packet of it to the sensor (copies
# beyond the rate are lost on the way or refused by gwlb, counted tx_full), the session
# deleted again; then copied with the link unshaped. The rates are reported, medians of the
# rounds (a timed figure is no test's to assert); the copies are checked.
iperf() {
    ip netns exec "$NS_SERVER" iperf3 -s -1 -B "$SERVER_IP" >/dev/null 2>&1 &
    sleep 0.5
    ip netns exec "$NS_CLIENT" iperf3 -c "$SERVER_IP" -t 2 -J 2>/dev/null |
        "$PY" -c 'import json,sys; print(int(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]))' 2>/dev/null
}
mirror_of() { curl -s --unix-socket "$WORK/api.sock" "http://gwlb/v1/mirror-sessions/$1" | "$PY" -c "import json,sys; print(json.load(sys.stdin)[\"$2\"])" 2>/dev/null; }
session_iperf() {
    curl -s -o "$WORK/mirror-iperf.json" -w '%{http_code}' --unix-socket "$WORK/api.sock" -X POST http://gwlb/v1/mirror-sessions \
        -d '{"name": "ids-iperf", "target_group": "sensors", "vni": 102, "protocols": [6], "l4_ports": ["5201"], "snap_length": 128}'
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)] + 0}'; }
mbit() { echo $(( ${1:-0} / 1000000 )); }
mbits() { for b in $1; do printf '%s ' "$(mbit "$b")"; done; }
bps_plain=$(iperf)
ip netns exec "$NS_APPS" tc qdisc add dev sensor root tbf rate 20mbit burst 256kbit latency 50ms
shaped="" slow="" codes="" copies_slow=0 refused_slow=0
for _ in 1 2 3; do
    shaped+=" $(iperf)"
    codes+=" $(session_iperf)"
    slow+=" $(iperf)"
    copies_slow=$(( copies_slow + $(mirror_of ids-iperf packets) ))
    refused_slow=$(( refused_slow + $(mirror_of ids-iperf tx_full) ))
    curl -s -o /dev/null --unix-socket "$WORK/api.sock" -X DELETE http://gwlb/v1/mirror-sessions/ids-iperf
done
code=$(session_iperf)
ip netns exec "$NS_APPS" tc qdisc del dev sensor root 2>/dev/null
bps_copied=$(iperf)
copies=$(mirror_of ids-iperf packets)
bps_shaped=$(median <<<"$shaped") bps_slow=$(median <<<"$slow")
[ "$codes $code" = " 201 201 201 201" ] && [ "${bps_plain:-0}" -gt 0 ] && [ "${bps_shaped:-0}" -gt 0 ] && [ "${bps_slow:-0}" -gt 0 ] &&
    [ "${bps_copied:-0}" -gt 0 ] && [ "${copies_slow:-0}" -gt 1000 ] && [ "${copies:-0}" -gt 1000 ] &&
    ok "iperf3 through gwlb (Mbit/s): $(mbit "$bps_plain") uncopied; sensor link at 20 Mbit/s, medians of 3 rounds: $(mbit "$bps_shaped") uncopied ($(mbits "$shaped")), $(mbit "$bps_slow") with session ids-iperf (created live) copying it ($(mbits "$slow"); $copies_slow copies made, $refused_slow refused: tx_full); link unshaped: $(mbit "$bps_copied") copied ($copies copies)" ||
    bad "iperf3 with a session copying it" "HTTP$codes $code $(cat "$WORK/mirror-iperf.json"); bit/s ${bps_plain:-none} /${shaped:-none} /${slow:-none} / ${bps_copied:-none}, copies '${copies_slow:-}' '${copies:-}'"

# The sensor goes away: forwarding does not notice.
t_sk=$(date +%s.%N)
sensor_kill
ip -n "$NS_SENSOR" link set eth0 down
gw_wait_health "$SENSOR_IP" unhealthy "$t_sk" 10 >/dev/null && ok "sensor killed: gwlb marks it unhealthy" ||
    bad "the killed sensor is marked unhealthy"
r=$(udp_burst 45801 45860) && ok "with the sensor gone: 60 new UDP flows all answered ($r)" || bad "flows answered without the sensor" "$r"
r=$(udp_burst "${MIRROR_ALL_PORTS%-*}" "$(( ${MIRROR_ALL_PORTS%-*} + 19 ))") && ok "with the sensor gone: 20 flows of the mirrored range answered ($r)" || bad "mirrored flows without the sensor" "$r"
bps=$(iperf)
ns_iperf=$(mirror_of ids-iperf no_sensor)
[ "${bps:-0}" -gt 0 ] && [ "${ns_iperf:-0}" -gt 1000 ] &&
    ok "with the sensor gone: iperf3 client -> server $(( bps / 1000000 )) Mbit/s (uncopied before: $(mbit "$bps_plain")); its copies counted no_sensor ($ns_iperf)" ||
    bad "iperf3 through gwlb without the sensor" "${bps:-none} bit/s, no_sensor '${ns_iperf:-}'"
ms=$(curl -s --unix-socket "$WORK/api.sock" http://gwlb/v1/mirror-sessions)
ns=$("$PY" -c 'import json,sys; m=json.load(sys.stdin)[0]; print(m["packets"], m["no_sensor"])' <<<"$ms")
[ "$ns" = "200 40" ] && ok "session ids-all: still 200 copies sent, 40 not sent for want of a sensor (the 20 flows' requests and echoes)" ||
    bad "copies without a sensor are counted, not sent" "packets no_sensor: $ns"

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

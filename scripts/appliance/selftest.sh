#!/usr/bin/env bash
# selftest.sh - prove that the UML Linux-kernel Geneve appliance works.
#
# Creates netns gwt-gw (the "gateway", 10.99.0.1/24 on gw0) and gwt-app1 (the
# appliance namespace, eth0, no address), boots the appliance (10.99.0.11, VNI 1,
# TCP/23 blocked, health check on 8080, MTU 9000), sends AWS-style Geneve packets
# with scapy and checks what comes back, then checks the evidence files the
# appliance writes, stops it and removes everything.
#
#   sudo scripts/appliance/selftest.sh [--keep]   (--keep: leave it running)
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
APP=$HERE/uml-appliance.sh
NAME=gwt-app1
GW_NS=gwt-gw
APP_NS=gwt-app1
GW_IP=10.99.0.1
APP_IP=10.99.0.11
KEEP=0
[ "${1:-}" = --keep ] && KEEP=1
PY=/usr/bin/python3   # Debian python3 with python3-scapy

PASS=0 FAIL=0
RESULTS=()
ok()   { PASS=$((PASS+1)); RESULTS+=("PASS  $*"); echo "PASS  $*"; }
bad()  { FAIL=$((FAIL+1)); RESULTS+=("FAIL  $*"); echo "FAIL  $*"; }
check() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$KEEP" = 0 ]; then
        "$APP" stop --name "$NAME" >/dev/null 2>&1
        ip netns del "$GW_NS" 2>/dev/null
        ip netns del "$APP_NS" 2>/dev/null
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }
$PY -c 'import scapy' 2>/dev/null || { echo "python3-scapy missing" >&2; exit 2; }

# --- topology ---------------------------------------------------------------
"$APP" stop --name "$NAME" >/dev/null 2>&1
ip netns del "$GW_NS" 2>/dev/null; ip netns del "$APP_NS" 2>/dev/null
ip netns add "$GW_NS"
ip netns add "$APP_NS"
ip link add gw0 netns "$GW_NS" mtu 9000 type veth peer name eth0 netns "$APP_NS" mtu 9000
ip -n "$GW_NS" addr add "$GW_IP/24" dev gw0
ip -n "$GW_NS" link set lo up
ip netns exec "$GW_NS" sysctl -qw net.ipv6.conf.gw0.disable_ipv6=1
ip -n "$GW_NS" link set gw0 up

# --- boot -------------------------------------------------------------------
t0=$(date +%s.%N)
if ! "$APP" start --netns "$APP_NS" --name "$NAME" --dev eth0 --ip "$APP_IP/24" \
        --gateway-ip "$GW_IP" --vni 1 --block-tcp-port 23 --hc-port 8080 --mtu 9000; then
    bad "appliance boot"; exit 1
fi
t1=$(date +%s.%N)
BOOT=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
ok "appliance boot (${BOOT}s to ready)"
STATE=/run/gwlb-uml/$NAME
G=$STATE/guest

check "no appliance IP on the namespace's own eth0" \
    bash -c "! ip -n $APP_NS -4 addr show dev eth0 | grep -q inet"

# --- health check -----------------------------------------------------------
code=$(ip netns exec "$GW_NS" curl -s -m 5 -o /dev/null -w '%{http_code}' "http://$APP_IP:8080/")
check "health check http://$APP_IP:8080/ -> 200 (got $code)" [ "$code" = 200 ]

# --- packets ----------------------------------------------------------------
OUTJSON=$(mktemp)
ip netns exec "$GW_NS" env PYTHONPATH="$HERE" $PY - "$GW_IP" "$APP_IP" >"$OUTJSON" <<'EOF'
import json, sys
from geneve_probe import Prober, build_inner, aws_options
gw, app = sys.argv[1], sys.argv[2]
pr = Prober("gw0", gw, app)
cases = {}
cases["icmp"] = pr.probe(build_inner("icmp", "10.1.0.2", "10.2.0.2"), 1, sport=12345)
cases["tcp_syn_80"] = pr.probe(build_inner("tcp", "10.1.0.2", "10.2.0.2", dport=80, sport=40000), 1, sport=12345)
cases["tcp_synack_reverse"] = pr.probe(build_inner("tcp", "10.2.0.2", "10.1.0.2", sport=80, dport=40000, flags="SA"), 1, sport=12345)
cases["tcp_syn_23_blocked"] = pr.probe(build_inner("tcp", "10.1.0.2", "10.2.0.2", dport=23, sport=40001), 1, wait=3)
cases["wrong_vni_2"] = pr.probe(build_inner("tcp", "10.1.0.2", "10.2.0.2", dport=80, sport=40002), 2, wait=3)
cases["no_options"] = pr.probe(build_inner("tcp", "10.1.0.2", "10.2.0.2", dport=80, sport=40003), 1, options=b"")
cases["flow_b"] = pr.probe(build_inner("tcp", "10.1.0.2", "10.2.0.2", dport=80, sport=40004), 1, sport=12345)
cases["flow_c"] = pr.probe(build_inner("tcp", "10.1.0.3", "10.2.0.2", dport=443, sport=40005), 1, sport=12345)
cases["udp_jumbo_8500"] = pr.probe(build_inner("udp", "10.1.0.2", "10.2.0.2", dport=5000, sport=40006, payload_len=8500 - 28), 1)
print(json.dumps(cases))
EOF
J() { $PY -c "import json,sys; c=json.load(open('$OUTJSON')); r=$1; print(r)"; }
if ! $PY -c "import json; json.load(open('$OUTJSON'))" 2>/dev/null; then
    bad "scapy probe script ran"; cat "$OUTJSON"
else
    R='c["icmp"]["returned"]'
    if [ "$(J "$R is not None")" = True ]; then
        ok "ICMP echo 10.1.0.2->10.2.0.2 (with 3 AWS options) came back Geneve-encapsulated ($(J "$R['rtt_ms']") ms)"
        check "  outer $(J "$R['outer_src']") -> $(J "$R['outer_dst']"), UDP dport 6081" \
            [ "$(J "($R['outer_src'],$R['outer_dst'],$R['udp_dport'])")" = "('$APP_IP', '$GW_IP', 6081)" ]
        check "  VNI = configured 1 (got $(J "$R['vni']"))" [ "$(J "$R['vni']")" = 1 ]
        check "  options dropped (opt_len $(J "$R['geneve_opt_len']"))" [ "$(J "$R['geneve_opt_len']")" = 0 ]
        check "  protocol 0x0800 kept" [ "$(J "$R['geneve_proto']")" = 2048 ]
        check "  UDP checksum 0" [ "$(J "$R['udp_csum']")" = 0 ]
        check "  UDP source port is the appliance's (got $(J "$R['udp_sport']"), sent 12345)" \
            [ "$(J "$R['udp_sport']")" != 12345 ]
        check "  inner TTL decremented 64 -> $(J "$R['inner_ttl']")" [ "$(J "$R['inner_ttl']")" = 63 ]
        check "  inner packet otherwise unchanged" [ "$(J "$R['inner_unchanged_except_ttl_csum']")" = True ]
        echo "      outer TTL $(J "$R['outer_ttl']"), DF $(J "$R['outer_df']")"
        echo "      returned packet (outer IPv4 onwards): $(J "$R['hex']")"
    else
        bad "ICMP echo came back"
    fi
    check "TCP SYN :80 came back (udp sport $(J 'c["tcp_syn_80"]["returned"] and c["tcp_syn_80"]["returned"]["udp_sport"]'))" \
        [ "$(J 'c["tcp_syn_80"]["returned"] is not None')" = True ]
    check "reverse SYN-ACK 10.2.0.2:80->10.1.0.2 came back (udp sport $(J 'c["tcp_synack_reverse"]["returned"] and c["tcp_synack_reverse"]["returned"]["udp_sport"]'))" \
        [ "$(J 'c["tcp_synack_reverse"]["returned"] is not None')" = True ]
    check "TCP SYN :23 (blocked) did NOT come back" [ "$(J 'c["tcp_syn_23_blocked"]["returned"] is None')" = True ]
    check "VNI 2 (device is VNI 1) did NOT come back" [ "$(J 'c["wrong_vni_2"]["returned"] is None')" = True ]
    echo "      (info) packet without options: $(J '"returned" if c["no_options"]["returned"] else "not returned"') (the kernel ignores options)"
    echo "      (info) UDP source port per flow: 40000->$(J 'c["tcp_syn_80"]["returned"]["udp_sport"]') 40004->$(J 'c["flow_b"]["returned"] and c["flow_b"]["returned"]["udp_sport"]') 10.1.0.3:40005->$(J 'c["flow_c"]["returned"] and c["flow_c"]["returned"]["udp_sport"]') reverse->$(J 'c["tcp_synack_reverse"]["returned"] and c["tcp_synack_reverse"]["returned"]["udp_sport"]')"
    check "8500-byte inner UDP (jumbo, MTU 9000) came back in one piece (inner len $(J 'c["udp_jumbo_8500"]["returned"] and c["udp_jumbo_8500"]["returned"]["inner_len"]'))" \
        [ "$(J 'c["udp_jumbo_8500"]["returned"] is not None and c["udp_jumbo_8500"]["returned"]["inner_len"]')" = 8500 ]
fi

# --- evidence from inside the appliance ------------------------------------
"$APP" dump --name "$NAME" >/dev/null
check "flows.log: flow 10.1.0.2.40000 > 10.2.0.2.80 seen In and Out on gnv0" \
    bash -c "grep -q 'gnv0  In  IP 10.1.0.2.40000 > 10.2.0.2.80:' $G/flows.log && grep -q 'gnv0  Out IP 10.1.0.2.40000 > 10.2.0.2.80:' $G/flows.log"
check "flows.log: reverse 10.2.0.2.80 > 10.1.0.2.40000 seen In and Out on gnv0" \
    bash -c "grep -q 'gnv0  In  IP 10.2.0.2.80 > 10.1.0.2.40000:' $G/flows.log && grep -q 'gnv0  Out IP 10.2.0.2.80 > 10.1.0.2.40000:' $G/flows.log"
check "flows.log: blocked :23 SYN seen In, never Out" \
    bash -c "grep -q 'gnv0  In  IP 10.1.0.2.40001 > 10.2.0.2.23:' $G/flows.log && ! grep -q 'gnv0  Out IP 10.1.0.2.40001 > 10.2.0.2.23:' $G/flows.log"
drops=$(awk '$3=="DROP" && /dpt:23/ {print $1}' "$G/iptables.txt")
check "iptables.txt: DROP tcp dpt:23 counter = 1 (got $drops)" [ "$drops" = 1 ]
check "conntrack.txt: entry src=10.1.0.2 dst=10.2.0.2 sport=40000 dport=80" \
    grep -q 'src=10.1.0.2 dst=10.2.0.2 sport=40000 dport=80 ' "$G/conntrack.txt"
check "links.txt: gnv0 present" grep -q 'gnv0' "$G/links.txt"
rdr=$("$APP" exec --name "$NAME" -- cat /proc/sys/net/ipv4/ip_forward)
check "exec: ip_forward in guest = 1" [ "$rdr" = 1 ]

# --- stop -------------------------------------------------------------------
if [ "$KEEP" = 0 ]; then
    s0=$(date +%s.%N)
    "$APP" stop --name "$NAME"
    s1=$(date +%s.%N)
    STOP=$(awk -v a="$s0" -v b="$s1" 'BEGIN{printf "%.1f", b-a}')
    check "stop: no UML process left (${STOP}s)" bash -c "! grep -l 'umid=gwlb-[${NAME:0:1}]${NAME:1}' /proc/[0-9]*/cmdline 2>/dev/null | grep -q ."
    check "stop: state dir removed" [ ! -e "$STATE" ]
fi
rm -f "$OUTJSON"

echo
echo "================ selftest summary ================"
printf '%s\n' "${RESULTS[@]}"
echo "boot: ${BOOT}s   passed: $PASS   failed: $FAIL"
[ "$FAIL" = 0 ] && echo "RESULT: PASS" || echo "RESULT: FAIL"
[ "$FAIL" = 0 ]

#!/usr/bin/env bash
# End-to-end test of service insertion (issue 16) in real network namespaces: two tenants
# with identical addresses (and MACs) on VLANs 100 and 200 of gwlb's one user port, each an
# [[endpoints]] entry with its own endpoint id and target group, and steering rules.
#
#   gwt-a-cli 10.1.1.2 ─┐                                      ┌─ gwt-app1 10.97.0.11 (fw-a)
#   gwt-a-srv 10.1.2.2 ─┤ access VLAN 100                      │  aws_appliance
#   gwt-b-cli 10.1.1.2 ─┤ access VLAN 200   trunk              │
#   gwt-b-srv 10.1.2.2 ─┘ gwt-sw ──────── gwtu0 gwlb gwta0 ────┴─ gwt-app2 10.97.0.12 (fw-b)
#                         (vlansw.py)     (gwt-gw)   (bridge in gwt-apps)
#
# This kernel has no VLAN devices, tc vlan action or VLAN-filtering bridge, and gwlb has one
# user port, so the hosts sit on plain veths behind scripts/lib/vlansw.py, a user-space
# 802.1Q switch whose trunk is gwlb's user port: gwlb sees real tagged frames.
#
# Checks: each client reaches its own server only (HTTP and UDP, also with the same 5-tuple
# at the same time), through its own group's appliance, which saw only its tenant's endpoint
# id (the aws_appliance flow log); per-endpoint counters apart; a bypass rule (tenant A, TCP
# 8000) reaches the server and no appliance sees it; drop rules (tenant A TCP 23 silently,
# tenant B TCP 23 with a RST) never reach the server, counted under the rule; a chain
# (tenant A, TCP 8081: fw-a then fw-b, the reply fw-b then fw-a) reaches the server, and both
# appliances' flow logs show every packet of the connection, under tenant A's endpoint id;
# rules put before the chain rule by the API while a chained connection is open disturb it
# not (it goes on through both appliances, counted under its own rule); a mirror session on
# tenant A's default rule sends a sensor (tcpdump, tshark) exactly that rule's packets, as
# many as the rule and the session count, none of tenant B's or of tenant A's other rules.
#
#   sudo scripts/e2e-tenants.sh   (root; builds target/release/gwlb and aws_appliance unless
#                                  GWLB_BIN/AWS_BIN name binaries; about 15 s)
#
# Prints PASS/FAIL per check and "N passed, M failed" last; exit 0 only if all passed. Its
# namespaces (gwt-*), work folder (/run/gwlb-tenants) and DPDK file prefix (gwt) are its own:
# it does not disturb scripts/e2e.sh's state. Removes everything it created, also on Ctrl-C.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OWN_BINS=${GWLB_BIN:-}${AWS_BIN:-}
[ "$(id -u)" = 0 ] || { echo "e2e-tenants: run as root" >&2; exit 2; }
# Helpers only (veth_pair, ns_add, bridge_add, host_side, tlog, gw_wait_health, ...): the
# namespaces and files below are this script's own.
# shellcheck source=lib/topology.sh
source scripts/lib/topology.sh
# shellcheck source=lib/checks.sh
source scripts/lib/checks.sh

WORK=${GWLB_TENANTS_WORK:-/run/gwlb-tenants}
NS_GW=gwt-gw NS_SW=gwt-sw NS_APPS=gwt-apps NS_APP1=gwt-app1 NS_APP2=gwt-app2
NS_ACLI=gwt-a-cli NS_ASRV=gwt-a-srv NS_BCLI=gwt-b-cli NS_BSRV=gwt-b-srv NS_SENS=gwt-sensor
ALL_NS=("$NS_GW" "$NS_SW" "$NS_APPS" "$NS_APP1" "$NS_APP2" "$NS_ACLI" "$NS_ASRV" "$NS_BCLI" "$NS_BSRV" "$NS_SENS")
# Both tenants: the same addresses and MACs. Only the VLAN tells them apart.
CLI_IP=10.1.1.2 CLI_GW=10.1.1.1 CLI_MAC=02:00:0a:01:01:02
SRV_IP=10.1.2.2 SRV_GW=10.1.2.1 SRV_MAC=02:00:0a:01:02:02
VLAN_A=100 VLAN_B=200
EID_A=1001 EID_B=2002
GW_USER_IP=192.0.2.1 GW_USER_MAC=02:00:c0:00:02:01
GW_APP_IP=10.97.0.1 GW_APP_MAC=02:00:0a:61:00:01 GW_APP_KIF=gwtak
APP1_IP=10.97.0.11 APP1_MAC=02:00:0a:61:00:0b
APP2_IP=10.97.0.12 APP2_MAC=02:00:0a:61:00:0c
SENS_IP=10.97.0.50 SENS_MAC=02:00:0a:61:00:32 MIRROR_VNI=300
HC_PORT=8080 BYPASS_PORT=8000 DROP_PORT=23 UDP_PORT=5353 CHAIN_PORT=8081

cleanup_all() {
    local pids ns f
    disown -a 2>/dev/null
    for f in "$WORK"/*.pid; do
        [ -e "$f" ] || continue
        pids=$(cat "$f" 2>/dev/null) || continue
        [ -n "$pids" ] && kill -INT $pids 2>/dev/null
    done
    sleep 0.3
    for ns in "${ALL_NS[@]}"; do
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        [ -n "${pids// /}" ] && kill -KILL $pids 2>/dev/null
    done
    for ns in "${ALL_NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$WORK"
    return 0
}
abort() {
    bad "$1" "${2:-}"
    for f in gwlb.err app1.err app2.err vlansw.err; do
        [ -s "$WORK/$f" ] && { echo "--- $WORK/$f"; tail -n 15 "$WORK/$f"; }
    done
    exit 1
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    cleanup_all
    checks_summary
    checks_exit "$rc"
}
TOPO_T0=$(date +%s.%N)
trap cleanup EXIT
trap 'echo "e2e-tenants: interrupted" >&2; exit 130' INT TERM

for t in socat curl jq iptables tcpdump tshark; do
    command -v "$t" >/dev/null || { echo "e2e-tenants: $t missing: run scripts/install-deps.sh" >&2; FAIL=1; exit 1; }
done
if [ -z "$OWN_BINS" ] || [ ! -x "$GWLB_BIN" ] || [ ! -x "$AWS_BIN" ]; then
    cargo build --release -q -p gwlb --bin gwlb && cargo build --release -q -p geneve --example aws_appliance ||
        abort "build"
fi

# --- topology ----------------------------------------------------------------------------------
cleanup_all
tlog "topology"
mkdir -p "$WORK"
for ns in "${ALL_NS[@]}"; do ns_add "$ns"; done
bridge_add "$NS_APPS"
# The trunk: 2000 bytes, so a tagged 1500-byte packet fits either way.
veth_pair "$NS_GW" gwtu0 "$GW_USER_MAC" "$NS_SW" trunk 02:00:00:fe:00:01 2000
ip -n "$NS_GW" link set gwtu0 up promisc on
ip -n "$NS_SW" link set trunk up promisc on
i=0
for h in "$NS_ACLI $CLI_IP $CLI_GW $CLI_MAC" "$NS_ASRV $SRV_IP $SRV_GW $SRV_MAC" \
         "$NS_BCLI $CLI_IP $CLI_GW $CLI_MAC" "$NS_BSRV $SRV_IP $SRV_GW $SRV_MAC"; do
    read -r ns ip gw mac <<<"$h"
    i=$((i + 1))
    veth_pair "$ns" eth0 "$mac" "$NS_SW" "${ns#gwt-}" "02:00:00:fe:01:0$i" 1500
    ip -n "$NS_SW" link set "${ns#gwt-}" up promisc on
    host_side "$ns" eth0 "$ip/24" "$gw" "$GW_USER_MAC"
done
ip netns exec "$NS_SW" "$PY" "$ROOT/scripts/lib/vlansw.py" --trunk trunk \
    --access "a-cli:$VLAN_A" --access "a-srv:$VLAN_A" --access "b-cli:$VLAN_B" --access "b-srv:$VLAN_B" \
    2>"$WORK/vlansw.err" &
echo $! > "$WORK/vlansw.pid"
veth_pair "$NS_GW" gwta0 "$GW_APP_MAC" "$NS_APPS" gw 02:00:00:fe:61:01 1600
veth_pair "$NS_APP1" eth0 "$APP1_MAC" "$NS_APPS" app1 02:00:00:fe:61:0b 1600
veth_pair "$NS_APP2" eth0 "$APP2_MAC" "$NS_APPS" app2 02:00:00:fe:61:0c 1600
veth_pair "$NS_SENS" eth0 "$SENS_MAC" "$NS_APPS" sens 02:00:00:fe:61:32 1600
for p in gw app1 app2 sens; do bridge_port "$NS_APPS" "$p"; done
ip -n "$NS_GW" link set gwta0 up promisc on arp off
for a in "1 $NS_APP1 $APP1_IP" "2 $NS_APP2 $APP2_IP"; do
    read -r n ns ip <<<"$a"
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip netns exec "$ns" "$AWS_BIN" --listen "$ip" --hc-port "$HC_PORT" \
        --flow-log "$WORK/app$n-flows.log" --stats >"$WORK/app$n.out" 2>"$WORK/app$n.err" &
    echo $! > "$WORK/app$n.pid"
done
# The sensor: a health-check listener and a capture of the VXLAN copies.
ip -n "$NS_SENS" addr add "$SENS_IP/24" dev eth0
ip -n "$NS_SENS" link set eth0 up
ip netns exec "$NS_SENS" socat "TCP-LISTEN:$HC_PORT,bind=$SENS_IP,reuseaddr,fork" /dev/null >/dev/null 2>&1 &
hc=$!
ip netns exec "$NS_SENS" tcpdump -i eth0 -n -U -s 0 -w "$WORK/sensor.pcap" "udp dst port 4789" \
    >/dev/null 2>"$WORK/sensor-tcpdump.err" &
echo "$hc" > "$WORK/sensor-hc.pid"
echo $! > "$WORK/sensor.pid"

# --- gwlb ----------------------------------------------------------------------------------------
# endpoint_routes: a tenant's routes back (the same for both tenants: same hosts, same MACs).
endpoint_routes() {
    cat <<EOF
[[endpoints.routes]]
prefix = "10.1.1.0/24"
via = "$CLI_IP"
mac = "$CLI_MAC"
[[endpoints.routes]]
prefix = "10.1.2.0/24"
via = "$SRV_IP"
mac = "$SRV_MAC"
EOF
}
group() { # group NAME APP_IP
    cat <<EOF
[[target_groups]]
name = "$1"
[target_groups.health_check]
protocol = "tcp"
port = $HC_PORT
interval_ms = 300
timeout_ms = 200
healthy_threshold = 2
unhealthy_threshold = 2
[[target_groups.targets]]
address = "$2"
EOF
}
cat > "$WORK/gwlb.toml" <<EOF
# generated by scripts/e2e-tenants.sh
[dataplane]
worker_cpus = [$WORKER_CPU]
main_cpu = $MAIN_CPU
hugepages = "off"
memory_mb = 256
eal_args = ["--no-pci", "--file-prefix=gwt"]
mbufs_per_worker = 8192
flow_table_capacity = 65536

[[ports]]
name = "trunk"
device = "net_af_packet0,iface=gwtu0"
role = "user"
address = "$GW_USER_IP/24"

[[ports]]
name = "apps"
device = "net_af_packet1,iface=gwta0"
role = "appliance"
address = "$GW_APP_IP/24"
mtu = 1600
kernel_interface = "$GW_APP_KIF"

$(group fw-a "$APP1_IP")

$(group fw-b "$APP2_IP")

$(group sensors "$SENS_IP")

# Tenant A's flows its default action decides (HTTP, UDP), copied as they arrive (tagged).
[[mirror_sessions]]
name = "a-default"
target_group = "sensors"
vni = $MIRROR_VNI
endpoints = ["tenant-a"]
rules = ["default"]

[[endpoints]]
name = "tenant-a"
ports = ["trunk"]
vlan = [$VLAN_A]
target_group = "fw-a"
endpoint_id = $EID_A
$(endpoint_routes)
[[endpoints.rules]]
name = "fw-then-ids"
protocols = [6]
destination_ports = ["$CHAIN_PORT"]
action = "chain"
chain = ["fw-a", "fw-b"]
[[endpoints.rules]]
name = "backup"
protocols = [6]
destination_ports = ["$BYPASS_PORT"]
direction = "forward"
action = "bypass"
[[endpoints.rules]]
name = "no-telnet"
protocols = [6]
destination_ports = ["$DROP_PORT"]
action = "drop"

[[endpoints]]
name = "tenant-b"
ports = ["trunk"]
vlan = [$VLAN_B]
target_group = "fw-b"
endpoint_id = $EID_B
$(endpoint_routes)
[[endpoints.rules]]
name = "no-telnet"
protocols = [6]
destination_ports = ["$DROP_PORT"]
action = "drop"
tcp_reset = true

[control]
api_listen = "unix:$WORK/api.sock"
metrics_listen = "off"
log_format = "human"
EOF
tlog "starting gwlb in $NS_GW"
GW_STARTED=$(date +%s.%N)
NO_COLOR=1 setsid ip netns exec "$NS_GW" "$GWLB_BIN" run --config "$WORK/gwlb.toml" \
    >"$WORK/gwlb.out" 2>"$WORK/gwlb.err" &
echo $! > "$WORK/gwlb.pid"
for _ in $(seq 100); do
    grep -q "worker started" "$WORK/gwlb.err" 2>/dev/null && break
    kill -0 "$(cat "$WORK/gwlb.pid")" 2>/dev/null || abort "gwlb starts"
    sleep 0.1
done
for ip in "$APP1_IP" "$APP2_IP" "$SENS_IP"; do
    gw_wait_health "$ip" healthy "$GW_STARTED" 10 >/dev/null || abort "appliance $ip passes its health checks"
done
ok "gwlb runs (one trunk port, endpoints tenant-a on VLAN $VLAN_A and tenant-b on VLAN $VLAN_B); appliances $APP1_IP (fw-a) and $APP2_IP (fw-b) healthy"

# --- services ------------------------------------------------------------------------------------
# Each server says who it is: HTTP on :80, a UDP echo on :$UDP_PORT, a banner on
# :$BYPASS_PORT and on :$DROP_PORT. An iptables counter of what arrives on eth0 for
# :$DROP_PORT.
for ns in "$NS_ASRV" "$NS_BSRV"; do
    mkdir -p "$WORK/www-$ns"
    echo "hello from $ns" > "$WORK/www-$ns/index.html"
    ip netns exec "$ns" "$PY" "$ROOT/scripts/lib/httpd.py" "$SRV_IP" 80 "$WORK/www-$ns" 2>"$WORK/httpd-$ns.log" &
    ip netns exec "$ns" socat "UDP-LISTEN:$UDP_PORT,bind=$SRV_IP,reuseaddr,fork" \
        SYSTEM:"read l; echo \"\$l at $ns\"" >/dev/null 2>&1 &
    for p in "$BYPASS_PORT" "$DROP_PORT"; do
        ip netns exec "$ns" socat "TCP-LISTEN:$p,bind=$SRV_IP,reuseaddr,fork" SYSTEM:"echo banner $p from $ns" >/dev/null 2>&1 &
    done
    # The chain's: the banner, then an echo of each line until the client closes.
    ip netns exec "$ns" socat "TCP-LISTEN:$CHAIN_PORT,bind=$SRV_IP,reuseaddr,fork" \
        SYSTEM:"echo banner $CHAIN_PORT from $ns; cat" >/dev/null 2>&1 &
    ip netns exec "$ns" iptables -w -A INPUT -i eth0 -p tcp --dport "$DROP_PORT"
done
for ns in "$NS_ASRV" "$NS_BSRV"; do
    for _ in $(seq 50); do
        l=$(ip netns exec "$ns" ss -Hltun)
        grep -q "$SRV_IP:80 " <<<"$l" && grep -q "$SRV_IP:$UDP_PORT " <<<"$l" &&
            grep -q "$SRV_IP:$BYPASS_PORT " <<<"$l" && grep -q "$SRV_IP:$DROP_PORT " <<<"$l" &&
            grep -q "$SRV_IP:$CHAIN_PORT " <<<"$l" && break
        sleep 0.1
    done
done

ax() { ip netns exec "$NS_ACLI" "$@"; }
bx() { ip netns exec "$NS_BCLI" "$@"; }
# appflows N: the flow log of appliance N ("proto src dst in returned blocked endpoint_id"),
# rewritten now (SIGUSR1).
appflows() { kill -USR1 "$(cat "$WORK/app$1.pid")" 2>/dev/null; sleep 0.3; cat "$WORK/app$1-flows.log" 2>/dev/null; }
apppackets() { appflows "$1" | awk '{s += $4} END {print s + 0}'; }
# ep NAME JQ: a value of an endpoint from GET /v1/endpoints.
ep() { curl -s --unix-socket "$WORK/api.sock" http://gwlb/v1/endpoints | jq -r --arg n "$1" ".[] | select(.name == \$n) | $2"; }
rule() { ep "$1" ".rules[] | select(.name == \"$2\") | .$3"; }
wstat() { curl -s --unix-socket "$WORK/api.sock" http://gwlb/v1/stats | jq "[.workers[].$1] | add"; }
wdrop() { curl -s --unix-socket "$WORK/api.sock" http://gwlb/v1/stats | jq "[.workers[].drops.$1 // 0] | add"; }
dropcount() { ip netns exec "$1" iptables -w -nvxL INPUT | awk -v p="dpt:$DROP_PORT" '$0 ~ p {print $1}'; }
hexid() { printf '0x%016x' "$1"; }
# both_saw SPORT MIN: whether both appliances' flow logs show tenant A's connection from
# client port SPORT to the chain port with at least MIN packets, each as many as the other,
# all returned; sets l1 l2 in1 ret1 id1 in2 ret2 id2.
both_saw() {
    local k="tcp $CLI_IP:$1 $SRV_IP:$CHAIN_PORT"
    l1=$(appflows 1 | awk -v k="$k" 'index($0, k " ") == 1') l2=$(appflows 2 | awk -v k="$k" 'index($0, k " ") == 1')
    read -r _ _ _ in1 ret1 _ id1 <<<"$l1"
    read -r _ _ _ in2 ret2 _ id2 <<<"$l2"
    [ -n "$l1" ] && [ -n "$l2" ] && [ "${in1:-0}" -ge "$2" ] && [ "$in1" = "$in2" ] && [ "$ret1" = "$in1" ] && [ "$ret2" = "$in2" ]
}

# --- two tenants, the same addresses -----------------------------------------------------------------
tlog "two tenants with the same addresses"
ra=$(ax curl -s -m 5 "http://$SRV_IP/") rb=$(bx curl -s -m 5 "http://$SRV_IP/")
[ "$ra" = "hello from $NS_ASRV" ] && ok "tenant A's client reaches tenant A's server $SRV_IP (HTTP: '$ra')" ||
    bad "tenant A's client reaches its own server" "got '$ra'"
[ "$rb" = "hello from $NS_BSRV" ] && ok "tenant B's client reaches tenant B's server $SRV_IP (HTTP: '$rb')" ||
    bad "tenant B's client reaches its own server" "got '$rb'"
# The same 5-tuple in both tenants at the same time: TCP and UDP from the same client ports.
ax curl -s -m 5 --local-port 40001 "http://$SRV_IP/" >"$WORK/a.same" & pa=$!
bx curl -s -m 5 --local-port 40001 "http://$SRV_IP/" >"$WORK/b.same" & pb=$!
wait $pa $pb
ra=$(cat "$WORK/a.same") rb=$(cat "$WORK/b.same")
[ "$ra" = "hello from $NS_ASRV" ] && [ "$rb" = "hello from $NS_BSRV" ] &&
    ok "the same TCP 5-tuple ($CLI_IP:40001 -> $SRV_IP:80) in both tenants at once: each reaches its own server" ||
    bad "the same TCP 5-tuple in both tenants at once" "A got '$ra', B got '$rb'"
ua=$(echo "udp-a" | ax timeout 5 socat -T3 - "UDP:$SRV_IP:$UDP_PORT,sourceport=40002")
ub=$(echo "udp-b" | bx timeout 5 socat -T3 - "UDP:$SRV_IP:$UDP_PORT,sourceport=40002")
[ "$ua" = "udp-a at $NS_ASRV" ] && [ "$ub" = "udp-b at $NS_BSRV" ] &&
    ok "the same UDP 5-tuple ($CLI_IP:40002 -> $SRV_IP:$UDP_PORT), distinct payloads: A echoed by A's server, B by B's" ||
    bad "the same UDP 5-tuple in both tenants" "A got '$ua', B got '$ub'"
na=$(grep -c "GET" "$WORK/httpd-$NS_ASRV.log") nb=$(grep -c "GET" "$WORK/httpd-$NS_BSRV.log")
[ "$na" = 2 ] && [ "$nb" = 2 ] && ok "each server's HTTP log shows exactly its own tenant's 2 requests" ||
    bad "each server got only its tenant's requests" "A's server $na, B's server $nb (want 2 each)"

F1=$(appflows 1) F2=$(appflows 2)
ids1=$(awk '{print $7}' <<<"$F1" | sort -u | xargs) ids2=$(awk '{print $7}' <<<"$F2" | sort -u | xargs)
[ "$ids1" = "$(hexid "$EID_A")" ] && [ "$ids2" = "$(hexid "$EID_B")" ] && [ "$ids1" != "$ids2" ] &&
    ok "the appliances saw distinct endpoint ids: fw-a's $APP1_IP only $ids1 (tenant-a), fw-b's $APP2_IP only $ids2 (tenant-b)" ||
    bad "distinct endpoint ids at the appliances" "$APP1_IP saw '$ids1', $APP2_IP saw '$ids2' (want $(hexid "$EID_A") and $(hexid "$EID_B"), distinct)"
k_tcp="tcp $CLI_IP:40001 $SRV_IP:80" k_udp="udp $CLI_IP:40002 $SRV_IP:$UDP_PORT"
seen() { awk -v k="$2" 'index($0, k " ") == 1 && $4 >= 1 && $4 == $5 {f = 1} END {exit !f}' <<<"$1"; }
seen "$F1" "$k_tcp" && seen "$F2" "$k_tcp" && seen "$F1" "$k_udp" && seen "$F2" "$k_udp" &&
    ok "each tenant's same-5-tuple TCP and UDP flows crossed its own group's appliance, both directions returned" ||
    bad "each tenant's flows on its own appliance" "fw-a: $(tr '\n' ';' <<<"$F1") fw-b: $(tr '\n' ';' <<<"$F2")"
pa=$(ep tenant-a .packets) fa=$(ep tenant-a .flows) pb=$(ep tenant-b .packets) fb=$(ep tenant-b .flows)
eida=$(ep tenant-a .endpoint_id) eidb=$(ep tenant-b .endpoint_id)
# 3 flows each: two HTTP connections and one UDP exchange.
[ "$fa" = 3 ] && [ "$fb" = 3 ] && [ "$pa" -gt 0 ] && [ "$pb" -gt 0 ] &&
    ok "per-endpoint counters apart (GET /v1/endpoints): tenant-a ($eida) $fa flows, $pa packets; tenant-b ($eidb) $fb flows, $pb packets" ||
    bad "per-endpoint counters" "tenant-a flows $fa packets $pa, tenant-b flows $fb packets $pb (want 3 flows each)"
gw_cli stats >"$WORK/stats.txt" 2>&1 && grep -q tenant-a "$WORK/stats.txt" && grep -q tenant-b "$WORK/stats.txt" &&
    ok "gwlb stats lists both endpoints" || bad "gwlb stats lists both endpoints" "$(head -c 300 "$WORK/stats.txt")"

# --- bypass ------------------------------------------------------------------------------------------
tlog "bypass rule (tenant A, TCP/$BYPASS_PORT)"
P1=$(apppackets 1) P2=$(apppackets 2) by0=$(wstat bypassed) rp0=$(rule tenant-a backup packets)
r=$(ax timeout 5 socat -T3 - "TCP:$SRV_IP:$BYPASS_PORT,connect-timeout=3" </dev/null 2>&1)
[ "$r" = "banner $BYPASS_PORT from $NS_ASRV" ] && ok "bypass: tenant A's TCP/$BYPASS_PORT reaches its server ('$r')" ||
    bad "bypass: TCP/$BYPASS_PORT reaches the server" "got '$r'"
sleep 0.3
P1b=$(apppackets 1) P2b=$(apppackets 2)
F1=$(appflows 1)
[ "$P1b" = "$P1" ] && [ "$P2b" = "$P2" ] && ! grep -q ":$BYPASS_PORT " <<<"$F1" &&
    ok "bypass: the appliances never saw it (packets in: fw-a $P1 -> $P1b, fw-b $P2 -> $P2b; no :$BYPASS_PORT flow logged)" ||
    bad "bypass: no appliance sees it" "fw-a $P1 -> $P1b, fw-b $P2 -> $P2b; $(grep ":$BYPASS_PORT " <<<"$F1" | xargs)"
by1=$(wstat bypassed) rp1=$(rule tenant-a backup packets) rf1=$(rule tenant-a backup flows)
[ "$by1" -gt "$by0" ] && [ "$rp1" -gt "$rp0" ] && [ "$rf1" = 1 ] &&
    ok "bypass: counted (workers' bypassed $by0 -> $by1; rule tenant-a/backup packets $rp0 -> $rp1, flows $rf1)" ||
    bad "bypass counted" "bypassed $by0 -> $by1, rule packets $rp0 -> $rp1, flows $rf1"

# --- drop ----------------------------------------------------------------------------------------------
tlog "drop rules (TCP/$DROP_PORT: tenant A silently, tenant B with a RST)"
pd0=$(wdrop policy_drop) rs0=$(wstat tcp_resets) P1=$(apppackets 1) P2=$(apppackets 2)
t0=$(date +%s.%N)
out=$(ax timeout 6 socat -T3 - "TCP:$SRV_IP:$DROP_PORT,connect-timeout=2" </dev/null 2>&1) && outrc=0 || outrc=$?
el=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
[ "$outrc" != 0 ] && grep -q "timed out" <<<"$out" && ok "drop: tenant A's TCP/$DROP_PORT connect timed out after ${el}s" ||
    bad "drop: tenant A's TCP/$DROP_PORT times out" "rc $outrc after ${el}s: $out"
t0=$(date +%s.%N)
out=$(bx timeout 6 socat -T3 - "TCP:$SRV_IP:$DROP_PORT,connect-timeout=2" </dev/null 2>&1) && outrc=0 || outrc=$?
el=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
[ "$outrc" != 0 ] && grep -q "Connection refused" <<<"$out" && ok "drop with tcp_reset: tenant B's TCP/$DROP_PORT refused at once (RST after ${el}s)" ||
    bad "drop with tcp_reset: tenant B's TCP/$DROP_PORT refused" "rc $outrc after ${el}s: $out"
ca=$(dropcount "$NS_ASRV") cb=$(dropcount "$NS_BSRV")
[ "$ca" = 0 ] && [ "$cb" = 0 ] && ok "drop: no TCP/$DROP_PORT packet reached either server (iptables counters on eth0: A $ca, B $cb)" ||
    bad "drop: nothing reaches the servers" "iptables TCP/$DROP_PORT packets: A '$ca', B '$cb'"
r=$(ip netns exec "$NS_ASRV" timeout 3 socat -T2 - "TCP:$SRV_IP:$DROP_PORT" </dev/null 2>&1)
[ "$r" = "banner $DROP_PORT from $NS_ASRV" ] && ok "the TCP/$DROP_PORT listener answers inside the server namespace (so the drop is gwlb's)" ||
    bad "TCP/$DROP_PORT listener sanity" "got '$r'"
# Workers publish drop counters after every burst, per-rule counters every 100 ms: wait
# (up to 2 s) until the rules' counts have caught up with the drops.
for _ in $(seq 20); do
    rda=$(rule tenant-a no-telnet packets) rdb=$(rule tenant-b no-telnet packets)
    pd1=$(wdrop policy_drop) rs1=$(wstat tcp_resets)
    [ $((pd1 - pd0)) = $((${rda:-0} + ${rdb:-0})) ] && break
    sleep 0.1
done
[ "${rda:-0}" -ge 1 ] && [ "${rdb:-0}" -ge 1 ] && [ $((pd1 - pd0)) = $((rda + rdb)) ] && [ "$rs1" -gt "$rs0" ] &&
    ok "drop: counted under the rules (tenant-a/no-telnet $rda, tenant-b/no-telnet $rdb packets = policy_drop +$((pd1 - pd0)); tcp_resets +$((rs1 - rs0)))" ||
    bad "drop counted under the rules" "rules A '$rda' B '$rdb', policy_drop +$((pd1 - pd0)), tcp_resets +$((rs1 - rs0))"
P1b=$(apppackets 1) P2b=$(apppackets 2)
[ "$P1b" = "$P1" ] && [ "$P2b" = "$P2" ] && ok "drop: the appliances never saw the dropped packets" ||
    bad "drop: no appliance sees them" "fw-a $P1 -> $P1b, fw-b $P2 -> $P2b"

# --- chain -------------------------------------------------------------------------------------------
tlog "chain rule (tenant A, TCP/$CHAIN_PORT: fw-a, then fw-b)"
r=$(ax timeout 5 socat -T3 - "TCP:$SRV_IP:$CHAIN_PORT,connect-timeout=3,sourceport=40003" </dev/null 2>&1)
[ "$r" = "banner $CHAIN_PORT from $NS_ASRV" ] && ok "chain: tenant A's TCP/$CHAIN_PORT reaches its server through both groups ('$r')" ||
    bad "chain: TCP/$CHAIN_PORT reaches the server" "got '$r'"
sleep 0.3
# The connection's packets both ways (SYN, SYN-ACK, ACKs, the banner, FINs): every one through
# both appliances, so each saw as many as the other, and returned them all.
both_saw 40003 6 &&
    ok "chain: both appliances saw every packet of the connection, both directions (fw-a $in1 in / $ret1 returned, fw-b $in2 / $ret2)" ||
    bad "chain: both appliances saw the whole connection" "fw-a: '$l1'; fw-b: '$l2'"
[ "${id1:-}" = "$(hexid "$EID_A")" ] && [ "${id2:-}" = "$(hexid "$EID_A")" ] &&
    ok "chain: both saw it under tenant A's endpoint id $id1 (fw-b serves tenant B otherwise)" ||
    bad "chain: tenant A's endpoint id at both stages" "fw-a '$id1', fw-b '$id2'"
rc=$(rule tenant-a fw-then-ids flows) ch=$(ep tenant-a '.rules[] | select(.name == "fw-then-ids") | .chain | join(">")')
[ "$rc" = 1 ] && [ "$ch" = "fw-a>fw-b" ] && ok "chain: counted under its rule (1 flow; GET /v1/endpoints shows chain $ch)" ||
    bad "chain: counted under its rule" "flows '$rc', chain '$ch'"

# --- a live change disturbs no other flow ----------------------------------------------------------
# A chained connection stays open while rules are put before its rule (PUT of the endpoint's
# list): it goes on through both appliances, counted under its own rule.
tlog "live change: rules inserted before the chain rule while a chained connection is open"
coproc CHAINED { ax socat -T20 - "TCP:$SRV_IP:$CHAIN_PORT,connect-timeout=3,sourceport=40004" 2>&1; }
read -r -t 5 -u "${CHAINED[0]}" banner
echo one >&"${CHAINED[1]}"
read -r -t 5 -u "${CHAINED[0]}" echo1
sleep 0.3
p_before=$(rule tenant-a fw-then-ids packets)
rules=$(curl -s --unix-socket "$WORK/api.sock" http://gwlb/v1/endpoints/tenant-a |
    jq -c '[{"name": "first-quic", "protocols": [17], "destination_ports": ["443"], "action": "bypass"},
            {"name": "first-ssh", "protocols": [6], "destination_ports": ["22"], "action": "drop"}] + .settings.rules')
code=$(curl -s -o "$WORK/put-rules.json" -w '%{http_code}' --unix-socket "$WORK/api.sock" -X PUT \
    http://gwlb/v1/endpoints/tenant-a/rules -d "$rules")
order=$(ep tenant-a '[.rules[].name] | join(",")')
[ "$code" = 200 ] && [[ "$order" == first-quic,first-ssh,*fw-then-ids* ]] &&
    ok "live change: two rules put first in tenant A's list (now $order)" ||
    bad "live change: PUT of tenant A's rules" "HTTP $code: $(cat "$WORK/put-rules.json"); order '$order'"
echo two >&"${CHAINED[1]}"
read -r -t 5 -u "${CHAINED[0]}" echo2
echo three >&"${CHAINED[1]}"
read -r -t 5 -u "${CHAINED[0]}" echo3
exec {CHAINED[1]}>&-
wait "$CHAINED_PID" 2>/dev/null
[ "$banner" = "banner $CHAIN_PORT from $NS_ASRV" ] && [ "$echo1" = one ] && [ "$echo2" = two ] && [ "$echo3" = three ] &&
    ok "live change: the open chained connection goes on after the change ('$banner', then one/two/three echoed)" ||
    bad "live change: the chained connection goes on" "banner '$banner', echoes '$echo1' '$echo2' '$echo3'"
sleep 0.3
both_saw 40004 10 &&
    ok "live change: both appliances saw every packet of it, before and after the change (fw-a $in1 in / $ret1 returned, fw-b $in2 / $ret2)" ||
    bad "live change: both appliances saw the whole connection" "fw-a: '$l1'; fw-b: '$l2'"
for _ in $(seq 20); do
    p_after=$(rule tenant-a fw-then-ids packets)
    [ "${p_after:-0}" -ge $((p_before + 4)) ] && break
    sleep 0.1
done
q=$(rule tenant-a first-quic packets) s=$(rule tenant-a first-ssh packets)
[ "${p_after:-0}" -ge $((p_before + 4)) ] && [ "$q" = 0 ] && [ "$s" = 0 ] &&
    ok "live change: its packets after the change count under its own rule (fw-then-ids $p_before -> $p_after packets; the new rules 0 and 0)" ||
    bad "live change: counted under its own rule" "fw-then-ids $p_before -> $p_after, first-quic '$q', first-ssh '$s'"

# --- mirroring by endpoint and rule ------------------------------------------------------------------
# Session a-default copies what tenant A's default action decides: its HTTP and UDP (both
# directions), not tenant B's same-addressed traffic, and not tenant A's bypass, drop or chain
# rules' packets. The sensor's capture against the session's and the rule's counters.
tlog "mirroring by endpoint and rule (session a-default: tenant A's flows its default action decides)"
sleep 0.5
# Both counts from one GET /v1/stats (one reading of the workers' counters), once two
# readings 200 ms apart agree (the traffic has settled).
counts() {
    curl -s --unix-socket "$WORK/api.sock" http://gwlb/v1/stats | jq -r '[(.mirror_sessions[] | select(.name == "a-default") | .packets, .no_sensor, .no_buffer),
        (.endpoints[] | select(.name == "tenant-a") | .rules[] | select(.name == "default") | .packets)] | join(" ")'
}
prev=$(counts)
for _ in $(seq 20); do
    sleep 0.2
    now=$(counts)
    [ "$now" = "$prev" ] && break
    prev=$now
done
read -r n_api n_nosensor n_nobuffer n_rule <<<"$now"
kill -INT "$(cat "$WORK/sensor.pid")" 2>/dev/null; sleep 0.5
fields=$(tshark -r "$WORK/sensor.pcap" -d udp.port==4789,vxlan -Y "vxlan.vni == $MIRROR_VNI" \
    -T fields -e vlan.id -e tcp.port -e udp.port 2>/dev/null)
n_cap=$(grep -c . <<<"$fields")
not_a=$(awk -F'\t' '$1 != "'"$VLAN_A"'"' <<<"$fields" | grep -c .)
others=$(grep -cE "(^|[^0-9])($BYPASS_PORT|$DROP_PORT|$CHAIN_PORT)([^0-9]|$)" <<<"$fields")
http=$(grep -cE "(^|[^0-9])80([^0-9]|$)" <<<"$fields") udp=$(grep -cE "(^|[^0-9])$UDP_PORT([^0-9]|$)" <<<"$fields")
# Every packet of the rule copied (and captured), or counted not copied (no healthy sensor
# at that moment, or no buffer).
[ "${n_cap:-0}" -gt 0 ] && [ "$n_cap" = "$n_api" ] && [ $((n_api + n_nosensor + n_nobuffer)) = "$n_rule" ] &&
    ok "the sensor got $n_cap copies: the session's count ($n_api; not copied: no_sensor $n_nosensor, no_buffer $n_nobuffer) and tenant A's default rule's packets ($n_rule)" ||
    bad "copies = the session's count = the rule's packets" "captured '$n_cap', session '$n_api' (no_sensor '$n_nosensor', no_buffer '$n_nobuffer'), rule '$n_rule'"
[ "$not_a" = 0 ] && [ "$others" = 0 ] && [ "$http" -gt 0 ] && [ "$udp" -gt 0 ] &&
    ok "every copy is tenant A's (VLAN $VLAN_A), HTTP ($http) and UDP ($udp) only: none of tenant B's, none of the bypass, drop or chain rules'" ||
    bad "only tenant A's default-rule traffic copied" "not VLAN $VLAN_A: $not_a, other rules' ports: $others, http $http, udp $udp"
[ "$n_cap" = "$n_api" ] && [ "$others" = 0 ] || sort <<<"$fields" | uniq -c | sed 's/^/      copies: /'

# --- end ---------------------------------------------------------------------------------------------
ra=$(ax curl -s -m 5 "http://$SRV_IP/") rb=$(bx curl -s -m 5 "http://$SRV_IP/")
[ "$ra" = "hello from $NS_ASRV" ] && [ "$rb" = "hello from $NS_BSRV" ] && ok "both tenants still reach their own servers" ||
    bad "both tenants still reach their own servers" "A '$ra', B '$rb'"
pid=$(cat "$WORK/gwlb.pid")
kill -INT "$pid"; wait "$pid"; rc=$?; rm -f "$WORK/gwlb.pid"
[ "$rc" = 0 ] && ok "gwlb exits 0 on SIGINT" || bad "gwlb exits 0 on SIGINT" "exit code $rc"
tlog "done"

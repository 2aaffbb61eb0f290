# shellcheck shell=bash
# Namespace topology shared by scripts/demo.sh and scripts/e2e.sh (source it, do not run it).
#
#   gwlb-client  eth0 10.10.1.2/24, default via 10.10.1.1 ─┐
#   gwlb-server  eth0 10.10.2.2/24, default via 10.10.2.1 ─┤ bridge br0 in gwlb-lan
#   gwlb-gw      gwu0 (gwlb "user" port, 10.10.0.1/16)  ───┘
#   gwlb-gw      gwa0 (gwlb "appliance" port, 10.99.0.1/24) ─┐
#                gwak (TAP: the kernel's side of 10.99.0.1)  │
#   gwlb-app1    eth0 -> UML Linux-kernel appliance 10.99.0.11 ├ bridge br0 in gwlb-apps
#   gwlb-app2    eth0 -> UML Linux-kernel appliance 10.99.0.12 │
#   gwlb-app3    eth0 10.99.0.13, aws_appliance (AWS style) ───┘
#
# gwlb is the router of the client and server subnets (the route-table next hop). Its single
# user port holds one IPv4 address (10.10.0.1/16, which covers both subnets); the client's
# and server's gateway addresses 10.10.1.1 and 10.10.2.1 are static neighbor entries that
# point at gwlb's MAC, and gwlb knows the client's and server's MACs statically too: a kernel
# interface on the user port would only answer ARP for 10.10.0.1 (one IPv4 address per port),
# and gwlb learns MACs only of targets and route next hops, not of connected hosts.
#
# The appliance side is dynamic: gwlb's appliance port has a kernel interface (gwak, a TAP;
# the exception path). The gw namespace kernel owns 10.99.0.1 there: it answers the
# appliances' ARP, sends gwlb's health-check probes (TCP to :8080 of every appliance, from
# 10.99.0.1, out through DPDK) and resolves the appliances' MACs, which gwlb learns from its
# neighbour table (no target has a static MAC, the appliances have no static entry for the
# gateway). gwlb's veths have no IP address (the gw namespace kernel must not answer on
# them: gwa0 also has ARP off, IPv6 is off everywhere), are promiscuous, and every veth has
# checksum offload and TSO/GSO/GRO off (af_packet/af_xdp on veth would otherwise see partial
# checksums and 64 KiB GSO frames). Every interface has a fixed MAC, so a restarted UML
# appliance comes back with the MAC gwlb learned before.
#
# MTUs: 1500 on the user side, except gwlb's own user link (gwu0 and its bridge port,
# APP_MTU + 100 and at least 2000 bytes) so that oversize frames can reach gwlb; APP_MTU on
# the appliance side (default 1600, which carries a 1500-byte user packet plus 68 bytes of
# Geneve; scripts/e2e.sh uses 9000). An inner packet over APP_MTU - 68 bytes cannot be
# encapsulated and is dropped as "oversize" (docs/architecture.md).

TOPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
UML_SH=$TOPO_ROOT/scripts/appliance/uml-appliance.sh
GWLB_BIN=${GWLB_BIN:-$TOPO_ROOT/target/release/gwlb}
AWS_BIN=${AWS_BIN:-$TOPO_ROOT/target/release/examples/aws_appliance}
PY=/usr/bin/python3
WORK=${GWLB_DEMO_WORK:-/run/gwlb-demo}   # pid files, logs, config (removed by topo_cleanup)

NS_CLIENT=gwlb-client NS_SERVER=gwlb-server NS_GW=gwlb-gw NS_LAN=gwlb-lan NS_APPS=gwlb-apps
NS_APP1=gwlb-app1 NS_APP2=gwlb-app2 NS_APP3=gwlb-app3 NS_SENSOR=gwlb-sensor
ALL_NS=("$NS_CLIENT" "$NS_SERVER" "$NS_GW" "$NS_LAN" "$NS_APPS" "$NS_APP1" "$NS_APP2" "$NS_APP3" "$NS_SENSOR")
UML1=gwlb-app1 UML2=gwlb-app2          # uml-appliance.sh names (state in /run/gwlb-uml/NAME)

CLIENT_IP=10.10.1.2 CLIENT_GW=10.10.1.1 CLIENT_MAC=02:00:0a:0a:01:02
SERVER_IP=10.10.2.2 SERVER_GW=10.10.2.1 SERVER_MAC=02:00:0a:0a:02:02
GW_USER_IP=10.10.0.1 GW_USER_MAC=02:00:0a:0a:00:01
GW_APP_IP=10.99.0.1 GW_APP_MAC=02:00:0a:63:00:01
APP1_IP=10.99.0.11 APP1_MAC=02:00:0a:63:00:0b   # MAC of the UML guest NIC
APP2_IP=10.99.0.12 APP2_MAC=02:00:0a:63:00:0c
APP3_IP=10.99.0.13 APP3_MAC=02:00:0a:63:00:0d
# The IDS sensor of the mirror sessions (issue 17): a namespace on the appliance side that
# captures what gwlb mirrors to it (VXLAN and Geneve) and answers TCP health checks.
SENSOR_IP=10.99.0.50 SENSOR_MAC=02:00:0a:63:00:32
# Client source ports of the UDP flows the two sessions select: every packet, and 1 in 4.
MIRROR_ALL_PORTS=45501-45600 MIRROR_SAMPLED_PORTS=45601-45800 MIRROR_SAMPLE=4
VNI=1
BLOCKED_PORT=23
APP_MTU=${APP_MTU:-1600}   # appliance side: user MTU 1500 + 68 (IPv4 Geneve) fits
# gwu0 and its bridge port only: lets oversize frames (one byte over what fits the appliance
# side) reach gwlb.
GW_USER_LINK_MTU=$((APP_MTU + 100 > 2000 ? APP_MTU + 100 : 2000))
GW_APP_KIF=gwak            # gwlb's kernel interface (TAP) of the appliance port
MAX_INNER=$((APP_MTU - 68)) # largest inner packet gwlb can encapsulate toward the appliances
# Health checks: TCP connect to HC_PORT of each appliance. Detection of a dead appliance takes
# at most HC_THRESHOLD probes, each at most HC_INTERVAL_MS (+ HC_JITTER %) after the previous
# one, the last one failing by its timeout: see hc_detect_bound_ms.
# 500/300 ms rather than less: on a loaded 2-core machine gwlb's worker can be starved for
# half a second or more, and tighter settings then flap every appliance at once.
HC_PORT=8080 HC_INTERVAL_MS=500 HC_TIMEOUT_MS=300 HC_THRESHOLD=2 HC_JITTER=10
# Data-path probes (Geneve through the appliance and back) with each check: off at start;
# e2e.sh turns them on live for its data-path section. They wait on the appliances' own
# scheduling: while a UML guest boots on the CPU the other appliances share, a 300 ms probe
# of the AWS-style (user-space) and the other UML appliance failed twice in a row (once, in
# an af_xdp run), a false positive the kill/restart sections must not see.
HC_DATA_PATH=${HC_DATA_PATH:-false}
ON_UNHEALTHY=rebalance     # existing flows of an unhealthy appliance move to healthy ones
# Weights for new flows: app1 : app2 : app3 (see the weights check in e2e.sh).
W1=1 W2=1 W3=2
WORKER_CPU=1 MAIN_CPU=0      # gwlb's worker and main lcore (the main CPU also runs the helpers)
ECHO_PORT=5354             # UDP echo (udpflows.py) on the server, for the UDP flow tests

tlog() { printf '[%5.1fs] %s\n' "$(awk -v a="${TOPO_T0:-0}" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$*" >&2; }

# Everything of a previous or the current run: gwlb, appliances, helpers, namespaces, files.
topo_cleanup() {
    local pids ns
    disown -a 2>/dev/null   # no "Killed" job notices for the helpers killed below
    # gwlb and helpers first (pid files), politely.
    for f in "$WORK"/*.pid; do
        [ -e "$f" ] || continue
        pids=$(cat "$f" 2>/dev/null) || continue
        [ -n "$pids" ] && kill -INT $pids 2>/dev/null
    done
    # UML appliances: SIGTERM tears a guest down in < 1 s (uml-appliance.sh stop would first
    # wait 5 s for a polite poweroff); uml-appliance.sh stop then kills any rest and its state.
    for n in "$UML1" "$UML2"; do
        if [ -f "/run/gwlb-uml/$n/uml.pid" ]; then
            kill -TERM "$(cat "/run/gwlb-uml/$n/uml.pid")" 2>/dev/null
        fi
    done
    sleep 0.5
    local stoppers=()
    for n in "$UML1" "$UML2"; do
        if [ -d "/run/gwlb-uml/$n" ]; then
            "$UML_SH" stop --name "$n" >/dev/null 2>&1 &
            stoppers+=($!)
        fi
    done
    [ ${#stoppers[@]} -gt 0 ] && wait "${stoppers[@]}"   # not a bare wait: helpers are children too
    # Whatever still runs inside our namespaces was started by us.
    for ns in "${ALL_NS[@]}"; do
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        [ -n "${pids// /}" ] && kill -KILL $pids 2>/dev/null
    done
    for ns in "${ALL_NS[@]}"; do
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$WORK"
    # The appliances' state root, once their own directories are gone (never others' state).
    rmdir /run/gwlb-uml 2>/dev/null
    return 0
}

# veth_pair NS_A IF_A MAC_A NS_B IF_B MAC_B MTU
veth_pair() {
    ip link add "$2" netns "$1" address "$3" mtu "$7" type veth \
        peer name "$5" netns "$4" address "$6" mtu "$7"
    offloads_off "$1" "$2"
    offloads_off "$4" "$5"
}
offloads_off() { ip netns exec "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true; }

ns_add() {
    ip netns add "$1"
    ip -n "$1" link set lo up
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# bridge NS: a Linux bridge br0 in NS, no STP, no address; ports added with bridge_port.
# A plain L2 switch: where br_netfilter is loaded, bridged IPv4 would otherwise be validated
# (and malformed headers dropped) by the namespace's netfilter before reaching gwlb.
bridge_add() {
    ip -n "$1" link add br0 type bridge stp_state 0 forward_delay 0
    ip -n "$1" link set br0 up
    ip netns exec "$1" sysctl -qw net.bridge.bridge-nf-call-iptables=0 \
        net.bridge.bridge-nf-call-ip6tables=0 net.bridge.bridge-nf-call-arptables=0 2>/dev/null || true
}
bridge_port() { ip -n "$1" link set "$2" master br0; ip -n "$1" link set "$2" up; }

# host NS IF IP/LEN GW GW_MAC: a client/server end: address, default route, static gateway MAC.
host_side() {
    ip -n "$1" addr add "$3" dev "$2"
    ip -n "$1" link set "$2" up
    ip -n "$1" route add default via "$4" dev "$2"
    ip -n "$1" neigh replace "$4" lladdr "$5" dev "$2" nud permanent
}

topo_create() {
    mkdir -p "$WORK"
    for ns in "${ALL_NS[@]}"; do ns_add "$ns"; done
    bridge_add "$NS_LAN"
    bridge_add "$NS_APPS"
    # user side
    veth_pair "$NS_CLIENT" eth0 "$CLIENT_MAC" "$NS_LAN" client 02:00:00:ff:01:02 1500
    veth_pair "$NS_SERVER" eth0 "$SERVER_MAC" "$NS_LAN" server 02:00:00:ff:02:02 1500
    veth_pair "$NS_GW" gwu0 "$GW_USER_MAC" "$NS_LAN" gw 02:00:00:ff:00:01 "$GW_USER_LINK_MTU"
    for p in client server gw; do bridge_port "$NS_LAN" "$p"; done
    host_side "$NS_CLIENT" eth0 "$CLIENT_IP/24" "$CLIENT_GW" "$GW_USER_MAC"
    host_side "$NS_SERVER" eth0 "$SERVER_IP/24" "$SERVER_GW" "$GW_USER_MAC"
    # The client's own connections (curl, iperf3) take their ports from 50000 up, so they
    # never fall in the client-port ranges the tests pick for their flows (all below 50000)
    # and are never counted as one of them (flows_seen matches by client port).
    ip netns exec "$NS_CLIENT" sysctl -qw net.ipv4.ip_local_port_range="50000 60999"
    # appliance side
    veth_pair "$NS_GW" gwa0 "$GW_APP_MAC" "$NS_APPS" gw 02:00:00:ff:63:01 "$APP_MTU"
    veth_pair "$NS_APP1" eth0 02:00:0a:63:01:0b "$NS_APPS" app1 02:00:00:ff:63:0b "$APP_MTU"
    veth_pair "$NS_APP2" eth0 02:00:0a:63:01:0c "$NS_APPS" app2 02:00:00:ff:63:0c "$APP_MTU"
    veth_pair "$NS_APP3" eth0 "$APP3_MAC" "$NS_APPS" app3 02:00:00:ff:63:0d "$APP_MTU"
    veth_pair "$NS_SENSOR" eth0 "$SENSOR_MAC" "$NS_APPS" sensor 02:00:00:ff:63:32 "$APP_MTU"
    for p in gw app1 app2 app3 sensor; do bridge_port "$NS_APPS" "$p"; done
    ip -n "$NS_SENSOR" addr add "$SENSOR_IP/24" dev eth0
    ip -n "$NS_SENSOR" link set eth0 up
    # AWS-style appliance: a user-space program on the namespace's own IP stack.
    ip -n "$NS_APP3" addr add "$APP3_IP/24" dev eth0
    ip -n "$NS_APP3" link set eth0 up
    # gwlb's ports: up, promiscuous, no address; on gwa0 (whose kernel interface gwlb
    # creates) the namespace kernel must not answer ARP next to gwlb's TAP.
    ip -n "$NS_GW" link set gwu0 up promisc on
    ip -n "$NS_GW" link set gwa0 up promisc on arp off
}

topo_config() { # writes the gwlb config for DRIVER (af_xdp | af_packet) to $WORK/gwlb.toml
    local drv=$1 user_ring=""
    # The user port's MTU is 1500, but its link takes larger frames so that oversize ones
    # reach gwlb: af_packet's ring frames (2 KiB, or what gwlb sizes for the MTU) must
    # hold them too.
    if [ "$drv" = af_packet ] && [ "$GW_USER_LINK_MTU" -gt 1990 ]; then
        local f=$(( (GW_USER_LINK_MTU + 22 + 32 + 4095) / 4096 * 4096 ))
        user_ring=",blocksz=$f,framesz=$f"
    fi
    cat > "$WORK/gwlb.toml" <<EOF
# generated by scripts/lib/topology.sh
[dataplane]
worker_cpus = [$WORKER_CPU]
main_cpu = $MAIN_CPU
hugepages = "off"
memory_mb = 256
eal_args = ["--no-pci"]
mbufs_per_worker = 8192
flow_table_capacity = 65536
stats_interval_s = 1

[[ports]]
name = "user"
device = "net_${drv}0,iface=gwu0$user_ring"
role = "user"
address = "$GW_USER_IP/16"

[[ports]]
name = "apps"
device = "net_${drv}1,iface=gwa0"
role = "appliance"
address = "$GW_APP_IP/24"
mtu = $APP_MTU
kernel_interface = "$GW_APP_KIF"

[[neighbors]]
address = "$CLIENT_IP"
mac = "$CLIENT_MAC"
port = "user"

[[neighbors]]
address = "$SERVER_IP"
mac = "$SERVER_MAC"
port = "user"

[[target_groups]]
name = "demo-fw"
geneve_vni = $VNI
maglev_table_size = 1021
on_unhealthy = "$ON_UNHEALTHY"

[target_groups.health_check]
protocol = "tcp"
data_path = $HC_DATA_PATH
port = $HC_PORT
interval_ms = $HC_INTERVAL_MS
timeout_ms = $HC_TIMEOUT_MS
healthy_threshold = $HC_THRESHOLD
unhealthy_threshold = $HC_THRESHOLD
jitter_percent = $HC_JITTER

# No MACs: gwlb learns them from the kernel's neighbour table on $GW_APP_KIF.
[[target_groups.targets]]
address = "$APP1_IP"
weight = $W1

[[target_groups.targets]]
address = "$APP2_IP"
weight = $W2

[[target_groups.targets]]
address = "$APP3_IP"
weight = $W3

# The sensor pool of the mirror sessions: no user traffic of its own.
[[target_groups]]
name = "sensors"
user_ports = []
[target_groups.health_check]
protocol = "tcp"
port = $HC_PORT
interval_ms = $HC_INTERVAL_MS
timeout_ms = $HC_TIMEOUT_MS
healthy_threshold = $HC_THRESHOLD
unhealthy_threshold = $HC_THRESHOLD
[[target_groups.targets]]
address = "$SENSOR_IP"

[[mirror_sessions]]
name = "ids-all"
target_group = "sensors"
vni = 100
protocols = [17]
l4_ports = ["$MIRROR_ALL_PORTS"]

[[mirror_sessions]]
name = "ids-sampled"
target_group = "sensors"
format = "geneve"
vni = 101
sample_one_in = $MIRROR_SAMPLE
protocols = [17]
l4_ports = ["$MIRROR_SAMPLED_PORTS"]

[control]
api_listen = "unix:$WORK/api.sock"
metrics_listen = "unix:$WORK/metrics.sock"
log_format = "human"
EOF
}

# uml_start N: boots UML appliance N (1 or 2) in its namespace; log in $WORK/umlN.log.
# Blocks until the guest is ready (its health-check listener on :$HC_PORT is up). The guests
# run on CPU $MAIN_CPU, away from gwlb's worker CPU $WORKER_CPU (as a data-plane core is kept
# free in production): a UML boot is CPU-heavy, and on a 2-core machine it starved the worker
# for over a second, so that every appliance failed its health checks at once.
uml_start() {
    local n=$1 ns ip mac
    case $n in
        1) ns=$NS_APP1 ip=$APP1_IP mac=$APP1_MAC ;;
        2) ns=$NS_APP2 ip=$APP2_IP mac=$APP2_MAC ;;
        *) echo "uml_start: no UML appliance $n" >&2; return 2 ;;
    esac
    taskset -c "$MAIN_CPU" "$UML_SH" start --netns "$ns" --name "gwlb-app$n" --dev eth0 --ip "$ip/24" \
        --gateway-ip "$GW_APP_IP" --vni "$VNI" --block-tcp-port "$BLOCKED_PORT" --hc-port "$HC_PORT" \
        --mtu "$APP_MTU" --mac "$mac" --stats-interval 3600 >"$WORK/uml$n.log" 2>&1
}

# uml_kill N: kills UML appliance N at once (SIGKILL to its process group: no shutdown, like
# a crashed or powered-off machine), then removes what is left of it (its state directory,
# flows.log included).
uml_kill() {
    local name=gwlb-app$1 pid
    pid=$(cat "/run/gwlb-uml/$name/uml.pid" 2>/dev/null) || { echo "uml_kill: $name is not running" >&2; return 1; }
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
    "$UML_SH" stop --name "$name" >/dev/null 2>&1
}

# sensor_start: the sensor's health-check listener and its capture of what gwlb mirrors to
# it (VXLAN on 4789, Geneve on 6081, into $WORK/sensor.pcap; pids in $WORK/sensor.pid).
sensor_start() {
    ip netns exec "$NS_SENSOR" socat "TCP-LISTEN:$HC_PORT,bind=$SENSOR_IP,reuseaddr,fork" /dev/null \
        >/dev/null 2>&1 &
    local hc=$!
    ip netns exec "$NS_SENSOR" tcpdump -i eth0 -n -U -s 0 -w "$WORK/sensor.pcap" \
        "udp dst port 4789 or udp dst port 6081" >/dev/null 2>"$WORK/sensor-tcpdump.err" &
    echo "$hc $!" > "$WORK/sensor.pid"
    sleep 0.3
}
# sensor_kill: the sensor goes away (its listener and its capture).
sensor_kill() { kill -INT $(cat "$WORK/sensor.pid") 2>/dev/null; rm -f "$WORK/sensor.pid"; sleep 0.3; }

# Boots both UML appliances in parallel and the AWS-style one. No static neighbours: they
# ARP for the gateway, whose kernel interface answers.
topo_start_appliances() {
    local rc=0
    sensor_start
    uml_start 1 &
    local p1=$!
    uml_start 2 &
    local p2=$!
    ip netns exec "$NS_APP3" "$AWS_BIN" --listen "$APP3_IP" --block-tcp-port "$BLOCKED_PORT" \
        --hc-port "$HC_PORT" --flow-log "$WORK/aws-flows.log" --stats >"$WORK/aws.out" 2>"$WORK/aws.err" &
    echo $! > "$WORK/aws.pid"
    wait $p1 || { rc=1; echo "UML appliance $UML1 failed to start:" >&2; tail -n 20 "$WORK/uml1.log" >&2; }
    wait $p2 || { rc=1; echo "UML appliance $UML2 failed to start:" >&2; tail -n 20 "$WORK/uml2.log" >&2; }
    [ $rc = 0 ] || return 1
    kill -0 "$(cat "$WORK/aws.pid")" 2>/dev/null || { echo "aws_appliance exited:" >&2; cat "$WORK/aws.err" >&2; return 1; }
}

# Starts gwlb in the gw namespace with DRIVER; returns once its worker runs (0) or it died (1).
gwlb_start() {
    local drv=$1 i
    topo_config "$drv"
    # setsid: its own session, hence its own scheduler autogroup (where the kernel has
    # autogroups, CPU time is shared per session): the busy-polling worker then competes
    # with the helpers of this script as one group, not with each of them.
    GW_STARTED=$(date +%s.%N)
    NO_COLOR=1 setsid ip netns exec "$NS_GW" "$GWLB_BIN" run --config "$WORK/gwlb.toml" \
        >"$WORK/gwlb.out" 2>"$WORK/gwlb.err" &
    echo $! > "$WORK/gwlb.pid"
    for i in $(seq 100); do
        grep -q "worker started" "$WORK/gwlb.err" 2>/dev/null && return 0
        kill -0 "$(cat "$WORK/gwlb.pid")" 2>/dev/null || { rm -f "$WORK/gwlb.pid"; return 1; }
        sleep 0.1
    done
    return 1
}

# Stops gwlb with SIGINT; its final counters are in $WORK/gwlb.out. Returns gwlb's exit code.
gwlb_stop() {
    local pid rc=0
    [ -f "$WORK/gwlb.pid" ] || return 1
    pid=$(cat "$WORK/gwlb.pid")
    kill -INT "$pid" 2>/dev/null
    wait "$pid" || rc=$?
    rm -f "$WORK/gwlb.pid"
    return $rc
}

# The client reaches the server only through gwlb: probe until a ping gets through.
wait_path() {
    local i
    for i in $(seq 20); do
        ip netns exec "$NS_CLIENT" ping -c1 -W1 "$SERVER_IP" >/dev/null 2>&1 && return 0
    done
    return 1
}

# Tools the scripts use beyond scripts/install-deps.sh.
topo_need_tools() {
    command -v ping >/dev/null || {
        echo "installing iputils-ping" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iputils-ping >/dev/null 2>&1 ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iputils-ping >/dev/null; }
    }
}

# --- evidence from the appliances ------------------------------------------------------------
# Flow keys are "A.B.C.D.PORT|A.B.C.D.PORT" (the two endpoints sorted), TCP/UDP only.

# uml_flow_dirs NAME: "KEY MASK" per inner flow seen arriving from gwlb (gnv0 In) at a UML
# appliance; MASK 1 = only packets from the client side, 2 = only from the server side,
# 3 = both directions.
uml_flow_dirs() {
    awk -v c="$CLIENT_IP." '$2 == "gnv0" && $3 == "In" && $4 == "IP" {
        s = $5; d = $7; sub(/:$/, "", d)
        if (split(s, x, ".") != 5 || split(d, y, ".") != 5) next
        k = (s < d) ? s "|" d : d "|" s
        if (index(s, c) == 1) a[k] = 1; else b[k] = 1; seen[k] = 1
    } END { for (k in seen) print k, (k in a ? 1 : 0) + (k in b ? 2 : 0) }' \
        "/run/gwlb-uml/$1/guest/flows.log" 2>/dev/null
}

# aws_flows: "KEY PACKETS_IN RETURNED BLOCKED" per flow of the AWS-style appliance (its flow
# log counts both directions of a flow on one line). SIGUSR1 makes it rewrite the log now.
aws_flows() {
    [ -f "$WORK/aws.pid" ] && kill -USR1 "$(cat "$WORK/aws.pid")" 2>/dev/null && sleep 0.3
    awk '$1 == "tcp" || $1 == "udp" {
        s = $2; d = $3; sub(/:/, ".", s); sub(/:/, ".", d)
        print ((s < d) ? s "|" d : d "|" s), $4, $5, $6
    }' "$WORK/aws-flows.log" 2>/dev/null
}

# gnv0 In lines (packets received from gwlb) at a UML appliance matching an ERE.
uml_count() { grep -cE "$2" "/run/gwlb-uml/$1/guest/flows.log" 2>/dev/null || true; }

# --- gwlb and the services -------------------------------------------------------------------

# gwlb_up: starts gwlb with net_af_xdp ports, or net_af_packet if af_xdp does not work here
# (GWLB_DRIVER=af_packet|af_xdp forces one); sets DRIVER; 0 once a ping crosses it and every
# appliance has passed its health checks.
gwlb_up() {
    DRIVER=${GWLB_DRIVER:-af_xdp}
    # DPDK 22.11's af_xdp carries a frame in one 4 KiB UMEM chunk, and the kernel refuses XDP
    # on a veth with a larger MTU: jumbo links need af_packet.
    [ -z "${GWLB_DRIVER:-}" ] && [ "$GW_USER_LINK_MTU" -gt 3000 ] && DRIVER=af_packet
    tlog "starting gwlb in netns $NS_GW (ports net_${DRIVER} on gwu0/gwa0)"
    gwlb_start "$DRIVER" && wait_path && gw_wait_all_healthy && return 0
    [ -n "${GWLB_DRIVER:-}" ] && return 1
    gwlb_stop >/dev/null 2>&1
    DRIVER=af_packet
    tlog "net_af_xdp did not work here; falling back to net_af_packet"
    gwlb_start "$DRIVER" && wait_path && gw_wait_all_healthy
}

# gw_wait_all_healthy: waits (10 s at most) until gwlb has logged every appliance healthy
# since its start. Targets start initial and take no new flows until HC_THRESHOLD probes
# pass (issue 18): a first ping crosses as soon as one appliance is healthy, and the tests
# that spread flows need all three.
gw_wait_all_healthy() {
    local ip
    for ip in "$APP1_IP" "$APP2_IP" "$APP3_IP"; do
        gw_wait_health "$ip" healthy "$GW_STARTED" 10 >/dev/null ||
            { echo "$ip never passed its health checks" >&2; return 1; }
    done
    sleep 0.1   # the snapshot reaches the worker
}

# services NS IP [TCP_PORT_23]: a static HTTP server on :80 (files in $WORK/www-NS, log in
# $WORK/httpd-NS.log), a UDP echo on :5353 that answers "LINE from PEER_ADDRESS", and with a
# third argument a TCP listener on that port. Returns once they listen.
services() {
    local ns=$1 ip=$2 tport=${3:-} i
    mkdir -p "$WORK/www-$ns"
    echo "hello from $ns" > "$WORK/www-$ns/index.html"
    ip netns exec "$ns" "$PY" "$TOPO_ROOT/scripts/lib/httpd.py" "$ip" 80 "$WORK/www-$ns" \
        2>"$WORK/httpd-$ns.log" &
    ip netns exec "$ns" socat "UDP-LISTEN:5353,bind=$ip,reuseaddr,fork" \
        SYSTEM:'read l; echo "$l from $SOCAT_PEERADDR"' >/dev/null 2>&1 &
    if [ -n "$tport" ]; then
        ip netns exec "$ns" socat "TCP-LISTEN:$tport,bind=$ip,reuseaddr,fork" \
            SYSTEM:'echo banner' >/dev/null 2>&1 &
    fi
    for i in $(seq 50); do
        ip netns exec "$ns" ss -Hltn | grep -q "$ip:80 " &&
            ip netns exec "$ns" ss -Hlun | grep -q "$ip:5353 " &&
            { [ -z "$tport" ] || ip netns exec "$ns" ss -Hltn | grep -q "$ip:$tport "; } && return 0
        sleep 0.1
    done
    return 1
}

# udp_echo NS IP: the UDP echo of udpflows.py on IP:$ECHO_PORT; returns once it listens.
udp_echo() {
    local i
    ip netns exec "$1" "$PY" "$TOPO_ROOT/scripts/lib/udpflows.py" echo "$2" "$ECHO_PORT" \
        2>"$WORK/udpecho-$1.log" &
    for i in $(seq 50); do
        ip netns exec "$1" ss -Hlun | grep -q "$2:$ECHO_PORT " && return 0
        sleep 0.1
    done
    return 1
}

# udp_burst LO HI: one new UDP flow client -> server echo per client port LO..HI, each
# answered (udpflows.py burst); prints its "answered N of M" line; 0 if all were answered.
udp_burst() {
    ip netns exec "$NS_CLIENT" "$PY" "$TOPO_ROOT/scripts/lib/udpflows.py" burst \
        --src "$CLIENT_IP" --dst "$SERVER_IP" --port "$ECHO_PORT" --sports "$1-$2"
}

# streams_start SLO SHI: long-lived UDP flows client -> server, one datagram per client port
# SLO..SHI every 50 ms (echoed by the server), in the background (pid in $WORK/streams.pid);
# returns after a second, once they are placed.
streams_start() {
    ip netns exec "$NS_CLIENT" "$PY" "$TOPO_ROOT/scripts/lib/udpflows.py" stream --src "$CLIENT_IP" \
        --dst "$SERVER_IP" --port "$ECHO_PORT" --sports "$1-$2" --log "$WORK/streams.log" &
    echo $! > "$WORK/streams.pid"
    sleep 1
}

# flows_seen LO HI: "APPLIANCE_IP CLIENT_PORT", one line per TCP/UDP flow from a client port
# in LO..HI that the appliance's own log shows arriving from gwlb (UML: tcpdump on gnv0 in
# the guest; aws_appliance: its flow log). A flow seen on two appliances gives two lines.
flows_seen() {
    sleep 1.2   # tcpdump -U in the guests and the aws flow log (rewritten every second)
    { uml_flow_dirs "$UML1" | sed "s/^/$APP1_IP /"
      uml_flow_dirs "$UML2" | sed "s/^/$APP2_IP /"
      aws_flows | sed "s/^/$APP3_IP /"; } |
        awk -v c="$CLIENT_IP." -v lo="$1" -v hi="$2" '{
            n = split($2, e, "|")
            for (i = 1; i <= n; i++) if (index(e[i], c) == 1) {
                m = split(e[i], x, "."); p = x[m] + 0
                if (p >= lo && p <= hi) print $1, p
            }
        }' | sort -u
}

# --- gwlb's counters and health, as the scripts read them ------------------------------------

# gw_cli ARGS...: the gwlb CLI against this topology's gateway (control API on a Unix socket).
gw_cli() { "$GWLB_BIN" "$@" --api "unix:$WORK/api.sock"; }

# gw_stats: gwlb's counters; the ONE place the scripts read them. While gwlb runs: from its
# control API (`gwlb stats --json`, `gwlb targets --json`), current to ~100 ms; after it
# stopped: its final report (stdout). Lines:
#   worker N: rx R tx T encapsulated E decapsulated D ... new_flows F ... dropped X
#     drop REASON: N
#   appliance IP: packets P bytes B flows F
gw_stats() {
    if [ ! -S "$WORK/api.sock" ] && [ -s "$WORK/gwlb.out" ]; then
        cat "$WORK/gwlb.out"
        return 0
    fi
    local stats targets
    stats=$(gw_cli stats --json 2>/dev/null) && targets=$(gw_cli targets --json 2>/dev/null) || return 1
    "$PY" - "$stats" "$targets" <<'PYEOF'
import json, sys
stats, groups = json.loads(sys.argv[1]), json.loads(sys.argv[2])
keys = ["rx", "tx", "encapsulated", "decapsulated", "fail_open", "to_host", "new_flows",
        "rebalanced_flows", "tcp_resets", "handed_off", "fragmented", "dropped"]
for w in stats["workers"]:
    print(f"worker {w['worker']}: " + " ".join(f"{k} {w[k]}" for k in keys))
    for r, n in sorted(w["drops"].items()):
        print(f"  drop {r}: {n}")
for g in (groups if isinstance(groups, list) else [groups]):
    for t in g["targets"]:
        print(f"appliance {t['address']}: packets {t['packets']} bytes {t['bytes']} flows {t['flows']}")
PYEOF
}

# gw_wait_report: returns once the counters include everything before this call (workers
# publish every 100 ms; the API reads them live).
gw_wait_report() { sleep 0.3; }

# gw_count FIELD (a worker counter, summed over workers) | gw_drop REASON | gw_app IP FIELD
gw_count() { gw_stats | awk -v f="$1" '/^worker/ {for (i = 1; i < NF; i++) if ($i == f) s += $(i + 1)} END {print s + 0}'; }
gw_drop() { gw_stats | awk -v r="$1:" '$1 == "drop" && $2 == r {s += $3} END {print s + 0}'; }
gw_app() { gw_stats | awk -v a="$1:" -v f="$2" '$1 == "appliance" && $2 == a {for (i = 3; i < NF; i++) if ($i == f) print $(i + 1)}'; }

# gw_health_lines: gwlb's health transitions, one per line: "EPOCH healthy|unhealthy IP REASON".
gw_health_lines() {
    sed 's/\x1b\[[0-9;]*m//g' "$WORK/gwlb.err" 2>/dev/null |
        awk '/gwlb::health: appliance (un)?healthy / {
            st = ($0 ~ /appliance unhealthy /) ? "unhealthy" : "healthy"
            ip = ""; r = $0
            if (match($0, /addr=[0-9.]+/)) ip = substr($0, RSTART + 5, RLENGTH - 5)
            sub(/.*reason=/, "", r); sub(/ latency_ms=.*/, "", r)
            print $1, st, ip, r
        }' | while read -r ts st ip r; do
            echo "$(date -d "$ts" +%s.%N) $st $ip $r"
        done
}

# gw_wait_health IP STATE SINCE TIMEOUT_S: waits for gwlb to log IP turning STATE (healthy |
# unhealthy) at or after epoch SINCE; prints that line of gw_health_lines; 1 on timeout.
gw_wait_health() {
    local end line
    end=$(awk -v a="$(date +%s.%N)" -v t="$4" 'BEGIN {printf "%.3f", a + t}')
    while :; do
        line=$(gw_health_lines | awk -v ip="$1" -v st="$2" -v t="$3" '$3 == ip && $2 == st && $1 >= t {print; exit}')
        [ -n "$line" ] && { echo "$line"; return 0; }
        awk -v a="$(date +%s.%N)" -v e="$end" 'BEGIN {exit !(a > e)}' && return 1
        sleep 0.05
    done
}

# hc_detect_bound_ms: the longest gwlb may take to mark a dead appliance unhealthy:
# HC_THRESHOLD failed probes, each started at most interval x (1 + jitter) after the previous
# one, the last failing by its timeout; plus 400 ms of margin for a loaded 2-core machine
# (control loop tick 50 ms, scheduling of the UML-heavy test box).
hc_detect_bound_ms() {
    echo $(( HC_THRESHOLD * HC_INTERVAL_MS * (100 + HC_JITTER) / 100 + HC_TIMEOUT_MS + 400 ))
}

# wire_capture NS FILE: tcpdump of the Geneve packets arriving on NS's eth0 (the appliance's
# link, seen from the host side; works while the appliance itself is dead). Pid in
# $WORK/wire-NS.pid.
wire_capture() {
    ip netns exec "$1" tcpdump -i eth0 -n -tt -U -l 'udp dst port 6081' >"$2" 2>/dev/null &
    echo $! > "$WORK/wire-$1.pid"
    sleep 0.5
}
wire_capture_stop() {
    local f=$WORK/wire-$1.pid
    [ -f "$f" ] && kill -INT "$(cat "$f")" 2>/dev/null
    rm -f "$f"
    sleep 0.2
}

# elapsed_ms FROM TO (epoch seconds with fraction)
elapsed_ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%d", (b - a) * 1000}'; }

# gw_targets: one line per appliance as gwlb sees it: "IP STATE PACKETS FLOWS", from
# `gwlb targets --json` while it runs (state: initial, healthy, unhealthy or draining); after
# it stopped, from its final report and its logged health transitions (initial until the
# first).
gw_targets() {
    if [ ! -S "$WORK/api.sock" ]; then
        # gwlb has stopped: its final report, with the last health transition it logged.
        local h ip st
        h=$(gw_health_lines)
        for ip in "$APP1_IP" "$APP2_IP" "$APP3_IP"; do
            st=$(awk -v a="$ip" '$3 == a {s = $2} END {print s ? s : "initial"}' <<<"$h")
            echo "$ip $st $(gw_app "$ip" packets) $(gw_app "$ip" flows)"
        done
        return 0
    fi
    gw_cli targets --json | "$PY" -c '
import json, sys
groups = json.load(sys.stdin)
for g in (groups if isinstance(groups, list) else [groups]):
    for t in g["targets"]:
        print(t["address"], t["state"], t["packets"], t["flows"])'
}

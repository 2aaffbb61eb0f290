# shellcheck shell=bash
# Two gwlb nodes behind an ECMP router, in network namespaces: the topology shared by
# scripts/e2e-cluster.sh and scripts/demo-cluster.sh (source it, do not run it).
#
#   gwc-c  client 10.40.1.2 ─ rc 10.40.1.1 ┐
#   gwc-s  server 10.40.2.2 ─ rs 10.40.2.1 ┤  gwc-r: FRR (zebra, bgpd, bfdd; AS 65000),
#   gwc-a1 UML kernel-Geneve 10.30.0.11 ─┐ │  ECMP with L4 hashing, BFD 100 ms x 3
#   gwc-a2 aws_appliance     10.30.0.13 ─┴ br0 10.30.0.1
#                                          ├ rn1 10.41.1.254 ── gwc-n1: gwlb (one port, role
#                                          │                    "both", 10.41.1.1) + BIRD, AS 65001
#                                          └ rn2 10.41.2.254 ── gwc-n2: gwlb 10.41.2.1 + BIRD, AS 65002
#
# Each node announces the client and server networks as /25 halves (more specific than the
# router's connected /24s, so the router sends their traffic to the nodes) and the cluster
# address 10.42.0.1/32, the outer source of every encapsulation on both nodes. The router
# forwards what comes back from a node by its connected routes only (policy routing: `ip
# rule iif rnN lookup 200`), so a packet the nodes have inspected goes to its destination,
# not to a node again. The appliances sit behind the router (routed appliances: the nodes'
# `appliance_gateways`); they answer to the cluster address, which the router spreads over
# the live nodes by ECMP: the nodes never share state, and a node takes a return of a flow
# it never saw from that flow's Maglev choice only.
#
# Both nodes share CPU 1 for their worker (this machine has two); their workers sleep when
# idle. UML boots run on CPU 0.

CL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
GWLB_BIN=${GWLB_BIN:-$CL_ROOT/target/release/gwlb}
AWS_BIN=${AWS_BIN:-$CL_ROOT/target/release/examples/aws_appliance}
UML_SH=$CL_ROOT/scripts/appliance/uml-appliance.sh
PY=/usr/bin/python3
CW=${GWLB_CLUSTER_WORK:-/run/gwlb-cluster}   # configs, logs, pid files, FRR state

NS_R=gwc-r NS_C=gwc-c NS_S=gwc-s NS_A1=gwc-a1 NS_A2=gwc-a2 NS_N1=gwc-n1 NS_N2=gwc-n2
CL_NS=("$NS_R" "$NS_C" "$NS_S" "$NS_A1" "$NS_A2" "$NS_N1" "$NS_N2")
CL_UML=gwc-app1                # uml-appliance.sh name (state in /run/gwlb-uml/NAME)
C_IP=10.40.1.2 S_IP=10.40.2.2
A1_IP=10.30.0.11 A2_IP=10.30.0.13 A1_MAC=02:30:00:00:00:0b
CLUSTER_IP=10.42.0.1
SERVICE_NETS="10.40.1.0/25 10.40.1.128/25 10.40.2.0/25"   # what the router shows per node
CL_VNI=1 CL_HC_PORT=8080 CL_BLOCKED=23
CL_HC_INTERVAL_MS=500 CL_HC_THRESHOLD=2 CL_HC_TIMEOUT_MS=300
CL_MTU=1600                    # node and appliance links: 1500-byte user packets + 68 of Geneve

ctlog() { printf '[%5.1fs] %s\n' "$(awk -v a="${CL_T0:-0}" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$*" >&2; }

cl_ns_add() {
    ip netns add "$1"
    ip -n "$1" link set lo up
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}
cl_offloads_off() { ip netns exec "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true; }
# cl_veth NS_A IF_A NS_B IF_B MTU [MAC_A]
cl_veth() {
    ip link add "$2" netns "$1" ${6:+address "$6"} mtu "$5" type veth peer name "$4" netns "$3" mtu "$5"
    cl_offloads_off "$1" "$2"
    cl_offloads_off "$3" "$4"
    ip -n "$1" link set "$2" up
    ip -n "$3" link set "$4" up
}

# Everything of a previous or the current run.
cl_cleanup() {
    local f pids ns
    disown -a 2>/dev/null
    for f in "$CW"/*.pid "$CW"/frr/*.pid; do
        [ -e "$f" ] || continue
        pids=$(cat "$f" 2>/dev/null) && [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
    done
    if [ -f "/run/gwlb-uml/$CL_UML/uml.pid" ]; then
        kill -TERM "$(cat "/run/gwlb-uml/$CL_UML/uml.pid")" 2>/dev/null
        sleep 0.5
    fi
    [ -d "/run/gwlb-uml/$CL_UML" ] && "$UML_SH" stop --name "$CL_UML" >/dev/null 2>&1
    for ns in "${CL_NS[@]}"; do
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        [ -n "${pids// /}" ] && kill -KILL $pids 2>/dev/null
    done
    for ns in "${CL_NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$CW"
    rmdir /run/gwlb-uml 2>/dev/null
    return 0
}

cl_create() {
    local ns n
    mkdir -p "$CW"
    for ns in "${CL_NS[@]}"; do cl_ns_add "$ns"; done
    ip netns exec "$NS_R" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 \
        net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
        net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.all.ignore_routes_with_linkdown=1
    # client and server
    cl_veth "$NS_C" eth0 "$NS_R" rc 1500
    cl_veth "$NS_S" eth0 "$NS_R" rs 1500
    ip -n "$NS_C" addr add "$C_IP/24" dev eth0
    ip -n "$NS_C" route add default via 10.40.1.1
    ip -n "$NS_S" addr add "$S_IP/24" dev eth0
    ip -n "$NS_S" route add default via 10.40.2.1
    ip -n "$NS_R" addr add 10.40.1.1/24 dev rc
    ip -n "$NS_R" addr add 10.40.2.1/24 dev rs
    # appliances: a bridge in the router's namespace is their subnet
    ip -n "$NS_R" link add br0 type bridge stp_state 0 forward_delay 0
    ip -n "$NS_R" link set br0 mtu "$CL_MTU" up
    ip netns exec "$NS_R" sysctl -qw net.bridge.bridge-nf-call-iptables=0 2>/dev/null || true
    ip -n "$NS_R" addr add 10.30.0.1/24 dev br0
    cl_veth "$NS_A1" eth0 "$NS_R" ra1 "$CL_MTU" 02:30:00:01:00:0b
    cl_veth "$NS_A2" eth0 "$NS_R" ra2 "$CL_MTU"
    ip -n "$NS_R" link set ra1 master br0
    ip -n "$NS_R" link set ra2 master br0
    ip -n "$NS_A2" addr add "$A2_IP/24" dev eth0
    ip -n "$NS_A2" route add default via 10.30.0.1
    # nodes: gwlb's DPDK port owns the node's end (no address, no ARP from the kernel)
    for n in 1 2; do
        ns=gwc-n$n
        cl_veth "$ns" "n${n}u0" "$NS_R" "rn$n" "$CL_MTU"
        ip -n "$ns" link set "n${n}u0" promisc on arp off
        ip -n "$NS_R" addr add "10.41.$n.254/24" dev "rn$n"
        ip -n "$NS_R" rule add iif "rn$n" lookup 200 pref 100
    done
    # Table 200: what the nodes send goes where it is addressed, never back to a node.
    for r in "10.40.1.0/24 dev rc" "10.40.2.0/24 dev rs" "10.30.0.0/24 dev br0" \
             "10.41.1.0/24 dev rn1" "10.41.2.0/24 dev rn2"; do
        # shellcheck disable=SC2086
        ip -n "$NS_R" route add $r table 200
    done
}

# FRR on the router, started directly (no watchfrr; ../shared/reference/routing-lab.md).
cl_router_start() {
    local d=$CW/frr daemon t
    mkdir -p "$d"
    chown frr:frr "$d"
    cat > "$d/frr.conf" <<EOF
frr defaults traditional
no zebra nexthop kernel enable
bfd
 profile fast
  receive-interval 100
  transmit-interval 100
  detect-multiplier 3
 exit
exit
router bgp 65000
 bgp router-id 10.41.0.254
 no bgp default ipv4-unicast
 no bgp ebgp-requires-policy
 bgp log-neighbor-changes
 bgp bestpath as-path multipath-relax
 neighbor 10.41.1.1 remote-as 65001
 neighbor 10.41.1.1 timers connect 1
 neighbor 10.41.1.1 bfd profile fast
 neighbor 10.41.2.1 remote-as 65002
 neighbor 10.41.2.1 timers connect 1
 neighbor 10.41.2.1 bfd profile fast
 address-family ipv4 unicast
  neighbor 10.41.1.1 activate
  neighbor 10.41.2.1 activate
  maximum-paths 8
 exit-address-family
exit
EOF
    local c=(-d -A 127.0.0.1 -z "$d/zserv.api" --vty_socket "$d" -f /dev/null)
    ip netns exec "$NS_R" /usr/lib/frr/zebra "${c[@]}" -s 90000000 -i "$d/zebra.pid" --log "file:$d/zebra.log" || return 1
    for daemon in zebra bgpd bfdd; do
        case $daemon in
            bgpd) ip netns exec "$NS_R" /usr/lib/frr/bgpd "${c[@]}" -i "$d/bgpd.pid" --log "file:$d/bgpd.log" || return 1 ;;
            bfdd) ip netns exec "$NS_R" /usr/lib/frr/bfdd "${c[@]}" -i "$d/bfdd.pid" --bfdctl "$d/bfdd.sock" --log "file:$d/bfdd.log" || return 1 ;;
        esac
        for t in $(seq 200); do [ -S "$d/$daemon.vty" ] && break; sleep 0.05; done
        [ -S "$d/$daemon.vty" ] || { echo "FRR $daemon: no vty socket" >&2; return 1; }
    done
    timeout 10 vtysh --vty_socket "$d" --config_dir "$d" -b >/dev/null 2>&1 || { echo "vtysh -b failed" >&2; return 1; }
}
cl_vtysh() { timeout 5 vtysh --vty_socket "$CW/frr" -c "$*" 2>/dev/null; }

# The node config (N = 1 or 2): one-arm, BGP to the router, the cluster address.
cl_node_config() {
    local n=$1
    cat > "$CW/n$n.toml" <<EOF
# generated by scripts/lib/cluster.sh: node $n of 2
[dataplane]
worker_cpus = [1]
main_cpu = 0
hugepages = "off"
memory_mb = 256
eal_args = ["--no-pci", "--file-prefix=gwc$n"]
mbufs_per_worker = 8192
flow_table_capacity = 65536
stats_interval_s = 1

[[ports]]
name = "net0"
device = "net_af_packet$n,iface=n${n}u0"
role = "both"
address = "10.41.$n.1/24"
mac = "02:41:0$n:00:00:01"
mtu = ${CL_NODE_MTU:-$CL_MTU}
kernel_interface = "n${n}tap"
appliance_gateways = ["10.41.$n.254"]

[[routes]]
prefix = "0.0.0.0/0"
via = "10.41.$n.254"
port = "net0"

[[target_groups]]
name = "fw"
geneve_vni = $CL_VNI
maglev_table_size = 1021
on_unhealthy = "rebalance"
[target_groups.health_check]
protocol = "tcp"
port = $CL_HC_PORT
interval_ms = $CL_HC_INTERVAL_MS
timeout_ms = $CL_HC_TIMEOUT_MS
healthy_threshold = $CL_HC_THRESHOLD
unhealthy_threshold = $CL_HC_THRESHOLD
jitter_percent = 10
[[target_groups.targets]]
address = "$A1_IP"
[[target_groups.targets]]
address = "$A2_IP"

[control]
api_listen = "unix:$CW/n$n.api"
metrics_listen = "unix:$CW/n$n.metrics"
log_format = "human"

[bgp]
local_as = 6500$n
router_id = "10.41.$n.1"
prefixes = ["10.40.1.0/25", "10.40.1.128/25", "10.40.2.0/25", "10.40.2.128/25"]
cluster_addresses = ["$CLUSTER_IP"]
state_dir = "$CW/bird$n"
[[bgp.neighbors]]
address = "10.41.$n.254"
remote_as = 65000
EOF
}

# cl_node_start N: starts gwlb on node N; returns once its worker runs and its kernel
# interface has the route health checks use (to the appliances, through the router).
cl_node_start() {
    local n=$1 ns=gwc-n$1 i
    cl_node_config "$n"
    NO_COLOR=1 setsid ip netns exec "$ns" "$GWLB_BIN" run --config "$CW/n$n.toml" \
        >>"$CW/n$n.out" 2>>"$CW/n$n.err" &
    echo $! > "$CW/n$n.pid"
    # Started: the worker runs, and the kernel interface has the port's address (then the
    # kernel accepts the route through it).
    for i in $(seq 150); do
        if grep -q "worker started" "$CW/n$n.err" 2>/dev/null &&
            ip netns exec "$ns" ip route replace default via "10.41.$n.254" dev "n${n}tap" 2>/dev/null; then
            return 0
        fi
        kill -0 "$(cat "$CW/n$n.pid")" 2>/dev/null || { echo "node $n: gwlb exited" >&2; tail -n 20 "$CW/n$n.err" >&2; return 1; }
        sleep 0.1
    done
    echo "node $n: no worker, or no route through n${n}tap, after 15 s" >&2
    return 1
}
cl_node_kill() { kill -KILL "$(cat "$CW/n$1.pid")" 2>/dev/null; wait "$(cat "$CW/n$1.pid")" 2>/dev/null; rm -f "$CW/n$1.pid"; }
cl_node_stop() {
    local pid
    pid=$(cat "$CW/n$1.pid" 2>/dev/null) || return 0
    kill -INT "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rm -f "$CW/n$1.pid"
}
cl_gwlb() { local n=$1; shift; "$GWLB_BIN" "$@" --api "unix:$CW/n$n.api"; }

# The appliances: the UML Linux-kernel one (its Geneve device's fixed remote is the cluster
# address, reached through the router) and the AWS-style one.
cl_appliances_start() {
    taskset -c 0 "$UML_SH" start --netns "$NS_A1" --name "$CL_UML" --dev eth0 --ip "$A1_IP/24" \
        --gateway-ip "$CLUSTER_IP" --route-via 10.30.0.1 --vni "$CL_VNI" --block-tcp-port "$CL_BLOCKED" \
        --hc-port "$CL_HC_PORT" --mtu "$CL_MTU" --mac "$A1_MAC" --stats-interval 3600 >"$CW/uml.log" 2>&1 &
    local p=$!
    cl_aws_start || return 1
    wait $p || { echo "UML appliance failed:" >&2; tail -n 20 "$CW/uml.log" >&2; return 1; }
}
cl_aws_start() {
    ip netns exec "$NS_A2" "$AWS_BIN" --listen "$A2_IP" --block-tcp-port "$CL_BLOCKED" \
        --hc-port "$CL_HC_PORT" --flow-log "$CW/aws-flows.log" >>"$CW/aws.out" 2>>"$CW/aws.err" &
    echo $! > "$CW/aws.pid"
    disown $!   # killed on purpose by the health test: no job notice
    sleep 0.3
    kill -0 "$(cat "$CW/aws.pid")" 2>/dev/null || { echo "aws_appliance exited:" >&2; cat "$CW/aws.err" >&2; return 1; }
}

# cl_nexthops PREFIX: the router's next hops for PREFIX in its kernel table, one per line.
cl_nexthops() { ip -n "$NS_R" route show "$1" | grep -o 'via 10\.41\.[12]\.1' | awk '{print $2}' | sort; }
# cl_wait_nexthops PREFIX COUNT SECONDS: polls every 10 ms; prints the seconds it took.
cl_wait_nexthops() {
    local t0 now
    t0=$(date +%s.%N)
    while :; do
        [ "$(cl_nexthops "$1" | wc -l)" = "$2" ] && { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.3f\n", b-a}'; return 0; }
        now=$(date +%s.%N)
        awk -v a="$t0" -v b="$now" -v l="$3" 'BEGIN{exit !(b-a > l)}' && return 1
        sleep 0.01
    done
}

# Flow keys "A.B.C.D.PORT|A.B.C.D.PORT" (ends sorted) each appliance saw, one per line:
# the UML guest's tcpdump of its tunnel (gnv0) and the AWS-style appliance's flow log.
cl_uml_flows() {
    awk '$2 == "gnv0" && $3 == "In" && $4 == "IP" {
        s = $5; d = $7; sub(/:$/, "", d)
        if (split(s, x, ".") != 5 || split(d, y, ".") != 5) next
        print ((s < d) ? s "|" d : d "|" s)
    }' "/run/gwlb-uml/$CL_UML/guest/flows.log" 2>/dev/null | sort -u
}
cl_aws_flows() {
    [ -f "$CW/aws.pid" ] && kill -USR1 "$(cat "$CW/aws.pid")" 2>/dev/null && sleep 0.3
    awk '$1 == "tcp" || $1 == "udp" {
        s = $2; d = $3; sub(/:/, ".", s); sub(/:/, ".", d)
        print ((s < d) ? s "|" d : d "|" s)
    }' "$CW/aws-flows.log" 2>/dev/null | sort -u
}

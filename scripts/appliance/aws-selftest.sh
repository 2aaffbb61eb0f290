#!/usr/bin/env bash
# Self-test of the AWS-style reference appliance (geneve/examples/aws_appliance.rs).
#
# Two network namespaces joined by a veth pair:
#   gwa-lb  10.98.0.1/24  plays the load balancer (a Python script sends and captures Geneve)
#   gwa-app 10.98.0.2/24  runs the appliance
# Checks: the return contract (outer IPs swapped, UDP sport = the LB's sport, dport 6081,
# TTL 2, DF clear, valid IPv4 checksum, Geneve header and inner packet byte-for-byte, also
# with reordered options, O/C flags and IPv6 inner); a blocked TCP port gets no reply (both
# directions); packets without all three AWS options (or with a wrong length, a critical
# type, an unknown critical option, version 1, an Ethernet payload) get no reply; the health
# check answers HTTP 200; the flow log; the counters printed by --stats.
#
# Needs root (namespaces, raw sockets) and /usr/bin/python3. Prints PASS or FAIL; exit status 0
# on PASS. Environment: CARGO_TARGET_DIR (default /tmp/target-appliance), APPLIANCE_BIN (skip
# the build and use this binary), NS_PREFIX (default gwa).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PREFIX=${NS_PREFIX:-gwa}
NS_LB=$PREFIX-lb
NS_APP=$PREFIX-app
LB_IP=10.98.0.1
APP_IP=10.98.0.2
HC_PORT=8080
BLOCKED=23
WORK=$(mktemp -d /tmp/aws-selftest.XXXXXX)
APP_PID=

cleanup() {
    if [[ -n $APP_PID ]] && kill -0 "$APP_PID" 2>/dev/null; then
        kill "$APP_PID" 2>/dev/null || true
        wait "$APP_PID" 2>/dev/null || true
    fi
    ip netns del "$NS_LB" 2>/dev/null || true
    ip netns del "$NS_APP" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*"
    [[ -f $WORK/app.err ]] && sed 's/^/  appliance: /' "$WORK/app.err"
    exit 1
}

if [[ -z ${APPLIANCE_BIN:-} ]]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-appliance}
    (cd "$ROOT" && cargo build -q -p geneve --example aws_appliance) || fail "build"
    APPLIANCE_BIN=$CARGO_TARGET_DIR/debug/examples/aws_appliance
fi

# Leftovers of an interrupted run.
ip netns del "$NS_LB" 2>/dev/null || true
ip netns del "$NS_APP" 2>/dev/null || true

ip netns add "$NS_LB"
ip netns add "$NS_APP"
ip link add "$PREFIX-veth-lb" netns "$NS_LB" type veth peer name "$PREFIX-veth-app" netns "$NS_APP"
ip -n "$NS_LB" addr add $LB_IP/24 dev "$PREFIX-veth-lb"
ip -n "$NS_APP" addr add $APP_IP/24 dev "$PREFIX-veth-app"
for ns in "$NS_LB" "$NS_APP"; do
    ip -n "$ns" link set lo up
done
ip -n "$NS_LB" link set "$PREFIX-veth-lb" up
ip -n "$NS_APP" link set "$PREFIX-veth-app" up

ip netns exec "$NS_APP" "$APPLIANCE_BIN" --listen $APP_IP --block-tcp-port $BLOCKED \
    --flow-log "$WORK/flows.log" --hc-port $HC_PORT --stats \
    >"$WORK/app.out" 2>"$WORK/app.err" &
APP_PID=$!

# Wait for the health-check port (the appliance is up once it answers).
for _ in $(seq 50); do
    if ip netns exec "$NS_LB" /usr/bin/python3 -c "
import socket; socket.create_connection(('$APP_IP', $HC_PORT), timeout=0.2).close()" 2>/dev/null; then
        break
    fi
    kill -0 "$APP_PID" 2>/dev/null || fail "appliance exited at start"
    sleep 0.1
done

ip netns exec "$NS_LB" /usr/bin/python3 - "$APP_IP" "$LB_IP" "$HC_PORT" "$BLOCKED" <<'EOF' \
    || fail "packet checks"
import select, socket, struct, sys

APP, LB, HC_PORT, BLOCKED = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
GENEVE = 6081
errors = []

def check(cond, what):
    print(("  ok   " if cond else "  FAIL ") + what)
    if not cond:
        errors.append(what)

def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s > 0xffff:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def opt(cls, typ, data):
    return struct.pack("!HBB", cls, typ, len(data) // 4) + data

AWS_OPTS = (opt(0x0108, 1, bytes.fromhex("0badc0ffee000001"))
            + opt(0x0108, 2, bytes.fromhex("0000000000001234"))
            + opt(0x0108, 3, bytes.fromhex("5eedf00d")))

def geneve(opts, proto=0x0800, vni=0xabc, ver=0, flags=0):
    assert len(opts) % 4 == 0
    return struct.pack("!BBH", (ver << 6) | (len(opts) // 4), flags, proto) \
        + struct.pack("!I", vni << 8) + opts

def ipv4_tcp(src, dst, sport, dport, flags=0x02):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, flags, 65535, 0, 0)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + tcp

def ipv6_udp(src, dst, sport, dport):
    udp = struct.pack("!HHHH", sport, dport, 8 + 4, 0) + b"ping"
    return struct.pack("!IHBB16s16s", 6 << 28, len(udp), 17, 64,
                       socket.inet_pton(socket.AF_INET6, src),
                       socket.inet_pton(socket.AF_INET6, dst)) + udp

# Replies arrive at LB:6081. The UDP socket keeps the kernel from answering "port
# unreachable"; the raw socket shows the whole outer IPv4 header.
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind((LB, GENEVE))
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)

def send_and_capture(payload, sport, wait=1.0):
    """Sends payload from LB:sport to APP:6081; returns the raw reply packets seen."""
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tx.bind((LB, sport))
    tx.sendto(payload, (APP, GENEVE))
    tx.close()
    got = []
    while True:
        r, _, _ = select.select([raw, sink], [], [], wait)
        if not r:
            return got
        if sink in r:
            sink.recv(65535)
        if raw in r:
            pkt = raw.recv(65535)
            if socket.inet_ntoa(pkt[12:16]) == APP:
                got.append(pkt)
                wait = 0.3  # collect stragglers, then stop

def check_reply(name, sent, sport):
    got = send_and_capture(sent, sport)
    check(len(got) == 1, f"{name}: exactly one reply (got {len(got)})")
    if not got:
        return
    p = got[0]
    ihl = (p[0] & 0x0f) * 4
    check(ihl == 20, f"{name}: outer IPv4 without options")
    check(socket.inet_ntoa(p[12:16]) == APP and socket.inet_ntoa(p[16:20]) == LB,
          f"{name}: outer IPs swapped ({socket.inet_ntoa(p[12:16])} -> {socket.inet_ntoa(p[16:20])})")
    check(p[8] == 2, f"{name}: outer TTL 2 (got {p[8]})")
    check(struct.unpack("!H", p[6:8])[0] & 0x4000 == 0, f"{name}: DF clear")
    check(p[9] == 17, f"{name}: outer protocol UDP")
    check(csum(p[:20]) == 0, f"{name}: IPv4 header checksum valid")
    check(struct.unpack("!H", p[2:4])[0] == len(p), f"{name}: IPv4 total length")
    usport, udport, ulen, _ = struct.unpack("!HHHH", p[20:28])
    check(usport == sport, f"{name}: UDP sport = LB's sport {sport} (got {usport})")
    check(udport == GENEVE, f"{name}: UDP dport 6081 (got {udport})")
    check(ulen == 8 + len(sent), f"{name}: UDP length")
    check(p[28:] == sent, f"{name}: Geneve header and inner packet byte-for-byte")

C, S = "192.168.1.10", "172.16.0.20"

# 1. A TCP SYN and the server's SYN-ACK (same flow, other direction), AWS options in order.
check_reply("syn", geneve(AWS_OPTS) + ipv4_tcp(C, S, 40001, 80), 40000)
check_reply("syn-ack", geneve(AWS_OPTS) + ipv4_tcp(S, C, 80, 40001, 0x12), 40000)
# 2. Options in another order, O and C flags set, another VNI, another LB port: still echoed.
reordered = AWS_OPTS[24:] + AWS_OPTS[:24]
check_reply("reordered+flags", geneve(reordered, vni=0xfedcba, flags=0xc0)
            + ipv4_tcp(C, S, 40002, 443), 51234)
# 3. IPv6 inner (outer stays IPv4).
check_reply("ipv6", geneve(AWS_OPTS, proto=0x86DD)
            + ipv6_udp("2001:db8::1", "2001:db8::2", 5353, 53), 40000)

# 4. Dropped: blocked port (both directions), missing/mangled options, bad version/protocol.
def check_no_reply(name, sent, sport=40000):
    got = send_and_capture(sent, sport, wait=0.7)
    check(not got, f"{name}: no reply (got {len(got)})")

check_no_reply("blocked dport", geneve(AWS_OPTS) + ipv4_tcp(C, S, 40003, BLOCKED))
check_no_reply("blocked sport", geneve(AWS_OPTS) + ipv4_tcp(S, C, BLOCKED, 40003, 0x12))
check_no_reply("no options", geneve(b"") + ipv4_tcp(C, S, 40004, 80))
check_no_reply("two options", geneve(AWS_OPTS[:24]) + ipv4_tcp(C, S, 40004, 80))
bad_len = AWS_OPTS[:24] + opt(0x0108, 3, bytes(8))
check_no_reply("cookie length 8", geneve(bad_len) + ipv4_tcp(C, S, 40004, 80))
crit = AWS_OPTS[:24] + opt(0x0108, 0x83, bytes(4))
check_no_reply("critical type", geneve(crit) + ipv4_tcp(C, S, 40004, 80))
unknown_crit = AWS_OPTS + opt(0x0132, 0x81, bytes(4))
check_no_reply("unknown critical option", geneve(unknown_crit) + ipv4_tcp(C, S, 40004, 80))
check_no_reply("version 1", geneve(AWS_OPTS, ver=1) + ipv4_tcp(C, S, 40004, 80))
check_no_reply("ethernet payload", geneve(AWS_OPTS, proto=0x6558) + bytes(64))

# 5. Health check: HTTP 200 without reading the request.
hc = socket.create_connection((APP, HC_PORT), timeout=2)
hc.sendall(b"GET / HTTP/1.1\r\nHost: appliance\r\n\r\n")
resp = b""
while True:
    chunk = hc.recv(4096)
    if not chunk:
        break
    resp += chunk
hc.close()
check(resp.startswith(b"HTTP/1.1 200 OK\r\n") and resp.endswith(b"\r\n\r\nOK"),
      f"health check: HTTP 200 ({resp[:17]!r})")

sys.exit(1 if errors else 0)
EOF

# Flow log: ask for it now (SIGUSR1) and compare.
kill -USR1 "$APP_PID"
sleep 0.5
expected="tcp 192.168.1.10:40001 172.16.0.20:80 2 2 0 0x0badc0ffee000001
tcp 192.168.1.10:40002 172.16.0.20:443 1 1 0 0x0badc0ffee000001
tcp 192.168.1.10:40003 172.16.0.20:$BLOCKED 2 0 2 0x0badc0ffee000001
udp [2001:db8::1]:5353 [2001:db8::2]:53 1 1 0 0x0badc0ffee000001"
if [[ "$(cat "$WORK/flows.log")" != "$expected" ]]; then
    echo "flow log:"; cat "$WORK/flows.log"; echo "expected:"; echo "$expected"
    fail "flow log"
fi
echo "  ok   flow log"

# Counters on SIGTERM.
kill -TERM "$APP_PID"
wait "$APP_PID" || fail "appliance exit status $?"
APP_PID=
declare -A want=([rx_packets]=13 [tx_packets]=4 [blocked]=2 [drop_missing_options]=4
    [drop_bad_version]=1 [drop_bad_protocol]=1 [drop_unknown_critical]=1 [tx_errors]=0 [tx_too_big]=0)
for name in "${!want[@]}"; do
    got=$(awk -v n="$name" '$1 == n { print $2 }' "$WORK/app.out")
    [[ $got == "${want[$name]}" ]] || { cat "$WORK/app.out"; fail "counter $name = $got, want ${want[$name]}"; }
done
echo "  ok   counters"
echo PASS

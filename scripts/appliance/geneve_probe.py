#!/usr/bin/python3
"""Send AWS-GWLB-style Geneve packets to an appliance and capture what comes back.

Library + CLI, used by selftest.sh.  Run inside the "gateway" namespace:

  geneve_probe.py --iface gw0 --src 10.99.0.1 --dst 10.99.0.11 --vni 1 \
      --inner tcp --inner-src 10.1.0.2 --inner-dst 10.2.0.2 --dport 80 [--expect-none]

Prints one JSON object per probe (sent + returned packet properties).
Geneve header and options are built by hand (exact bytes, AWS layout:
class 0x0108 types 1/2/3, data lengths 8/8/4, non-critical, optlen 8 words).
"""
import argparse
import json
import socket
import struct
import sys
import time

from scapy.all import IP, IPv6, UDP, TCP, ICMP, ICMPv6EchoRequest, Raw, AsyncSniffer, send, conf  # noqa: E402

conf.verb = 0
GENEVE_PORT = 6081


def aws_options(endpoint_id=0x1122334455667788, attachment_id=0x99AABBCCDDEEFF00, cookie=0xC0FFEE01):
    def opt(typ, data):
        assert len(data) % 4 == 0
        return struct.pack("!HBB", 0x0108, typ, len(data) // 4) + data
    return (opt(1, struct.pack("!Q", endpoint_id)) + opt(2, struct.pack("!Q", attachment_id))
            + opt(3, struct.pack("!I", cookie)))


def geneve_header(vni, proto=0x0800, options=b""):
    assert len(options) % 4 == 0
    return struct.pack("!BBH", len(options) // 4, 0, proto) + struct.pack("!I", vni << 8) + options


def parse_geneve(payload):
    ver_optlen, flags, proto = struct.unpack("!BBH", payload[:4])
    vni = struct.unpack("!I", payload[4:8])[0] >> 8
    optlen = (ver_optlen & 0x3F) * 4
    opts = []
    off = 8
    while off < 8 + optlen:
        cls, typ, rlen = struct.unpack("!HBB", payload[off:off + 4])
        dlen = (rlen & 0x1F) * 4
        opts.append({"class": cls, "type": typ, "len": dlen,
                     "data": payload[off + 4:off + 4 + dlen].hex()})
        off += 4 + dlen
    return {"version": ver_optlen >> 6, "opt_len": optlen, "oam": bool(flags & 0x80),
            "critical": bool(flags & 0x40), "proto": proto, "vni": vni, "options": opts,
            "inner": payload[8 + optlen:]}


def build_inner(kind, src, dst, dport=80, sport=40000, ttl=64, ident=0x1234, seq=1, flags="S",
                payload_len=32):
    if kind == "icmp":
        return IP(src=src, dst=dst, ttl=ttl) / ICMP(id=ident, seq=seq) / Raw(b"gwlb-uml-selftest")
    if kind == "tcp":
        return IP(src=src, dst=dst, ttl=ttl) / TCP(sport=sport, dport=dport, flags=flags, seq=1000)
    if kind == "icmp6":
        return IPv6(src=src, dst=dst, hlim=ttl) / ICMPv6EchoRequest(id=ident, seq=seq) / Raw(b"gwlb-uml-selftest")
    if kind == "tcp6":
        return IPv6(src=src, dst=dst, hlim=ttl) / TCP(sport=sport, dport=dport, flags=flags, seq=1000)
    if kind == "udp":
        return IP(src=src, dst=dst, ttl=ttl) / UDP(sport=sport, dport=dport) / Raw(b"x" * payload_len)
    raise ValueError(kind)


class Prober:
    def __init__(self, iface, src, dst):
        self.iface, self.src, self.dst = iface, src, dst
        # a bound socket on 6081 keeps the gateway namespace from answering the
        # returned packets with ICMP port-unreachable
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((src, GENEVE_PORT))
        self.sock.setblocking(False)

    def probe(self, inner, vni, sport=12345, options=None, wait=3.0, proto=None):
        if options is None:
            options = aws_options()
        inner_bytes = bytes(inner)
        if proto is None:
            proto = 0x86DD if inner_bytes[0] >> 4 == 6 else 0x0800
        gen = geneve_header(vni, proto, options) + inner_bytes
        outer = IP(src=self.src, dst=self.dst, ttl=64) / UDP(sport=sport, dport=GENEVE_PORT) / Raw(gen)
        got = []  # AsyncSniffer.results is only filled in at stop(): collect via prn
        sn = AsyncSniffer(iface=self.iface, store=False, prn=got.append,
                          filter=f"udp dst port {GENEVE_PORT} and src host {self.dst}")
        sn.start()
        time.sleep(0.3)
        t0 = time.time()
        send(outer, verbose=0)
        # wait for a returned packet carrying the same inner flow
        deadline = t0 + wait
        match = None
        while time.time() < deadline and match is None:
            time.sleep(0.05)
            for p in list(got):
                if self._matches(p, inner):
                    match = p
                    break
        rtt = time.time() - t0
        sn.stop()
        res = {"sent": {"outer_sport": sport, "vni": vni, "opt_len": len(options),
                        "inner_ttl": _fields(inner)[3], "inner": inner.summary()},
               "returned": None, "all_returned": len(got)}
        if match is not None:
            ip = match[IP]
            udp = match[UDP]
            g = parse_geneve(bytes(udp.payload))
            inner_ret = _fields(_inner(g["inner"]))
            res["returned"] = {
                "rtt_ms": round(rtt * 1000, 1),
                "outer_src": ip.src, "outer_dst": ip.dst, "outer_ttl": ip.ttl,
                "outer_df": bool(ip.flags.DF), "outer_id": ip.id,
                "udp_sport": udp.sport, "udp_dport": udp.dport, "udp_csum": udp.chksum,
                "geneve_version": g["version"], "geneve_opt_len": g["opt_len"],
                "geneve_options": g["options"], "geneve_oam": g["oam"],
                "geneve_critical": g["critical"], "geneve_proto": g["proto"], "vni": g["vni"],
                "inner_src": inner_ret[0], "inner_dst": inner_ret[1], "inner_ttl": inner_ret[3],
                "inner_len": len(g["inner"]),
                "inner_unchanged_except_ttl_csum": _same_but_ttl(inner_bytes, g["inner"]),
                "hex": bytes(ip).hex(),
            }
        return res

    @staticmethod
    def _matches(p, inner):
        if UDP not in p:
            return False
        try:
            g = parse_geneve(bytes(p[UDP].payload))
            r = _inner(g["inner"])
        except Exception:
            return False
        if _fields(r)[:3] != _fields(inner)[:3]:
            return False
        if TCP in inner:
            return TCP in r and r[TCP].sport == inner[TCP].sport and r[TCP].dport == inner[TCP].dport
        if ICMPv6EchoRequest in inner:
            return ICMPv6EchoRequest in r and r[ICMPv6EchoRequest].id == inner[ICMPv6EchoRequest].id
        if ICMP in inner:
            return ICMP in r and r[ICMP].id == inner[ICMP].id and r[ICMP].seq == inner[ICMP].seq
        if UDP in inner:
            return UDP in r and r[UDP].sport == inner[UDP].sport and r[UDP].dport == inner[UDP].dport
        return True


def _inner(b):
    return IPv6(b) if b and b[0] >> 4 == 6 else IP(b)


def _fields(pkt):
    """(src, dst, l4 proto, ttl/hop limit) of an IPv4 or IPv6 scapy packet"""
    if IPv6 in pkt and (IP not in pkt or pkt.getlayer(IPv6) is pkt):
        ip6 = pkt[IPv6]
        return ip6.src, ip6.dst, ip6.nh, ip6.hlim
    ip = pkt[IP]
    return ip.src, ip.dst, ip.proto, ip.ttl


def _same_but_ttl(a, b):
    """inner packets equal except IPv4 TTL (byte 8) and header checksum (10-11)?"""
    if len(a) != len(b):
        return False
    if a[0] >> 4 == 6:
        return a[:7] + a[8:] == b[:7] + b[8:]
    mask = lambda x: x[:8] + b"\0" + x[9:10] + b"\0\0" + x[12:]  # noqa: E731
    return mask(a) == mask(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iface", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--vni", type=int, default=1)
    ap.add_argument("--sport", type=int, default=12345)
    ap.add_argument("--inner", choices=["icmp", "tcp", "udp", "icmp6", "tcp6"], default="icmp")
    ap.add_argument("--inner-src", default="10.1.0.2")
    ap.add_argument("--inner-dst", default="10.2.0.2")
    ap.add_argument("--dport", type=int, default=80)
    ap.add_argument("--inner-sport", type=int, default=40000)
    ap.add_argument("--tcp-flags", default="S")
    ap.add_argument("--udp-payload-len", type=int, default=32)
    ap.add_argument("--no-options", action="store_true")
    ap.add_argument("--wait", type=float, default=3.0)
    ap.add_argument("--expect-none", action="store_true")
    a = ap.parse_args()
    pr = Prober(a.iface, a.src, a.dst)
    inner = build_inner(a.inner, a.inner_src, a.inner_dst, dport=a.dport, sport=a.inner_sport,
                        flags=a.tcp_flags, payload_len=a.udp_payload_len)
    res = pr.probe(inner, a.vni, sport=a.sport, options=b"" if a.no_options else None, wait=a.wait)
    print(json.dumps(res))
    got = res["returned"] is not None
    return 0 if got != a.expect_none else 1


if __name__ == "__main__":
    sys.exit(main())

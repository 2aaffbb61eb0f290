#!/usr/bin/python3
"""Frames gwlb must drop (and count), sent as raw Ethernet frames with scapy.

  badtraffic.py KIND --iface IF --dst-mac MAC --src IP --dst IP [--count N] [options]

KIND (the drop reason gwlb should count, see gwlb/src/parse.rs DropReason::as_str):
  geneve          a well-formed AWS-style Geneve packet SRC -> DST:6081 carrying an inner UDP
                  packet --inner-src:--inner-sport -> --inner-dst:--inner-dport. From an
                  address that is no appliance: unknown_appliance. From an appliance, for a
                  flow gwlb never gave it: no_flow_for_return.
  geneve-truncated  Geneve header announcing 32 bytes of options, none present:
                  geneve_malformed.
  geneve-ethernet Geneve with protocol type 0x6558 (an Ethernet payload): geneve_bad_protocol.
  ipv4-bad-ihl    an IPv4 header with IHL 3 (12 bytes): bad_ipv4_ihl.
  udp-len LEN     (--ip-len LEN) a plain UDP/IPv4 packet of LEN bytes (IP total length)
                  SRC:--inner-sport -> DST:--inner-dport, DF set unless --no-df; used for
                  the oversize test (with DF gwlb answers an oversize one with ICMP).

The source MAC is the interface's. Prints one line: "sent N KIND frames of L bytes".
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "appliance"))
from geneve_probe import aws_options, geneve_header  # noqa: E402
from scapy.all import Ether, IP, UDP, Raw, conf, get_if_hwaddr, sendp  # noqa: E402

conf.verb = 0


def inner_udp(a):
    return bytes(IP(src=a.inner_src, dst=a.inner_dst, ttl=64) /
                 UDP(sport=a.inner_sport, dport=a.inner_dport) / Raw(b"not your flow"))


def build(a):
    outer = IP(src=a.src, dst=a.dst, ttl=64)
    if a.kind == "geneve":
        return outer / UDP(sport=33333, dport=6081) / Raw(geneve_header(a.vni, 0x0800, aws_options()) + inner_udp(a))
    if a.kind == "geneve-truncated":
        hdr = bytes([8, 0, 0x08, 0x00]) + (a.vni << 8).to_bytes(4, "big")   # opt_len 8 words
        return outer / UDP(sport=33333, dport=6081) / Raw(hdr)
    if a.kind == "geneve-ethernet":
        return outer / UDP(sport=33333, dport=6081) / Raw(geneve_header(a.vni, 0x6558, aws_options()) + bytes(64))
    if a.kind == "ipv4-bad-ihl":
        return IP(src=a.src, dst=a.dst, ihl=3) / Raw(bytes(40))
    if a.kind == "udp-len":
        if a.ip_len < 28 + 1:
            raise SystemExit("--ip-len must be at least 29")
        return (IP(src=a.src, dst=a.dst, ttl=64, flags=0 if a.no_df else "DF") /
                UDP(sport=a.inner_sport, dport=a.inner_dport) / Raw(b"x" * (a.ip_len - 28)))
    raise SystemExit(f"unknown kind {a.kind}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["geneve", "geneve-truncated", "geneve-ethernet", "ipv4-bad-ihl", "udp-len"])
    ap.add_argument("--iface", required=True)
    ap.add_argument("--dst-mac", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--no-df", action="store_true")
    ap.add_argument("--vni", type=int, default=1)
    ap.add_argument("--inner-src", default="10.10.1.2")
    ap.add_argument("--inner-dst", default="10.10.2.2")
    ap.add_argument("--inner-sport", type=int, default=61000)
    ap.add_argument("--inner-dport", type=int, default=9)
    ap.add_argument("--ip-len", type=int, default=0)
    a = ap.parse_args()
    pkt = build(a)
    frame = Ether(src=get_if_hwaddr(a.iface), dst=a.dst_mac) / pkt
    if a.kind == "ipv4-bad-ihl":
        raw = bytearray(bytes(frame))
        raw[14] = 0x43          # scapy recomputes IHL from the options; force 3
        frame = Raw(bytes(raw))
    sendp(frame, iface=a.iface, count=a.count, verbose=0)
    print(f"sent {a.count} {a.kind} frames of {len(bytes(frame))} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

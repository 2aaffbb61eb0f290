#!/usr/bin/env python3
"""A user-space 802.1Q switch: access ports (untagged, one VLAN each) and one trunk port.

    vlansw.py --trunk IFACE --access IFACE:VID [--access IFACE:VID]...

Frames from an access port leave the trunk tagged with the port's VLAN (C-tag, 0x8100; the
frame's priority bits 0). Tagged frames from the trunk go to the access port of their VLAN
that learned the destination MAC, or to every access port of that VLAN (broadcast, unknown
unicast); untagged or foreign-VLAN trunk frames are dropped. No local switching: in the
tenant tests every packet crosses the router on the trunk.

Why: the test machines' kernel has no VLAN devices (8021q), no tc vlan action and no
VLAN-filtering bridges, so the hosts of scripts/e2e-tenants.sh, real TCP/UDP stacks on plain
veths, reach gwlb's trunk port through this switch instead, and gwlb gets real tagged frames.

The kernel moves the tag of a received frame into the skb (veth RX untags), so AF_PACKET
reads it from PACKET_AUXDATA, not from the frame; a frame still tagged inline is handled too.
Frames this process sends are seen again by its own sockets as PACKET_OUTGOING and skipped.
Counters per port go to stderr on SIGTERM/SIGINT.
"""
import argparse
import select
import signal
import socket
import struct
import sys

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
AUX = struct.Struct("IIIHHHH")  # struct tpacket_auxdata


def open_port(iface):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((iface, 0))
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trunk", required=True)
    ap.add_argument("--access", action="append", required=True, metavar="IFACE:VID")
    a = ap.parse_args()

    trunk = open_port(a.trunk)
    access = {}  # socket -> (iface, vid)
    for spec in a.access:
        iface, vid = spec.rsplit(":", 1)
        access[open_port(iface)] = (iface, int(vid))
    by_vid = {}
    for s, (_, vid) in access.items():
        by_vid.setdefault(vid, []).append(s)
    fdb = {}  # (vid, mac) -> access socket
    counts = {a.trunk: [0, 0]}
    counts.update({i: [0, 0] for i, _ in access.values()})  # iface -> [in, out]

    def stop(*_):
        for iface, (n_in, n_out) in counts.items():
            print(f"vlansw {iface}: in {n_in} out {n_out}", file=sys.stderr)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    socks = [trunk, *access]
    while True:
        for s in select.select(socks, [], [])[0]:
            frame, anc, _, addr = s.recvmsg(65536, socket.CMSG_SPACE(AUX.size))
            if addr[2] == PACKET_OUTGOING or len(frame) < 14:
                continue
            if s is trunk:
                counts[a.trunk][0] += 1
                vid = None
                for level, kind, data in anc:
                    if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= AUX.size:
                        status, _, _, _, _, tci, _ = AUX.unpack_from(data)
                        if status & TP_STATUS_VLAN_VALID:
                            vid = tci & 0x0FFF
                if vid is None and frame[12:14] == b"\x81\x00" and len(frame) >= 18:
                    vid = struct.unpack("!H", frame[14:16])[0] & 0x0FFF
                    frame = frame[:12] + frame[16:]
                if vid is None:
                    continue
                dst = frame[:6]
                out = fdb.get((vid, dst))
                for o in [out] if out is not None else by_vid.get(vid, []):
                    o.send(frame)
                    counts[access[o][0]][1] += 1
            else:
                iface, vid = access[s]
                counts[iface][0] += 1
                fdb[(vid, frame[6:12])] = s
                trunk.send(frame[:12] + struct.pack("!HH", 0x8100, vid) + frame[12:])
                counts[a.trunk][1] += 1


if __name__ == "__main__":
    main()

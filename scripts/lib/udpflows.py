#!/usr/bin/python3
"""UDP flows for the demo and e2e topologies: many short flows, or long-lived streams.

  udpflows.py echo ADDR PORT
      UDP echo server: every datagram goes back to its sender unchanged.
  udpflows.py burst --src IP --dst IP --port P --sports LO-HI [--timeout S] [--gap-ms MS]
      One new flow per source port in LO-HI (a datagram to DST:P, answer awaited; up to 3
      tries, the same flow each time). Prints "answered N of M" and, if any, the ports left
      without an answer. Exit status 0 only if every flow was answered.
  udpflows.py stream --src IP --dst IP --port P --sports LO-HI --log FILE [--interval S]
      Long-lived flows: every INTERVAL one datagram per source port, until SIGINT/SIGTERM.
      Writes "EPOCH_SECONDS SPORT" to FILE for every answer received (line-buffered).

Flows are told apart by their client source port: each port is one 5-tuple, so gwlb hashes
each to an appliance on its own.
"""
import argparse
import select
import signal
import socket
import sys
import time


def port_range(s):
    lo, _, hi = s.partition("-")
    lo, hi = int(lo), int(hi or lo)
    if not (1 <= lo <= hi <= 65535):
        raise argparse.ArgumentTypeError(f"bad port range {s!r} (want LO-HI within 1-65535)")
    return range(lo, hi + 1)


def bound_sockets(src, sports):
    socks = {}
    for p in sports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((src, p))
        s.setblocking(False)
        socks[s.fileno()] = (p, s)
    return socks


def cmd_echo(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.addr, a.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)


def drain(poller, socks, answered, timeout_s, on_answer=None):
    """Reads answers until timeout_s passes with nothing left to read."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        for fd, _ in poller.poll(left * 1000):
            p, s = socks[fd]
            try:
                while True:
                    s.recv(2048)
                    answered.add(p)
                    if on_answer:
                        on_answer(p)
            except BlockingIOError:
                pass


def cmd_burst(a):
    socks = bound_sockets(a.src, a.sports)
    poller = select.poll()
    for fd in socks:
        poller.register(fd, select.POLLIN)
    answered = set()
    for _ in range(3):
        for p, s in socks.values():
            if p not in answered:
                s.sendto(f"flow {p}".encode(), (a.dst, a.port))
                drain(poller, socks, answered, a.gap_ms / 1000)
        drain(poller, socks, answered, a.timeout)
        if len(answered) == len(socks):
            break
    missing = sorted(set(a.sports) - answered)
    print(f"answered {len(answered)} of {len(socks)}")
    if missing:
        print("no answer from ports: " + " ".join(map(str, missing)))
    return 0 if not missing else 1


def cmd_stream(a):
    socks = bound_sockets(a.src, a.sports)
    poller = select.poll()
    for fd in socks:
        poller.register(fd, select.POLLIN)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    seq = 0
    with open(a.log, "a", buffering=1) as log:
        def logged(p):
            log.write(f"{time.time():.6f} {p}\n")
        while not stop:
            seq += 1
            for p, s in socks.values():
                try:
                    s.sendto(f"seq {seq}".encode(), (a.dst, a.port))
                except OSError:
                    pass  # e.g. ENOBUFS; the next round tries again
            drain(poller, socks, set(), a.interval, logged)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("echo")
    e.add_argument("addr")
    e.add_argument("port", type=int)
    for name in ("burst", "stream"):
        p = sub.add_parser(name)
        p.add_argument("--src", required=True)
        p.add_argument("--dst", required=True)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--sports", type=port_range, required=True)
    b = sub.choices["burst"]
    b.add_argument("--timeout", type=float, default=1.5, help="seconds to wait for late answers")
    b.add_argument("--gap-ms", type=float, default=2.0, help="pause between new flows")
    s = sub.choices["stream"]
    s.add_argument("--log", required=True)
    s.add_argument("--interval", type=float, default=0.05)
    a = ap.parse_args()
    return {"echo": cmd_echo, "burst": cmd_burst, "stream": cmd_stream}[a.cmd](a) or 0


if __name__ == "__main__":
    sys.exit(main())

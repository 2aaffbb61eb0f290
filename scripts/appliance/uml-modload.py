#!/usr/bin/env python3
"""Minimal `modprobe -d ROOT MODULE...` replacement (used inside the UML guest
when kmod is not installed on the host).  Resolves dependencies from
ROOT/lib/modules/<uname -r>/modules.dep and loads with finit_module(2)."""
import ctypes
import errno
import os
import sys

SYS_finit_module = 313  # x86_64


def main():
    if len(sys.argv) < 3:
        print("usage: uml-modload.py ROOT MODULE...", file=sys.stderr)
        return 2
    root, mods = sys.argv[1], sys.argv[2:]
    base = os.path.join(root, "lib/modules", os.uname().release)
    deps = {}
    with open(os.path.join(base, "modules.dep")) as f:
        for line in f:
            path, _, rest = line.partition(":")
            name = os.path.basename(path).split(".ko")[0].replace("-", "_")
            deps[name] = (path, rest.split())
    libc = ctypes.CDLL(None, use_errno=True)
    loaded = set()
    rc = 0

    def load(path):
        if path in loaded:
            return True
        loaded.add(path)
        fd = os.open(os.path.join(base, path), os.O_RDONLY)
        try:
            r = libc.syscall(SYS_finit_module, fd, b"", 0)
        finally:
            os.close(fd)
        if r != 0 and ctypes.get_errno() != errno.EEXIST:
            print(f"uml-modload: {path}: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
            return False
        return True

    for m in mods:
        key = m.replace("-", "_")
        if key not in deps:
            if os.path.isdir(f"/sys/module/{key}"):
                continue  # built in
            print(f"uml-modload: module {m} not found", file=sys.stderr)
            rc = 1
            continue
        path, dlist = deps[key]
        for d in reversed(dlist):  # modules.dep lists deepest dependency last
            if not load(d):
                rc = 1
        if not load(path):
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())

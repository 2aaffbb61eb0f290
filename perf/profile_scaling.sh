#!/usr/bin/env bash
# CPU time per packet of each row of the dataplane scaling table, from a `perf record -e
# cpu-clock` of it (works without a PMU, e.g. in a VM): `perf/profile_scaling.sh BINARY NAME`
# (root, hugepages; writes NAME.data and NAME.out in $OUT_DIR, default /tmp). Busy = samples of
# the worker threads outside `worker::run`'s own code (its idle polling once a worker's share of
# the round is done), over 3 rounds of 2^19 packets per row; the top symbols follow. Rows: 1
# worker, then 2 workers steered and spread (the default --workers on a 2-CPU machine).
set -euo pipefail
bin=$1
name=$2
d=${OUT_DIR:-/tmp}
hz=2999
perf record -q -e cpu-clock -F "$hz" -o "$d/$name.data" -- "$bin" --only none --no-latency \
    --no-idle --no-testpmd --reps 3 --secs 0.3 >"$d/$name.out" 2>&1
perf script -i "$d/$name.data" -F tid,time,ip,sym 2>/dev/null |
    awk '{print $1, $2 + 0, ($4 == "" ? "?" : $4)}' >"$d/$name.samples"
python3 - "$d/$name.samples" "$name" "$hz" <<'PY'
import collections
import sys

path, name, hz = sys.argv[1], sys.argv[2], int(sys.argv[3])
first, syms = {}, collections.defaultdict(collections.Counter)
for line in open(path):
    tid, t, sym = line.split()[:3]
    first.setdefault(tid, float(t))
    syms[tid][sym] += 1
main = max(syms, key=lambda t: sum(syms[t].values()))  # feeder, prefill: the busiest thread
workers = [t for t in sorted(first, key=first.get)
           if t != main and any(k.startswith("gwlb::pipeline") for k in syms[t])]
one = [t for t in workers if syms[t]["gwlb::pipeline::owner_hash"] == 0]
two = [t for t in workers if syms[t]["gwlb::pipeline::owner_hash"] > 0]
packets = 3 * (1 << 19)
for row, tids in [("1 worker", one), ("2 steered", two[:6]), ("2 spread", two[6:])]:
    c = collections.Counter()
    for t in tids:
        c.update(syms[t])
    idle = c.pop("gwlb::dataplane::worker::run", 0)
    busy = sum(c.values())
    ns = 1e9 / packets / hz
    top = ", ".join(f"{k.split('::')[-1]} {v} ({v * ns:.0f} ns)" for k, v in c.most_common(6))
    print(f"{name} {row}: {len(tids)} threads, busy {busy} samples = {busy * ns:.0f} ns CPU "
          f"per packet, idle {idle}; {top}")
PY

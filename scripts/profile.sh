#!/usr/bin/env bash
# Profiles a live server under a bot run and says where its time goes: each thread's share of
# the samples, the network threads' samples by the system call they are in (or user space),
# and the tick thread's samples by engine phase. A measuring aid for docs/PERFORMANCE.md, not
# a test. From the project root, after `cargo build --release --workspace`:
#
#   scripts/profile.sh N MODE [SERVER ARGS...]
#
# `perf record -g` samples the server at 2 kHz for 8 s, from 8 s into a 20 s run of N bots
# (50 verifying). Kernel call chains come out whole; the server's own need frame pointers, so
# for the phase table point TICKWIRE_SERVER at a build made with them:
#
#   RUSTFLAGS="-C force-frame-pointers=yes" CARGO_TARGET_DIR=/tmp/fp-target \
#     cargo build --release --workspace
#   TICKWIRE_SERVER=/tmp/fp-target/release/tickwire-server scripts/profile.sh 500 aoi
#
# TICKWIRE_BOTS points at other bots; PERF_OUT keeps the recording (default: a temporary file).
set -euo pipefail
OUT_ARG=${PERF_OUT:-}
# shellcheck source=scripts/run-live.sh
. "$(dirname "$0")/run-live.sh"
OUT=${OUT_ARG:-$TMP/perf.data}
sleep 8
perf record -g -F 2000 -o "$OUT" -p "$SPID" -- sleep 8 >/dev/null 2>&1
wait $BPID || true
perf script -i "$OUT" -F comm,ip,sym 2>/dev/null >"$TMP/stacks.txt"
python3 - "$TMP/stacks.txt" <<'PY'
import collections, sys
samples, cur = [], None
for line in open(sys.argv[1]):
    if not line.strip():
        if cur:
            samples.append(cur)
        cur = None
        continue
    if cur is None:
        cur = (line.split()[0], [])
        continue
    parts = line.split(None, 1)
    cur[1].append(parts[1].strip().split(" (")[0] if len(parts) > 1 else "")
if cur:
    samples.append(cur)
total = max(len(samples), 1)
print(f"{total} samples")
by_thread = collections.Counter(comm for comm, _ in samples)
for comm, n in by_thread.most_common():
    print(f"  {comm:20s} {100 * n / total:5.1f} % of the samples")
net = [st for comm, st in samples if comm == "tickwire-net"]
calls = collections.Counter()
for st in net:
    root = next((f for f in reversed(st) if f.startswith("__x64_sys_")), None)
    calls[root[len("__x64_sys_"):] if root else "user space (and interrupts)"] += 1
print("network threads, by system call:")
for call, n in calls.most_common(8):
    print(f"  {call:28s} {100 * n / max(len(net), 1):5.1f} %")
sends = [st for st in net if "__x64_sys_sendto" in st]
rx = sum(1 for st in sends if "net_rx_action" in st)
print(f"  of sendto, the receiving socket's side (net_rx_action: on loopback the sender runs it)"
      f" {100 * rx / max(len(sends), 1):5.1f} %")
tick = [st for comm, st in samples if comm.startswith(("tickwire-tick", "tickwire-views"))]
phases = ["ingest_client_events", "systems::replicate", "deliver_events", "systems::hand_off",
          "gather", "write_changes", "try_recv", "send_in", "malloc", "clone3"]
print("tick and view threads, inclusive (needs frame pointers):")
for p in phases:
    n = sum(1 for st in tick if any(p in f for f in st))
    print(f"  {p:28s} {100 * n / max(len(tick), 1):5.1f} %")
PY

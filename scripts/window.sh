#!/usr/bin/env bash
# Measures a server over a ten-second window inside a bot run: the CPU and context switches of
# each of its threads, its own count of inputs received and late and the wall time of each tick
# phase and how early the inputs arrived for their tick (from /metrics), next to the bots' report. A measuring aid for docs/PERFORMANCE.md, not a test. From the project root,
# after `cargo build --release --workspace`:
#
#   scripts/window.sh N MODE [SERVER ARGS...]
#
# TICKWIRE_SERVER and TICKWIRE_BOTS point it at other binaries (a baseline build, or a wrapper
# that sets flags or environment). The server's admin port is its default, 127.0.0.1:7778, so
# run one at a time. The bots run 20 s with 50 verifying; the window is 8 s to 18 s into it.
# It also prints the server's peak resident memory (VmHWM) once the bots are done.
set -euo pipefail
# shellcheck source=scripts/run-live.sh
. "$(dirname "$0")/run-live.sh"
threads() {
  for t in /proc/$SPID/task/*; do
    echo "$(basename "$t") $(tr ' ' _ <"$t/comm") $(awk '{print $14+$15}' "$t/stat")" \
      "$(awk '/^voluntary/{v=$2} /^nonvoluntary/{n=$2} END{print v, n}' "$t/status")"
  done 2>/dev/null || true
}
inputs() {
  curl -s http://127.0.0.1:7778/metrics |
    grep -E '^tickwire_inputs_(received|late)_total|^tickwire_tick_phase_duration_seconds_(sum|count)|^tickwire_input_lead_seconds_(bucket|sum|count)' |
    sed -E 's/\{phase="([a-z]+)"\}/_\1/; s/\{le="([^"]+)"\}/_le_\1/'
}
sleep 8
inputs >"$TMP/m1"; threads >"$TMP/t1"; t0=$(date +%s.%N)
sleep 10
threads >"$TMP/t2"; inputs >"$TMP/m2"; t1=$(date +%s.%N)
wait $BPID || true
# The server's peak resident memory, with every bot still connected until the end.
awk '/^VmHWM/{print $2}' "/proc/$SPID/status" >"$TMP/hwm"
python3 - "$TMP" "$t0" "$t1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
tmp, t0, t1, hz = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
wall, ticks = t1 - t0, (t1 - t0) * 30
def rows(f):
    return {l.split()[0]: l.split() for l in open(f"{tmp}/{f}") if len(l.split()) == 5}
a, b = rows("t1"), rows("t2")
total = [0.0, 0.0, 0.0]
for k, v in b.items():
    u = a.get(k, [k, v[1], "0", "0", "0"])
    cpu = (int(v[2]) - int(u[2])) / hz / wall * 100
    vol, inv = (int(v[3]) - int(u[3])) / ticks, (int(v[4]) - int(u[4])) / ticks
    total = [total[0] + cpu, total[1] + vol, total[2] + inv]
    if cpu > 0.05 or vol > 0.1:
        print(f"{v[1]:24s} cpu {cpu:5.1f} %  switches a tick: {vol:5.1f} voluntary, {inv:4.1f} not")
print(f"{'threads in the window':24s} cpu {total[0]:5.1f} %  switches a tick: {total[1]:5.1f} voluntary, {total[2]:4.1f} not")
m1 = dict(l.split() for l in open(f"{tmp}/m1"))
m2 = dict(l.split() for l in open(f"{tmp}/m2"))
got = float(m2["tickwire_inputs_received_total"]) - float(m1["tickwire_inputs_received_total"])
late = float(m2["tickwire_inputs_late_total"]) - float(m1["tickwire_inputs_late_total"])
print(f"server, in the window: {late:.0f} late of {got:.0f} inputs ({100 * late / max(got, 1):.2f} %)")
phases = ["ingest", "simulate", "capture", "replicate", "handoff"]
def per_tick(p):
    k = f"tickwire_tick_phase_duration_seconds_{{}}_{p}"
    n = float(m2[k.format("count")]) - float(m1[k.format("count")])
    return 1000 * (float(m2[k.format("sum")]) - float(m1[k.format("sum")])) / max(n, 1)
print("server, tick phases in the window (wall ms a tick): "
      + ", ".join(f"{p} {per_tick(p):.2f}" for p in phases))
# How early the inputs arrived for their tick: the window's share of each bucket, and the
# bucket each quantile falls in (an upper bound).
les = sorted((float(k.rsplit("_le_", 1)[1]), k) for k in m2
             if k.startswith("tickwire_input_lead_seconds_bucket_le_"))
cum = [(le, float(m2[k]) - float(m1.get(k, 0))) for le, k in les]
n = cum[-1][1] if cum else 0
def bound(q):
    return next((le for le, c in cum if c >= q * n), float("inf"))
if n:
    mean = (float(m2["tickwire_input_lead_seconds_sum"]) - float(m1["tickwire_input_lead_seconds_sum"])) / n
    print(f"server, input lead in the window: mean {1000 * mean:.1f} ms; p10 under {1000 * bound(0.1):g}, "
          f"p50 under {1000 * bound(0.5):g}, p90 under {1000 * bound(0.9):g} ms")
print(f"server, peak resident memory: {int(open(f'{tmp}/hwm').read()) / 1024:.1f} MiB")
r = json.load(open(f"{tmp}/r.json"))
q = r["rtt_ms"]
print(f"bots: {r['connected']} connected, slowest {r['min_snapshots_per_bot_per_s']} snapshots/s, "
      f"{r['desyncs']} desyncs; round trip p50 {q['p50']:.1f} p95 {q['p95']:.1f} p99 {q['p99']:.1f} ms; "
      f"{r['late_inputs']} late of {r['timed_inputs']} inputs; margin {r['input_margin_ms']:.1f} ms")
PY

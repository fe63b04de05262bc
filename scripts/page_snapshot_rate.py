#!/usr/bin/env python3
"""Opens the Tickwire page in a running headless Chromium and prints the snapshots the page
received in each of the next N seconds, its checksum mismatches, and the players it sees.

    chromium --headless --no-sandbox --remote-debugging-port=9333 about:blank &
    python3 scripts/page_snapshot_rate.py --devtools 127.0.0.1:9333 --page http://127.0.0.1:7777/ --seconds 10

Needs `pip install websocket-client`. A measuring aid for docs/PERFORMANCE.md, not a test: the
automated browser test is tests/browser.rs.
"""
import argparse, json, time, urllib.request

import websocket


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devtools", default="127.0.0.1:9333")
    ap.add_argument("--page", default="http://127.0.0.1:7777/")
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    pages = json.load(urllib.request.urlopen(f"http://{args.devtools}/json/list"))
    page = next(p for p in pages if p.get("type") == "page")
    ws = websocket.create_connection(page["webSocketDebuggerUrl"])
    ids = iter(range(1, 1 << 30))

    def call(method, **params):
        i = next(ids)
        ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            r = json.loads(ws.recv())
            if r.get("id") == i:
                return r

    def ev(expr):
        r = call("Runtime.evaluate", expression=expr, returnByValue=True)
        return r["result"]["result"].get("value")

    call("Page.navigate", url=args.page)
    deadline = time.time() + 20
    while ev("window.tickwire ? tickwire.status : null") != "connected":
        if time.time() > deadline:
            raise SystemExit("the page did not connect")
        time.sleep(0.1)
    time.sleep(1.5)  # One full one-second window of snapshots before the first reading.
    rates = []
    for _ in range(args.seconds):
        time.sleep(1)
        rates.append(ev("tickwire.snapshotsPerSecond"))
    print(json.dumps({
        "snapshots_per_second": rates,
        "mean": sum(rates) / len(rates),
        "min": min(rates),
        "mismatches": ev("tickwire.mismatches"),
        "players_seen": ev("tickwire.others.length") + 1,
    }))


if __name__ == "__main__":
    main()

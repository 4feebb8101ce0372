#!/usr/bin/env python3
"""River's drift detectors on the scenario streams of `benches/detection/main.rs`.

For each scenario in MANIFEST (written by `cargo bench --bench detection`): per series, feed
River 0.26's ADWIN and PageHinkley, at their defaults, the raw value of the scenario's signal
(latency_ms, the error indicator 0/1, or the judge score) in event-time order. A drift flagged
before the onset is a false alarm; the first one at or after it is the detection, its delay
the event time from the onset. ADWIN is also run at the largest `delta` of a grid (default
0.002 down to 1e-12) that raises no false alarm before the onset on that scenario — the
comparison at equal false alarms (zero). Prints a Markdown table with driftwatch's numbers
from the manifest beside River's, and writes MANIFEST's directory/river.json.

Usage: python3 benches/detection/river_bench.py target/detection/manifest.json
"""

import json
import os
import sys
from collections import defaultdict
from datetime import datetime

from river import drift

DELTAS = [0.002, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-10, 1e-12]


def ms(ts):
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def load(path, signal):
    """{series: [(t_ms, value)]} of the values River sees for `signal`."""
    series = defaultdict(list)
    with open(path) as f:
        for line in f:
            e = json.loads(line)
            key = (e["service"], e["request_model"], e.get("prompt_version"), e.get("deployment"))
            t = ms(e["timestamp"])
            if signal == "latency_ms":
                series[key].append((t, float(e["latency_ms"])))
            elif signal == "error":
                series[key].append((t, 1.0 if e["status"] == "error" else 0.0))
            else:
                for v in (e.get("judge_scores") or {}).values():
                    series[key].append((t, float(v)))
    for v in series.values():
        v.sort(key=lambda p: p[0])
    return series


def run(make, series, onset):
    """(false alarms before onset, delay in s of the first alarm at/after it or None)."""
    false_alarms, first = 0, None
    for points in series.values():
        d = make()
        for t, x in points:
            d.update(x)
            if d.drift_detected:
                if t < onset:
                    false_alarms += 1
                elif first is None or t < first:
                    first = t
                    break
    return false_alarms, (None if first is None else (first - onset) / 1000.0)


def fmt_delay(d):
    return "never" if d is None else f"{d:.0f} s"


def main():
    manifest_path = sys.argv[1] if len(sys.argv) > 1 else "target/detection/manifest.json"
    with open(manifest_path) as f:
        manifest = json.load(f)
    base = os.path.dirname(manifest_path)
    results = []
    for sc in manifest:
        series = load(os.path.join(base, sc["file"]), sc["signal"])
        onset = sc["onset_ms"]
        adwin = run(lambda: drift.ADWIN(), series, onset)
        ph = run(lambda: drift.PageHinkley(), series, onset)
        quiet = None
        for delta in DELTAS:
            fa, delay = run(lambda: drift.ADWIN(delta=delta), series, onset)
            if fa == 0:
                quiet = (delta, delay)
                break
        results.append(dict(name=sc["name"], adwin=adwin, page_hinkley=ph, adwin_quiet=quiet))
        print(f"{sc['name']}: done", file=sys.stderr)
    with open(os.path.join(base, "river.json"), "w") as f:
        json.dump(results, f, indent=1)

    print("| scenario | driftwatch (shipped rules) | ADWIN, zero false alarms | ADWIN default (δ 0.002) | Page-Hinkley default |")
    print("|---|---|---|---|---|")
    for sc, r in zip(manifest, results):
        dw = sc["driftwatch"]
        dw_cell = f"{fmt_delay(dw['delay_s'])}, {len(dw['false_alarms'])} false"
        q = r["adwin_quiet"]
        q_cell = "none in grid" if q is None else f"{fmt_delay(q[1])} (δ {q[0]:g})"
        a_fa, a_d = r["adwin"]
        p_fa, p_d = r["page_hinkley"]
        print(
            f"| {sc['description']} | {dw_cell} | {q_cell} | {fmt_delay(a_d)}, {a_fa} false |"
            f" {fmt_delay(p_d)}, {p_fa} false |"
        )


if __name__ == "__main__":
    main()

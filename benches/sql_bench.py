#!/usr/bin/env python3
"""Times five standard queries in driftwatch (DataFusion, `driftwatch query --repeat 3`) and
DuckDB (in-process, best of 3) on one data directory and prints a table with the ratios.

    python3 benches/sql_bench.py DATA_DIR DRIFTWATCH_BIN

Run through benches/sql.sh, which generates the data first.
"""
import os
import re
import subprocess
import sys
import time

import duckdb

DATA, BIN = sys.argv[1], sys.argv[2]


def first_day():
    days = sorted(d for d in os.listdir(os.path.join(DATA, "events")) if d.startswith("date="))
    return days[len(days) // 2].split("=", 1)[1]


DAY = first_day()

# (name, driftwatch SQL, DuckDB SQL or None when DuckDB cannot run it)
QUERIES = [
    (
        "P99 latency by model by hour, raw events",
        "SELECT request_model, date, hour, approx_percentile_cont(latency_ms, 0.99) AS p99 "
        "FROM events GROUP BY request_model, date, hour",
        "SELECT request_model, date, hour, approx_quantile(latency_ms, 0.99) AS p99 "
        "FROM events GROUP BY request_model, date, hour",
    ),
    (
        "error rate by prompt version",
        "SELECT prompt_version, AVG(CASE WHEN status = 'error' THEN 1.0 ELSE 0.0 END) AS error_rate "
        "FROM events GROUP BY prompt_version",
        None,
    ),
    (
        "top error types for a day",
        f"SELECT error_type, COUNT(*) AS n FROM events WHERE date = '{DAY}' AND error_type IS NOT NULL "
        "GROUP BY error_type ORDER BY n DESC LIMIT 10",
        None,
    ),
    (
        "P99 latency by model by hour, window sketches (hist_merge/hist_quantile)",
        "SELECT request_model, date, hour, hist_quantile(hist_merge(latency_ms_hist), 0.99) / 1000 AS p99 "
        "FROM windows GROUP BY request_model, date, hour",
        "-",
    ),
    (
        "the same P99 from the hourly rollup (windows_1h)",
        "SELECT request_model, date, date_part('hour', window_start) AS hour, "
        "hist_quantile(hist_merge(latency_ms_hist), 0.99) / 1000 AS p99 "
        "FROM windows_1h GROUP BY request_model, date, date_part('hour', window_start)",
        "-",
    ),
    (
        "firing alerts joined with their windows",
        "SELECT a.rule, a.service, COUNT(*) AS windows, SUM(w.event_count) AS events FROM alerts a "
        "JOIN windows w ON a.service = w.service AND a.request_model = w.request_model "
        "AND w.window_start >= a.range_start AND w.window_start < a.range_end "
        "WHERE a.to_state = 'firing' GROUP BY a.rule, a.service",
        None,
    ),
]


def driftwatch(sql):
    out = subprocess.run(
        [BIN, "query", "--data-dir", DATA, "--format", "csv", "--repeat", "3", sql],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"driftwatch query failed: {out.stderr}")
    m = re.search(r"best ([0-9.]+) ms", out.stderr)
    return float(m.group(1)) / 1000, out.stdout.count("\n") - 1


con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
for table in ["events", "windows", "alerts"]:
    con.execute(
        f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{DATA}/{table}/*/*/*.parquet', "
        "hive_partitioning = true, hive_types_autocast = false, union_by_name = true)"
    )


def duck(sql):
    best = None
    rows = 0
    for _ in range(3):
        t = time.perf_counter()
        rows = len(con.execute(sql).fetchall())
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    return best, rows


print(f"data: {DATA} (a day for query 3: {DAY})")
print(f"{'query':<75} {'driftwatch':>11} {'DuckDB':>9} {'ratio':>6}  rows")
raw_p99 = None
for name, dw_sql, duck_sql in QUERIES:
    dw_t, dw_rows = driftwatch(dw_sql)
    if duck_sql == "-":
        print(f"{name:<75} {dw_t:>10.3f}s {'n/a':>9} {'':>6}  {dw_rows}  ({raw_p99 / dw_t:.1f}x faster than from raw events)")
        continue
    d_t, d_rows = duck(duck_sql or dw_sql)
    if raw_p99 is None:
        raw_p99 = dw_t
    print(f"{name:<75} {dw_t:>10.3f}s {d_t:>8.3f}s {dw_t / d_t:>6.2f}  {dw_rows}/{d_rows}")

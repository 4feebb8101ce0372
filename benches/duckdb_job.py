"""The peer batch job of benches/compare.sh: what a team would otherwise run over its logs.

DuckDB reads the same JSON lines as `driftwatch replay` and writes, per series (service,
request model, prompt id and version, deployment) and minute: the request count, the error
rate, exact P50 and P99 latency (quantile_disc: a value of the data, not an estimate) and the
mean inline judge score; one Parquet file. Late-score messages and malformed lines are
skipped (driftwatch joins the former and quarantines the latter: more work, not less).

    python3 benches/duckdb_job.py EVENTS.jsonl OUT.parquet
Prints `rows_in=… rows_out=… secs=…`.
"""

import sys
import time

import duckdb

src, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
columns = {
    "kind": "VARCHAR",
    "timestamp": "VARCHAR",
    "service": "VARCHAR",
    "request_model": "VARCHAR",
    "prompt_id": "VARCHAR",
    "prompt_version": "VARCHAR",
    "deployment": "VARCHAR",
    "latency_ms": "DOUBLE",
    "status": "VARCHAR",
    "judge_scores": "STRUCT(faithfulness DOUBLE, relevance DOUBLE)",
}
cols = ", ".join(f"'{k}': '{v}'" for k, v in columns.items())
start = time.perf_counter()
con.execute(
    f"""
    COPY (
      SELECT service, request_model, prompt_id, prompt_version, deployment,
             time_bucket(INTERVAL 1 minute, CAST("timestamp" AS TIMESTAMPTZ)) AS minute,
             count(*) AS requests,
             avg(CASE WHEN status = 'error' THEN 1.0 ELSE 0.0 END) AS error_rate,
             quantile_disc(latency_ms, 0.5) AS latency_p50_ms,
             quantile_disc(latency_ms, 0.99) AS latency_p99_ms,
             avg(judge_scores.faithfulness) AS judge_faithfulness_mean
      FROM read_json(?, format = 'newline_delimited', ignore_errors = true,
                     columns = {{{cols}}})
      WHERE kind IS NULL AND service IS NOT NULL AND latency_ms IS NOT NULL
            AND "timestamp" IS NOT NULL
      GROUP BY ALL
    ) TO '{out}' (FORMAT parquet)
    """,
    [src],
)
secs = time.perf_counter() - start
rows_in, rows_out = con.execute(
    f"SELECT (SELECT sum(requests) FROM '{out}'), (SELECT count(*) FROM '{out}')"
).fetchone()
print(f"rows_in={rows_in} rows_out={rows_out} secs={secs:.3f}")

"""Cross-engine check: DuckDB reads driftwatch's Parquet directory as is, computes the exact
per-window P99 latency from `events` (inverted-CDF definition: the value of rank ceil(0.99 n))
and pairs it with driftwatch's `windows.latency_ms_p99`. Prints JSON rows."""

import json
import sys

import duckdb

data = sys.argv[1]
sql = f"""
WITH e AS (
    SELECT service, request_model, coalesce(prompt_id, '') AS prompt_id, coalesce(prompt_version, '') AS prompt_version,
           coalesce(variant, '') AS variant,
           coalesce(deployment, '') AS deployment,
           (epoch_ms(timestamp) // 60000) * 60000 AS start_ms, latency_ms
    FROM read_parquet('{data}/events/**/*.parquet', hive_partitioning = true)
    WHERE NOT late
), ranked AS (
    SELECT *, row_number() OVER w AS rn, count(*) OVER (PARTITION BY service, request_model, prompt_id, prompt_version, deployment, variant, start_ms) AS n
    FROM e
    WINDOW w AS (PARTITION BY service, request_model, prompt_id, prompt_version, deployment, variant, start_ms ORDER BY latency_ms)
), exact AS (
    SELECT service, request_model, prompt_id, prompt_version, deployment, variant, start_ms, any_value(n) AS n,
           max(latency_ms) FILTER (WHERE rn = ceil(0.99 * n)) AS exact_p99
    FROM ranked GROUP BY ALL
)
SELECT x.service, x.request_model, x.prompt_id, x.prompt_version, x.deployment, x.variant, x.start_ms, x.n,
       x.exact_p99, w.latency_ms_p99 AS windows_p99, w.event_count
FROM exact x JOIN read_parquet('{data}/windows/**/*.parquet', hive_partitioning = true) w
  ON w.service = x.service AND w.request_model = x.request_model
 AND w.prompt_id = x.prompt_id AND w.prompt_version = x.prompt_version
 AND w.deployment = x.deployment AND w.variant = x.variant
 AND epoch_ms(w.window_start) = x.start_ms
 AND w.correction_after IS NULL  -- correction rows hold late scores only
ORDER BY ALL
"""
cols = ["service", "request_model", "prompt_id", "prompt_version", "deployment", "variant", "start_ms", "n", "exact_p99", "windows_p99", "event_count"]
rows = [dict(zip(cols, r)) for r in duckdb.sql(sql).fetchall()]
json.dump(rows, sys.stdout)

"""Cross-engine check of the cost columns of `windows`: DuckDB reads driftwatch's Parquet
directory as is, aggregates `events` per series and window (cost total and per request,
cache-read ratio, cache savings, cache-write and reasoning tokens) and pairs each with the
`windows` row driftwatch wrote. Prints JSON rows."""

import json
import sys

import duckdb

data = sys.argv[1]
sql = f"""
WITH e AS (
    SELECT service, request_model, coalesce(prompt_id, '') AS prompt_id, coalesce(prompt_version, '') AS prompt_version,
           coalesce(variant, '') AS variant,
           coalesce(deployment, '') AS deployment,
           (epoch_ms(timestamp) // 60000) * 60000 AS start_ms, *
    FROM read_parquet('{data}/events/**/*.parquet', hive_partitioning = true)
    WHERE NOT late
), agg AS (
    SELECT service, request_model, prompt_id, prompt_version, deployment, variant, start_ms,
           count(*) AS n,
           sum(cost_usd) AS cost_total,
           avg(cost_usd) AS cost_per_request,
           sum(coalesce(cached_input_tokens, 0)) / sum(input_tokens) AS cache_read_ratio,
           sum(coalesce(cache_savings_usd, 0)) AS cache_savings,
           sum(coalesce(cache_creation_input_tokens, 0)) AS cache_written,
           sum(coalesce(reasoning_tokens, 0)) AS reasoning
    FROM e GROUP BY ALL
)
SELECT a.*, w.event_count AS w_events, w.cost_usd_sum AS w_cost_total,
       w.cost_per_request AS w_cost_per_request, w.cache_read_ratio AS w_cache_read_ratio,
       w.cache_savings_usd AS w_cache_savings, w.cache_creation_input_tokens_total AS w_cache_written,
       w.reasoning_tokens_total AS w_reasoning
FROM agg a JOIN read_parquet('{data}/windows/**/*.parquet', hive_partitioning = true) w
  ON w.service = a.service AND w.request_model = a.request_model
 AND w.prompt_id = a.prompt_id AND w.prompt_version = a.prompt_version
 AND w.deployment = a.deployment AND w.variant = a.variant
 AND epoch_ms(w.window_start) = a.start_ms
ORDER BY a.start_ms, a.request_model
"""
rel = duckdb.sql(sql)
cols = [c for c in rel.columns]
rows = [dict(zip(cols, r)) for r in rel.fetchall()]
json.dump(rows, sys.stdout, default=str)

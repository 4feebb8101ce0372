"""Prints the firing transitions of the `alerts` table under DIR as JSON, read by DuckDB.

    python3 tests/duckdb_alerts.py DIR
"""
import json
import sys

import duckdb

rows = duckdb.sql(
    f"""SELECT rule, coalesce(service, ''), coalesce(request_model, ''),
               coalesce(prompt_version, '')
        FROM read_parquet('{sys.argv[1]}/alerts/**/*.parquet', hive_partitioning = true)
        WHERE to_state = 'firing' ORDER BY evaluated_at, rule"""
).fetchall()
print(json.dumps(rows))

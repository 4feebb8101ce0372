#!/usr/bin/env python3
"""Runs the queries of tests/queries.json with DuckDB over a driftwatch data directory and
prints one JSON line per query: {"name", "columns", "rows"}.

    python3 tests/duckdb_queries.py DATA_DIR [QUERIES_JSON]

The tables are views over the same Hive-partitioned Parquet files driftwatch writes, with
the partition columns `date` and `hour` kept as strings (as driftwatch declares them).
A query's "duckdb" text is used when DuckDB needs other SQL (exact quantiles over events).
"""
import datetime
import decimal
import json
import os
import sys

import duckdb


def plain(v):
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    return v


def main():
    data = sys.argv[1]
    queries_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "queries.json")
    with open(queries_path) as f:
        queries = json.load(f)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for table in ["events", "windows", "alerts", "quarantine"]:
        path = os.path.join(data, table)
        if os.path.isdir(path):
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{path}/*/*/*.parquet', "
                "hive_partitioning = true, hive_types_autocast = false, union_by_name = true)"
            )
    for q in queries:
        cur = con.execute(q.get("duckdb", q["sql"]))
        columns = [d[0] for d in cur.description]
        rows = [[plain(v) for v in r] for r in cur.fetchall()]
        print(json.dumps({"name": q["name"], "columns": columns, "rows": rows}))


if __name__ == "__main__":
    main()

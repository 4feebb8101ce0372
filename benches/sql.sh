#!/usr/bin/env bash
# SQL benchmark: driftwatch (DataFusion) and DuckDB, the same five queries on the same files.
#
#   benches/sql.sh [EVENTS] [DATA_DIR]          # defaults: 10000000 /var/tmp/driftwatch-sql-bench
#
# Generates EVENTS requests of history (30 simulated days, 4 partitions, the default rules
# writing alerts) through driftwatch's real decoder, windows and Parquet writer once (reused
# while the directory holds a complete run of that size), then times each query (best of 3,
# execution only: driftwatch's `query --repeat`, DuckDB in-process) and prints the ratios.
# Needs a release build (`cargo build --release`) and Python with duckdb
# (`pip install -r tests/requirements.txt`).
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-10000000}"
DIR="${2:-/var/tmp/driftwatch-sql-bench}"
BIN="${DRIFTWATCH_BIN:-${CARGO_TARGET_DIR:-target}/release/driftwatch}"
[ -x "$BIN" ] || { echo "no $BIN: run cargo build --release (or set DRIFTWATCH_BIN)" >&2; exit 2; }
if [ ! -f "$DIR/.generated-$EVENTS" ]; then
  rm -rf "$DIR"
  "$BIN" generate --data-dir "$DIR" --events "$EVENTS" --span 720h --partitions 4 --seed 1
  touch "$DIR/.generated-$EVENTS"
fi
du -sh "$DIR"/events "$DIR"/windows "$DIR"/alerts 2>/dev/null || true
python3 benches/sql_bench.py "$DIR" "$BIN"

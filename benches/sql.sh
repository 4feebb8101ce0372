#!/usr/bin/env bash
# SQL benchmark: driftwatch (DataFusion) and DuckDB, the same five queries on the same files.
#
#   benches/sql.sh [EVENTS] [DATA_DIR] [SPAN]   # defaults: 10000000 /var/tmp/driftwatch-sql-bench 24h
#
# Generates EVENTS requests of history spread over SPAN of simulated time (4 partitions,
# the default rules writing alerts) through driftwatch's real decoder, windows and Parquet
# writer once (reused while the directory holds a complete run of that size and span), then
# compacts the closed hours as the daemon does in the background (`driftwatch compact`), and
# times each query (best of 3, execution only: driftwatch's `query --repeat`, DuckDB
# in-process) and prints the ratios.
# Needs a release build (`cargo build --release`) and Python with duckdb
# (`pip install -r tests/requirements.txt`).
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-10000000}"
DIR="${2:-/var/tmp/driftwatch-sql-bench}"
SPAN="${3:-24h}"
BIN="${DRIFTWATCH_BIN:-${CARGO_TARGET_DIR:-target}/release/driftwatch}"
[ -x "$BIN" ] || { echo "no $BIN: run cargo build --release (or set DRIFTWATCH_BIN)" >&2; exit 2; }
if [ ! -f "$DIR/.generated-$EVENTS-$SPAN" ]; then
  rm -rf "$DIR"
  "$BIN" generate --data-dir "$DIR" --events "$EVENTS" --span "$SPAN" --partitions 4 --seed 1
  touch "$DIR/.generated-$EVENTS-$SPAN"
fi
# Every hour but the current one has closed.
"$BIN" compact --data-dir "$DIR" --after 0s
du -sh "$DIR"/events "$DIR"/windows "$DIR"/alerts 2>/dev/null || true
python3 benches/sql_bench.py "$DIR" "$BIN"

#!/usr/bin/env bash
# driftwatch side by side with what a user would otherwise run, on one dataset, in one run.
#
#   benches/compare.sh            # 5,000,000 events, 1,000,000 of them through tansu
#   EVENTS=500000 BROKER_EVENTS=200000 SERIES="1000 10000" benches/compare.sh   # quicker
#
# Needs: the release build (made here), python3 with duckdb (tests/requirements.txt), and
# tansu 0.6.0 on PATH for the broker rows (skipped with a note without it). Prints a
# Markdown table; the raw measurements stay in $WORK (default: a fresh /var/tmp directory).
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-5000000}
BROKER_EVENTS=${BROKER_EVENTS:-1000000}
SERIES=${SERIES:-"10000 100000"}
ALERTS=${ALERTS:-120}
WORK=${WORK:-$(mktemp -d /var/tmp/driftwatch-compare.XXXXXX)}
TARGET=${CARGO_TARGET_DIR:-target}
mkdir -p "$WORK"
log() { printf '== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" >&2; }
# key=value lines → the value of $2
val() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -1; }
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.2f}' if b else '-')" "$1" "$2"; }
rate() { python3 -c "import sys; n, s = float(sys.argv[1]), float(sys.argv[2]); print(f'{n / s:,.0f}')" "$1" "$2"; }
now_s() { date +%s.%N; }
# The [kafka] section of a config reading topic $1 as group $2 from the broker on $port.
kafka_toml() {
  cat <<EOF
[kafka]
bootstrap_servers = "127.0.0.1:$port"
topics = ["$1"]
group_id = "$2"
[kafka.librdkafka]
"broker.address.family" = "v4"
"fetch.wait.max.ms" = 10
EOF
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

log "build (release)"
cargo build --release --quiet --bin driftwatch >&2
cargo bench --profile release --bench compare --no-run --quiet >&2 2>/dev/null ||
  cargo bench --profile release --bench compare --no-run >&2
BIN="$TARGET/release/driftwatch"
CMP=$(ls -t "$TARGET"/release/deps/compare-* | grep -v '\.d$' | head -1)

cat >"$WORK/replay.toml" <<EOF
[storage]
data_dir = "$WORK/replay-data"
[http]
listen = "127.0.0.1:0"
EOF

DATA="$WORK/events.jsonl"
if [ ! -s "$DATA" ]; then
  log "generate $EVENTS events (24 h of event time) as JSON lines"
  "$BIN" produce --config "$WORK/replay.toml" --output "$DATA" --events "$EVENTS" \
    --span 24h --seed 1 >&2
fi
LINES=$(wc -l <"$DATA")
MB=$(($(stat -c %s "$DATA") / 1000000))

log "1. decode floor (serde_json)"
out=$("$CMP" decode "$DATA")
echo "$out" >"$WORK/decode.txt"
value_secs=$(val "$out" value_secs)
typed_secs=$(val "$out" typed_secs)
requests=$(val "$out" requests)

log "2. driftwatch replay (full pipeline)"
rm -rf "$WORK/replay-data"
/usr/bin/time -f 'wall=%e rss_kb=%M' -o "$WORK/replay.time" \
  "$BIN" replay --config "$WORK/replay.toml" --quiet "$DATA" >"$WORK/replay.out" 2>&1
rt=$(cat "$WORK/replay.time")
replay_secs=$(val "$rt" wall)
replay_rss_mb=$(($(val "$rt" rss_kb) / 1000))

log "3. DuckDB batch job"
rm -f "$WORK/duckdb.parquet"
out=$(python3 benches/duckdb_job.py "$DATA" "$WORK/duckdb.parquet")
echo "$out" >"$WORK/duckdb.txt"
duck_secs=$(val "$out" secs)
duck_rows=$(val "$out" rows_in)

broker_rows=""
if command -v tansu >/dev/null; then
  log "4. broker: $BROKER_EVENTS events through tansu"
  port=$(free_port)
  (cd "$WORK" && exec tansu broker --storage-engine memory://tansu/ \
    --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    >"$WORK/tansu.log" 2>&1) &
  tansu_pid=$!
  trap 'kill $tansu_pid 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    tansu topic create bench --partitions 3 --broker "tcp://127.0.0.1:$port" >/dev/null 2>&1 && break
    sleep 0.2
  done
  http=127.0.0.1:$(free_port)
  {
    kafka_toml bench driftwatch-bench
    cat <<EOF
[produce]
topic = "bench"
[produce.librdkafka]
"linger.ms" = "0"
[storage]
data_dir = "$WORK/broker-data"
[http]
listen = "$http"
EOF
  } >"$WORK/broker.toml"
  t=$(now_s)
  "$BIN" produce --config "$WORK/broker.toml" --events "$BROKER_EVENTS" --span 6h --seed 2 \
    --malformed-ratio 0 >"$WORK/produce.out"
  produce_secs=$(python3 -c "import time, sys; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$t")
  messages=$(awk '{print $2; exit}' "$WORK/produce.out")

  out=$("$CMP" consume "127.0.0.1:$port" bench "$messages")
  echo "$out" >"$WORK/consume.txt"
  bare_secs=$(val "$out" secs)

  rm -rf "$WORK/broker-data"
  t=$(now_s)
  "$BIN" run --config "$WORK/broker.toml" >"$WORK/run.log" 2>&1 &
  run_pid=$!
  while :; do
    n=$(curl -s "http://$http/metrics" | awk '$1 == "driftwatch_messages_consumed_total" {print $2}')
    [ "${n:-0}" = "$messages" ] && break
    kill -0 $run_pid 2>/dev/null || { echo "driftwatch run died: $(tail -5 "$WORK/run.log")" >&2; exit 1; }
    sleep 0.05
  done
  run_secs=$(python3 -c "import time, sys; print(f'{time.time() - float(sys.argv[1]):.2f}')" "$t")
  kill -TERM $run_pid && wait $run_pid || true
  broker_rows="| 4. from tansu: bare rdkafka consumer, count only | $(rate "$messages" "$bare_secs") msg/s ($messages in ${bare_secs} s) | 1.00 |
| 4. from tansu: \`driftwatch run\`, full pipeline | $(rate "$messages" "$run_secs") msg/s (${run_secs} s) | **$(ratio "$bare_secs" "$run_secs")** × bare consumer |"
  echo "(producing $messages messages took ${produce_secs} s)" >&2

  log "6. alert latency: $ALERTS series start failing one per second"
  tansu topic create latency --partitions 3 --broker "tcp://127.0.0.1:$port" >/dev/null
  http=127.0.0.1:$(free_port)
  hook=$(free_port)
  {
    kafka_toml latency driftwatch-latency
    cat <<EOF
[windows]
slice_lateness = "1s"
[storage]
data_dir = "$WORK/latency-data"
[http]
listen = "$http"
[detection]
rules_dir = "$PWD/benches/alert-latency-rules"
[notify]
group_wait = "0s"
group_interval = "1s"
group_by = ["alertname", "service"]
default_channels = ["hook"]
[notify.channels.hook]
type = "webhook"
url = "http://127.0.0.1:$hook/hook"
EOF
  } >"$WORK/latency.toml"
  rm -rf "$WORK/latency-data"
  "$BIN" check --config "$WORK/latency.toml" >&2
  "$BIN" run --config "$WORK/latency.toml" >"$WORK/latency-run.log" 2>&1 &
  run_pid=$!
  sleep 3
  out=$("$CMP" alert-latency "127.0.0.1:$port" latency "$hook" "$ALERTS" 1000)
  kill -TERM $run_pid && wait $run_pid || true
  echo "$out" >"$WORK/latency.txt"
  latency_rows="| 6. alert latency, watermark past the end of the first crossing slice → webhook received ($(val "$out" alerts) of $ALERTS alerts, $(val "$out" fired_on_a_later_slice) on a later slice) | p50 $(val "$out" p50_s) s, p99 $(val "$out" p99_s) s, max $(val "$out" max_s) s | goal p99 ≤ 1 s |"
else
  broker_rows="| 4. from the broker | skipped: tansu is not on PATH | |"
  latency_rows="| 6. alert latency | skipped: tansu is not on PATH | |"
fi

log "5. detector memory and evaluation"
mem_rows=""
for n in $SERIES; do
  # A 10,000-series minute of evaluation takes minutes here: fewer minutes above 1,000.
  if [ "$n" -gt 1000 ]; then em=${EVAL_MINUTES:-2}; else em=${EVAL_MINUTES:-10}; fi
  out=$(EVAL_MINUTES=$em "$CMP" detector "$n")
  echo "$out" >"$WORK/detector-$n.txt"
  mem_rows+="| 5. $n active series: RSS per series (history, caches, alerts) | $(($(val "$out" bytes_per_series) / 1024)) KiB ($(($(val "$out" rss_bytes) / 1000000)) MB) | goal ≤ 64 KiB |
| 5. $n series: evaluation per minute of event time | $(val "$out" eval_secs_per_event_minute) s = $(python3 -c "print(f'{100 * float(\"$(val "$out" core_fraction)\"):.1f}')") % of a core | goal < 10 % at 100,000 |
"
done

cat <<EOF

driftwatch compare — $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(($(grep MemTotal /proc/meminfo | awk '{print $2}') / 1000000)) GB
Dataset: $LINES JSON lines ($MB MB), $requests request events over 24 h; work files in $WORK

| measurement | result | ratio |
|---|---|---|
| 1. decode floor: serde_json → \`serde_json::Value\` | $(rate "$LINES" "$value_secs") lines/s | |
| 1. decode floor: serde_json → typed event (driftwatch's decoder, no windows) | $(rate "$LINES" "$typed_secs") lines/s | 1.00 |
| 2. \`driftwatch replay\`, full pipeline (windows, Parquet, detector) | $(rate "$LINES" "$replay_secs") lines/s (${replay_secs} s, ${replay_rss_mb} MB RSS) | **$(ratio "$typed_secs" "$replay_secs")** × floor (goal ≥ 0.5) |
| 3. DuckDB batch job (per series × minute: counts, error rate, exact P50/P99, judge mean → Parquet) | $(rate "$duck_rows" "$duck_secs") requests/s (${duck_secs} s) | **$(ratio "$duck_secs" "$replay_secs")** × driftwatch / DuckDB (goal > 1) |
$broker_rows
$mem_rows$latency_rows
EOF

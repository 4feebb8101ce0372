#!/usr/bin/env bash
# Detection delay of driftwatch's shipped rules against River's ADWIN and Page-Hinkley on
# the scenario streams of the detection suite. One command; prints a Markdown table.
#   benches/detection/run.sh [DIR]        (default target/detection)
# Needs River: pip install -r benches/detection/requirements.txt
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-target/detection}
# The release profile: the test build's artifacts are reused (the bench profile would rebuild them).
cargo bench --profile release --bench detection -- "$dir"
python3 benches/detection/river_bench.py "$dir/manifest.json"

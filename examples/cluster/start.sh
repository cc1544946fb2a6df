#!/usr/bin/env bash
# Starts the six nodes of examples/cluster/ in the background (logs in examples/cluster/logs/),
# and stops them all (SIGTERM: each drains, then exits) when this script is interrupted.
set -euo pipefail
cd "$(dirname "$0")"
bin="${CONFLUO:-../../target/release/confluo}"
[ -x "$bin" ] || { echo "build first: cargo build --release -p confluo" >&2; exit 1; }
mkdir -p logs
pids=()
for node in dc1-leader dc1-follower dc2-leader dc2-follower dc3-leader dc3-follower; do
    "$bin" serve --config "$node.toml" 2> "logs/$node.log" &
    pids+=($!)
    echo "started $node (pid $!)"
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' INT TERM
echo "leaders: redis-cli -p 7001 | -p 7003 | -p 7005; followers: -p 7002 | -p 7004 | -p 7006"
echo "Ctrl-C drains and stops them."
wait

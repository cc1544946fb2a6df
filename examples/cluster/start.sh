#!/usr/bin/env bash
# Starts the six nodes of examples/cluster/ in the background (logs in examples/cluster/logs/),
# with mutual TLS between them (certificates made on the first run) and client AUTH,
# and stops them all (SIGTERM: each drains, then exits) when this script is interrupted.
set -euo pipefail
cd "$(dirname "$0")"
bin="${CONFLUO:-../../target/release/confluo}"
[ -x "$bin" ] || { echo "build first: cargo build --release -p confluo" >&2; exit 1; }
mkdir -p logs
nodes=(dc1-leader dc1-follower dc2-leader dc2-follower dc3-leader dc3-follower)
# Mutual TLS needs a CA and a certificate per node (git-ignored; made once, renewed by
# running make_certs again, which reuses certs/ca.key).
if [ ! -f certs/ca.pem ]; then
    echo "making the cluster CA and node certificates in examples/cluster/certs/"
    (cd ../.. && cargo run -q -p confluo-transport --example make_certs -- \
        examples/cluster/certs "${nodes[@]}")
fi
pids=()
for node in "${nodes[@]}"; do
    "$bin" serve --config "$node.toml" 2> "logs/$node.log" &
    pids+=($!)
    echo "started $node (pid $!)"
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' INT TERM
echo "leaders: redis-cli --user app --pass app-password -p 7001 | -p 7003 | -p 7005"
echo "followers: -p 7002 | -p 7004 | -p 7006 (read-only user: --user reader --pass reader-password)"
echo "Ctrl-C drains and stops them."
wait

#!/usr/bin/env bash
# Two confluo binaries side by side under one redis-benchmark command: for each of REPEAT
# rounds, each binary in turn starts fresh (an empty data directory), takes the command,
# and stops. Prints requests/s per run and the medians, so a change is compared with the
# code before it under the same load from elsewhere on the machine.
#
#   bash benches/server_ab.sh OLD_BIN NEW_BIN solo    -t hset -r 10000 -n 100000 -c 50 -P 32
#   bash benches/server_ab.sh OLD_BIN NEW_BIN cluster -t set -d 4096 -r 10000 -n 50000 -c 50 -P 32
#
# `solo` is one leader; `cluster` three leaders all-to-all, the command sent to the first.
# A binary of an older commit: `git worktree add /tmp/old <commit>` and
# `cargo build --release -p confluo` there. Needs redis-benchmark and redis-cli.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,13p' "$0" >&2; exit 2; }
OLD="$1"; NEW="$2"; SHAPE="$3"; shift 3
REPEAT="${REPEAT:-3}"
for tool in redis-benchmark redis-cli; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install redis-tools)" >&2; exit 1; }
done
case "$SHAPE" in solo) NODES=1 ;; cluster) NODES=3 ;; *) echo "shape: solo or cluster" >&2; exit 2 ;; esac

PIDS=()
WORK=""
stop() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
    [ -n "$WORK" ] && rm -rf "$WORK"
    WORK=""
}
trap stop EXIT

member() { # index -> the [node] or [[peers]] body of member i
    printf 'name = "n%s"\nid = %s\ndatacenter = "n%s"\nrole = "leader"\nclient_addr = "127.0.0.1:%s"\npeer_addr = "127.0.0.1:%s"\n' \
        "$1" "$((21 + $1))" "$1" "$((17601 + $1))" "$((17701 + $1))"
}
run() { # binary, redis-benchmark arguments -> requests/s of the command against member 0
    local bin="$1"; shift
    WORK="$(mktemp -d)"
    for ((i = 0; i < NODES; i++)); do
        { echo 'cluster_id = 0xAB'; echo '[node]'; member "$i"; echo "data_dir = \"$WORK/n$i\""
          for ((j = 0; j < NODES; j++)); do [ "$j" = "$i" ] || { echo '[[peers]]'; member "$j"; }; done
        } > "$WORK/n$i.toml"
        "$bin" serve --config "$WORK/n$i.toml" 2>"$WORK/n$i.log" & PIDS+=($!)
    done
    for ((i = 0; i < NODES; i++)); do
        for _ in $(seq 100); do redis-cli -p "$((17601 + i))" PING >/dev/null 2>&1 && break; sleep 0.1; done
    done
    sleep 1
    redis-benchmark -p 17601 "$@" --csv -q 2>/dev/null | tr -d '"' | awk -F, '$1 != "test" { print $2; exit }'
    stop
}
median() { tr ' ' '\n' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "redis-benchmark $* ($SHAPE), $REPEAT alternating runs; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
o=(); n=()
for r in $(seq "$REPEAT"); do
    o+=("$(run "$OLD" "$@")"); n+=("$(run "$NEW" "$@")")
    echo "run $r: old ${o[-1]}, new ${n[-1]}"
done
mo="$(echo "${o[@]}" | median)"; mn="$(echo "${n[@]}" | median)"
echo "median: old $mo, new $mn ($(awk -v a="$mn" -v b="$mo" 'BEGIN { printf "%.2fx", a / b }'))"

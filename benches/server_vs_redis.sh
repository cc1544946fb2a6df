#!/usr/bin/env bash
# redis-benchmark against (a) one confluo leader, (b) a leader of a three-leader confluo
# cluster, (c) redis-server with appendonly yes, appendfsync always: every write fsynced
# before its reply, as confluo does. One run, the same client settings for all three,
# unpipelined and with -P 32; prints requests/s side by side with confluo/redis ratios.
#
#   bash benches/server_vs_redis.sh            # full: -n 200000 -c 50
#   N=20000 REPEAT=1 bash benches/server_vs_redis.sh    # quicker
#
# Needs redis-server and redis-benchmark (Debian: apt-get install redis-server redis-tools)
# and builds confluo in release mode. Everything listens on 127.0.0.1 and stops at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-200000}"
CLIENTS="${CLIENTS:-50}"
TESTS="${TESTS:-set,get,incr,sadd,hset}"
REPEAT="${REPEAT:-3}"
for tool in redis-server redis-benchmark redis-cli; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install redis-server redis-tools)" >&2; exit 1; }
done
cargo build --release -q -p confluo
BIN="$PWD/target/release/confluo"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Ports below the ephemeral range; 17xxx for confluo, 16379 for Redis.
node() { # name id client peer role-lines... -> the [node] or [[peers]] body
    printf 'name = "%s"\nid = %s\ndatacenter = "%s"\nrole = "leader"\nclient_addr = "127.0.0.1:%s"\npeer_addr = "127.0.0.1:%s"\n' "$1" "$2" "$1" "$3" "$4"
}
write_config() { # file me-index (0..n-1) then "name id client peer" per member
    local file="$1" me="$2"; shift 2
    local i=0
    { echo 'cluster_id = 0xBE4C'
      echo '[node]'
      # shellcheck disable=SC2086
      node $(echo "${@:$((me + 1)):1}")
      echo "data_dir = \"$WORK/$(echo "${@:$((me + 1)):1}" | cut -d' ' -f1)\""
      for m in "$@"; do
          if [ "$i" != "$me" ]; then echo '[[peers]]'; node $m; fi  # shellcheck disable=SC2086
          i=$((i + 1))
      done
    } > "$file"
}
wait_port() { for _ in $(seq 100); do redis-cli -p "$1" PING >/dev/null 2>&1 && return; sleep 0.1; done; echo "port $1 never answered" >&2; exit 1; }

write_config "$WORK/solo.toml" 0 "solo 1 17001 17101"
"$BIN" serve --config "$WORK/solo.toml" 2>"$WORK/solo.log" & PIDS+=($!)
CLUSTER=("a 11 17011 17111" "b 12 17012 17112" "c 13 17013 17113")
for i in 0 1 2; do
    write_config "$WORK/c$i.toml" "$i" "${CLUSTER[@]}"
    "$BIN" serve --config "$WORK/c$i.toml" 2>"$WORK/c$i.log" & PIDS+=($!)
done
redis-server --port 16379 --bind 127.0.0.1 --dir "$WORK" --appendonly yes --appendfsync always \
    --save "" --daemonize no >"$WORK/redis.log" 2>&1 & PIDS+=($!)
for p in 17001 17011 17012 17013 16379; do wait_port "$p"; done

# rps of one test: redis-benchmark --csv prints "TEST","rps",...
run() { # port test pipeline -> rps
    redis-benchmark -p "$1" -t "$2" -n "$N" -c "$CLIENTS" -P "$3" --csv -q 2>/dev/null \
        | tr -d '"' | awk -F, '$1 != "test" { print $2; exit }'
}
median() { tr ' ' '\n' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "redis-benchmark -t $TESTS -n $N -c $CLIENTS, unpipelined and -P 32; median of $REPEAT interleaved runs"
echo "confluo: $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(redis-server --version | cut -d' ' -f1-3); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '\n| command | pipeline | confluo leader | confluo 3-leader cluster | redis (AOF always) | leader / redis | cluster / redis |\n'
printf '|---|---:|---:|---:|---:|---:|---:|\n'
for P in 1 32; do
    for test in ${TESTS//,/ }; do
        # Interleaved (leader, Redis, cluster, leader, ...), so that load from elsewhere on
        # the machine falls on all three alike; the median of each.
        s=(); r=(); c=()
        for _ in $(seq "$REPEAT"); do
            s+=("$(run 17001 "$test" "$P")"); r+=("$(run 16379 "$test" "$P")"); c+=("$(run 17011 "$test" "$P")")
        done
        awk -v t="${test^^}" -v p="$P" -v s="$(echo "${s[@]}" | median)" -v c="$(echo "${c[@]}" | median)" \
            -v r="$(echo "${r[@]}" | median)" 'BEGIN {
            printf "| %s | %s | %.0f | %.0f | %.0f | %.2fx | %.2fx |\n", t, (p == 1 ? "none" : "-P " p), s, c, r, s / r, c / r }'
    done
done

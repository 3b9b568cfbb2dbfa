#!/usr/bin/env bash
# Reproduces the "Stores and cache" table of BENCHMARKS.md in one run:
#   blacklist.query through Redis, with the cache disabled, and on the embedded stores
#   (in-process cache on and off), then user.login with the OWASP argon2id cost, and
#   blacklist.query / blacklist.update through a Redis Cluster beside one Redis.
#
# Usage: benches/stores.sh [DURATION] [CONNS]     (defaults: 10s 64)
#        PARTS=mysql benches/stores.sh …   only the two MariaDB rows (cached vs uncached)
#        PARTS=cluster benches/stores.sh …  only one Redis vs a Redis Cluster (3 masters,
#                                           3 replicas), reads and writes
# Needs mariadb-server, redis-server and redis-tools (installed with apt-get when missing). Starts
# private servers on free ports in a temporary folder and removes them at the end.
# Nodes are measured one at a time, each with the whole machine.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10s}
CONNS=${2:-64}
PARTS=${PARTS:-all}
KEYS=1000        # id-0 … id-999 are queried; id-0 … id-499 are listed
LOGIN_USERS=100  # logins are spread over this many names (no per-name throttling)

# shellcheck source=benches/lib.sh
. benches/lib.sh
need mariadbd mariadb-server
need redis-server redis-server
need redis-cli redis-tools
cargo build --release --quiet
DSF=$PWD/target/release/dsf

WORK=$(mktemp -d)
PIDS=()
trap bench_cleanup EXIT

# --- Redis and MariaDB ---------------------------------------------------------------
start_redis
start_mariadb

# --- Nodes -------------------------------------------------------------------------
NODE_PID=
NODE=
stop_node() { kill "$NODE_PID"; wait "$NODE_PID" 2>/dev/null || true; }
call() { "$DSF" client --node "$NODE" call "$@"; }

# A session for the benchmark user (in the shared store: valid on every node).
TOKEN=
login() { TOKEN=$(call user.login '{"name":"bench","password":"bench-password"}' | jq -r .body.token); }
# The benchmark user and 500 listed entries, once per store.
populate() {
    call user.register '{"name":"bench","password":"bench-password"}' >/dev/null
    login
    for i in $(seq 0 $((KEYS / 2 - 1))); do
        call blacklist.insert "{\"id_card\":\"id-$i\",\"name\":\"Listed $i\"}" --token "$TOKEN" >/dev/null
    done
}

RESULTS=$WORK/results.jsonl
bench_query() {
    "$DSF" bench --target "$NODE" --op blacklist.query --body '{"id_card":"id-{key}"}' \
        --keys "$KEYS" --token "$TOKEN" --conns "$CONNS" --depth 1 --duration "$DURATION" \
        --json --label "$1" | tee -a "$RESULTS"
}

# Writes of cached keys: fence (+ WAIT on a cluster), store write, release.
bench_update() {
    "$DSF" bench --target "$NODE" --op blacklist.update --body '{"id_card":"id-{key}","name":"Renamed"}' \
        --keys $((KEYS / 2)) --token "$TOKEN" --conns "$CONNS" --depth 1 --duration "$DURATION" \
        --json --label "$1" | tee -a "$RESULTS"
}

# --- Redis Cluster (only when measured) --------------------------------------------
CLUSTER_PORTS=()
start_redis_cluster() {
    local addrs=() i p
    for i in 0 1 2 3 4 5; do
        p=$(free_port)
        mkdir -p "$WORK/rc$i"
        redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
            --cluster-config-file nodes.conf --cluster-port "$(free_port)" \
            --save "" --appendonly no --dir "$WORK/rc$i" >/dev/null &
        PIDS+=($!)
        CLUSTER_PORTS+=("$p")
        addrs+=("127.0.0.1:$p")
    done
    for p in "${CLUSTER_PORTS[@]}"; do
        until redis-cli -p "$p" ping >/dev/null 2>&1; do sleep 0.05; done
    done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >/dev/null </dev/null
    for p in "${CLUSTER_PORTS[@]}"; do
        until redis-cli -p "$p" cluster info | grep -q cluster_state:ok; do sleep 0.1; done
    done
}

echo "# machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# MySQL + Redis, cache on.
start_node mysql-redis "$DSF" -- --mysql "$MYSQL" --redis "$REDIS" --data "$WORK/n1"
populate
bench_query "MariaDB + Redis cache"
if [ "$PARTS" = cluster ]; then bench_update "MariaDB + Redis cache"; fi
stop_node

if [ "$PARTS" = all ] || [ "$PARTS" = cluster ]; then
# MySQL + a Redis Cluster of 3 masters and 3 replicas (cache.cluster = true).
start_redis_cluster
SEEDS=()
for p in "${CLUSTER_PORTS[@]}"; do SEEDS+=(--redis "redis://127.0.0.1:$p"); done
start_node mysql-cluster "$DSF" DSF__CACHE__CLUSTER=true -- --mysql "$MYSQL" "${SEEDS[@]}" --data "$WORK/nc"
bench_query "MariaDB + Redis Cluster cache (3+3)"
if [ "$PARTS" = cluster ]; then bench_update "MariaDB + Redis Cluster cache (3+3)"; fi
stop_node
fi

if [ "$PARTS" != cluster ]; then
# MySQL, cache off (sessions and answers from MariaDB on every request).
start_node mysql-nocache "$DSF" DSF__CACHE__ENABLED=false -- --mysql "$MYSQL" --redis "$REDIS" --data "$WORK/n2"
bench_query "MariaDB, cache disabled"
stop_node
fi

if [ "$PARTS" = all ]; then
# Embedded: SQLite + in-process cache, then with the cache off.
start_node embedded "$DSF" -- --data "$WORK/embedded"
populate
bench_query "embedded SQLite + in-process cache"
stop_node
start_node embedded-nocache "$DSF" DSF__CACHE__ENABLED=false -- --data "$WORK/embedded"
bench_query "embedded SQLite, cache disabled"
# For scale: the same load shape on the bare protocol path (no token, no store).
"$DSF" bench --target "$NODE" --op sys.echo --body '{"id_card":"id-{key}"}' --keys "$KEYS" \
    --conns "$CONNS" --depth 1 --duration "$DURATION" --json --label "sys.echo (no auth, no store)" \
    | tee -a "$RESULTS"
stop_node

# user.login at the OWASP cost (the configuration default), MariaDB + Redis.
start_node login "$DSF" -- --mysql "$MYSQL" --redis "$REDIS" --data "$WORK/n3"
for i in $(seq 0 $((LOGIN_USERS - 1))); do
    call user.register "{\"name\":\"login$i\",\"password\":\"bench-password\"}" >/dev/null
done
"$DSF" bench --target "$NODE" --op user.login --body '{"name":"login{key}","password":"bench-password"}' \
    --keys "$LOGIN_USERS" --conns 1 --depth 1 --duration "$DURATION" --json \
    --label "user.login, 1 connection" | tee -a "$RESULTS"
"$DSF" bench --target "$NODE" --op user.login --body '{"name":"login{key}","password":"bench-password"}' \
    --keys "$LOGIN_USERS" --conns 16 --depth 1 --duration "$DURATION" --json \
    --label "user.login, 16 connections" | tee -a "$RESULTS"
stop_node
fi

echo
echo "| run | op | conns | req/s | p50 µs | p99 µs | errors |"
echo "|---|---|---:|---:|---:|---:|---:|"
jq -r '"| \(.label) | \(.op) | \(.conns) | \(.rps | floor) | \(.p50_us) | \(.p99_us) | \(.errors) |"' "$RESULTS"

#!/usr/bin/env bash
# Every comparison of BENCHMARKS.md ("Round 2") in one run, with the references in the
# same interleaved rounds, and the Markdown table of medians with ratios and CPU time
# per request:
#   node sys.echo (64 × 16 and 64 × 1)   vs the raw smol echo server (benches/raw_echo.rs)
#   proxy sys.echo (64 × 16 and 64 × 1)  vs HAProxy `mode tcp` and nginx `stream` in front
#                                          of the same node
#   blacklist.query, MariaDB + Redis      vs the embedded store and redis-benchmark GET
#   blacklist.query, MariaDB, no cache    at 16, 64 and 64 × 16
# Each round runs every measurement once, in this order; the table gives the median of
# the rounds. CPU µs/req is the measured server process's user + system time over the
# run and its warm-up (/proc/PID/stat) divided by the requests of both.
#
# Usage: benches/compare.sh                 full run: 3 rounds, 5 s per measurement (~10 min)
#        QUICK=1 benches/compare.sh         1 s per measurement (~3 min; ~5 with BASELINE)
# Environment: KEEP=file keeps the raw JSON lines; BASELINE=path/to/older/dsf   runs that build's node, proxy and store nodes
#              beside this one in the same rounds (before/after);
#              ROUNDS=3 SECS=5 WARMUP=1 override the shape; ONLY="node proxy redis mysql"
#              picks the comparisons; NO_BUILD=1 skips `cargo build`.
# Installs haproxy, nginx (with its stream module), mariadb-server and redis-server with
# apt-get when missing. Loopback only; every server gets one loop thread except the
# store nodes (the default, 2), the load generator one thread.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh

if [ "${QUICK:-0}" = 1 ]; then
  SECS=${SECS:-1} WARMUP=${WARMUP:-0.5}
else
  SECS=${SECS:-5} WARMUP=${WARMUP:-1}
fi
ROUNDS=${ROUNDS:-3}
ONLY=${ONLY:-node proxy redis mysql}
BASELINE=${BASELINE:-}
KEYS=1000 # id-0 … id-999 are queried; id-0 … id-499 are listed

need haproxy haproxy
need nginx nginx
if [ ! -f /usr/lib/nginx/modules/ngx_stream_module.so ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnginx-mod-stream >/dev/null
fi
need redis-benchmark redis-server
[ "${NO_BUILD:-0}" = 1 ] || cargo build --release --bins --benches -q
DSF=$PWD/target/release/dsf
RAW=$(find target/release/deps -maxdepth 1 -name 'raw_echo-*' ! -name '*.d' -printf '%T@ %p\n' |
  sort -rn | head -n1 | cut -d' ' -f2-)
for bin in "$DSF" "$RAW"; do
  if [ ! -x "$bin" ]; then
    echo "missing ${bin:-the raw echo server of benches/raw_echo.rs}: run without NO_BUILD=1" \
      "(or cargo build --release --bins --benches first)" >&2
    exit 1
  fi
done
if [ -n "$BASELINE" ] && [ ! -x "$BASELINE" ]; then
  echo "BASELINE=$BASELINE is not an executable" >&2
  exit 1
fi
ulimit -n 20000 || true
WORK=$(mktemp -d)
PIDS=()
trap bench_cleanup EXIT
RESULTS=$WORK/results.jsonl
ROUND=0
has() { [[ " $ONLY " == *" $1 "* ]]; }

# measure GROUP VARIANT REF(1|0) "PIDS" -- dsf bench arguments…
# One `dsf bench` run, with the CPU time the processes PIDS spent during it.
measure() {
  local group=$1 variant=$2 ref=$3 pids=$4
  shift 5
  local t0 t1 out
  # shellcheck disable=SC2086 # a list of pids
  t0=$(cpu_ticks $pids)
  out=$("$DSF" bench --json --label "$variant" --duration "${SECS}s" --warmup "${WARMUP}s" \
    --threads 1 "$@")
  # shellcheck disable=SC2086
  t1=$(cpu_ticks $pids)
  jq -c --arg g "$group" --argjson ref "$ref" --argjson ticks $((t1 - t0)) \
    --argjson round "$ROUND" --argjson dur "$(python3 -c "print($SECS + $WARMUP)")" \
    '. + {group: $g, ref: $ref, ticks: $ticks, round: $round, requests: (.rps * $dur)}' \
    <<<"$out" >>"$RESULTS"
}

# redis_bench GROUP VARIANT REF CONNS PIPELINE REQUESTS: redis-benchmark GET against
# the same Redis, CPU time of redis-server.
redis_bench() {
  local group=$1 variant=$2 ref=$3 conns=$4 pipe=$5 n=$6 t0 t1 csv
  t0=$(cpu_ticks "$REDIS_PID")
  csv=$(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -t get -r "$KEYS" -c "$conns" \
    -P "$pipe" -n "$n" --csv 2>/dev/null | tail -n1)
  t1=$(cpu_ticks "$REDIS_PID")
  python3 - "$csv" "$group" "$variant" "$ref" "$((t1 - t0))" "$ROUND" "$conns" "$pipe" "$n" \
    >>"$RESULTS" <<'PY'
import csv, json, sys
row = next(csv.reader([sys.argv[1]]))
g, v, ref, ticks, rnd, conns, pipe, n = sys.argv[2:]
# "GET",rps,avg,min,p50,p95,p99,max (milliseconds)
print(json.dumps({"label": v, "group": g, "ref": int(ref), "ticks": int(ticks),
                  "round": int(rnd), "conns": int(conns), "depth": int(pipe),
                  "rps": float(row[1]), "p50_us": round(float(row[4]) * 1000),
                  "p99_us": round(float(row[6]) * 1000), "errors": 0,
                  "requests": int(n)}))
PY
}

echo "# compare.sh: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), ${ROUNDS} rounds," \
  "${SECS} s + ${WARMUP} s warm-up per run${BASELINE:+, baseline $BASELINE}" >&2

# --- Node vs raw echo ----------------------------------------------------------------
if has node; then
  RAW_PORT=$(free_port)
  "$RAW" "127.0.0.1:$RAW_PORT" 1 >"$WORK/raw.out" &
  RAW_PID=$!
  PIDS+=("$RAW_PID")
  start_node echo "$DSF" DSF__RUNTIME__THREADS=1 -- --data "$WORK/echo"
  ECHO=$NODE ECHO_PID=$NODE_PID
  if [ -n "$BASELINE" ]; then
    start_node echo-base "$BASELINE" DSF__RUNTIME__THREADS=1 -- --data "$WORK/echo-base"
    ECHO_BASE=$NODE ECHO_BASE_PID=$NODE_PID
  fi
fi
node_round() {
  local shape conns depth
  for shape in 64x16 64x1; do
    conns=${shape%x*} depth=${shape#*x}
    set -- --op sys.echo --body '{"msg":"hello"}' --conns "$conns" --depth "$depth"
    measure "node sys.echo $shape" "raw echo" 1 "$RAW_PID" -- --target "127.0.0.1:$RAW_PORT" "$@"
    measure "node sys.echo $shape" "dsf node" 0 "$ECHO_PID" -- --target "$ECHO" "$@"
    if [ -n "$BASELINE" ]; then
      measure "node sys.echo $shape" "baseline node" 0 "$ECHO_BASE_PID" -- --target "$ECHO_BASE" "$@"
    fi
  done
}

# --- Proxy vs HAProxy and nginx ------------------------------------------------------
if has proxy; then
  REG=$(free_port) DIR=$(free_port) PRX=$(free_port) HAP=$(free_port) NGX=$(free_port)
  export DSF__CLUSTER__SECRET=bench-secret
  start_node proxied "$DSF" DSF__RUNTIME__THREADS=1 -- --id bench-node --register "127.0.0.1:$REG" \
    --data "$WORK/proxied"
  PROXIED=$NODE
  haproxy_config "$WORK/haproxy.cfg" "$HAP" "$PROXIED"
  haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
  HAP_PID=$!
  PIDS+=("$HAP_PID")
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8000; }
stream {
  upstream nodes { server $PROXIED; }
  server { listen 127.0.0.1:$NGX; proxy_pass nodes; }
}
EOF
  nginx -p "$WORK/nginx" -c "$WORK/nginx.conf" >"$WORK/nginx/out.log" 2>&1 &
  NGX_PID=$!
  PIDS+=("$NGX_PID")
fi
wait_for() { # port: until sys.ping answers through it
  local i
  for i in $(seq 150); do
    "$DSF" client --proxy "127.0.0.1:$1" call sys.ping >/dev/null 2>&1 && return 0
    [ "$i" = 150 ] && break
    sleep 0.1
  done
  echo "nothing answers on 127.0.0.1:$1" >&2
  cat "$WORK"/*.log >&2
  exit 1
}
balancer() { # binary: (re)starts the balancer on the same ports
  if [ -n "${LB_PID:-}" ]; then kill "$LB_PID"; wait "$LB_PID" 2>/dev/null || true; fi
  DSF__RUNTIME__THREADS=1 DSF__ADMIN__LISTEN='' DSF__LOG__LEVEL=warn \
    DSF__LIMITS__MAX_CONNECTIONS=20000 "$1" balancer --registration "127.0.0.1:$REG" \
    --directory "127.0.0.1:$DIR" --proxy "127.0.0.1:$PRX" >"$WORK/balancer.out" 2>>"$WORK/balancer.log" &
  LB_PID=$!
  PIDS+=("$LB_PID")
  wait_for "$PRX" # the node registers again by itself
}
proxy_round() {
  local variants=("dsf proxy") shape conns depth v
  [ -n "$BASELINE" ] && variants+=("baseline proxy")
  for v in "${variants[@]}"; do
    if [ "$v" = "dsf proxy" ]; then balancer "$DSF"; else balancer "$BASELINE"; fi
    for shape in 64x16 64x1; do
      conns=${shape%x*} depth=${shape#*x}
      measure "proxy sys.echo $shape" "$v" 0 "$LB_PID" -- --target "127.0.0.1:$PRX" \
        --op sys.echo --body '{"msg":"hello"}' --conns "$conns" --depth "$depth"
    done
  done
  for shape in 64x16 64x1; do
    conns=${shape%x*} depth=${shape#*x}
    set -- --op sys.echo --body '{"msg":"hello"}' --conns "$conns" --depth "$depth"
    measure "proxy sys.echo $shape" "haproxy tcp" 1 "$HAP_PID" -- --target "127.0.0.1:$HAP" "$@"
    measure "proxy sys.echo $shape" "nginx stream" 0 "$NGX_PID" -- --target "127.0.0.1:$NGX" "$@"
  done
}

# --- Stores: MariaDB + Redis, MariaDB alone, embedded -----------------------------------
call() { "$DSF" client --node "$1" call "${@:2}"; }
populate() { # node: the benchmark user and 500 listed entries; sets TOKEN
  call "$1" user.register '{"name":"bench","password":"bench-password"}' >/dev/null
  TOKEN=$(call "$1" user.login '{"name":"bench","password":"bench-password"}' | jq -r .body.token)
  local i
  for i in $(seq 0 $((KEYS / 2 - 1))); do
    call "$1" blacklist.insert "{\"id_card\":\"id-$i\",\"name\":\"Listed $i\"}" --token "$TOKEN" >/dev/null
  done
}
if has redis || has mysql; then
  start_redis
  start_mariadb
  start_node mysql-redis "$DSF" -- --mysql "$MYSQL" --redis "$REDIS" --data "$WORK/n1"
  MR=$NODE MR_PID=$NODE_PID
  populate "$MR"
  MYSQL_TOKEN=$TOKEN
  start_node mysql-nocache "$DSF" DSF__CACHE__ENABLED=false -- --mysql "$MYSQL" --redis "$REDIS" \
    --data "$WORK/n2"
  MN=$NODE MN_PID=$NODE_PID
  if [ -n "$BASELINE" ]; then
    start_node mysql-redis-base "$BASELINE" -- --mysql "$MYSQL" --redis "$REDIS" --data "$WORK/n3"
    MRB=$NODE MRB_PID=$NODE_PID
    start_node mysql-nocache-base "$BASELINE" DSF__CACHE__ENABLED=false -- --mysql "$MYSQL" \
      --redis "$REDIS" --data "$WORK/n4"
    MNB=$NODE MNB_PID=$NODE_PID
  fi
fi
if has redis; then
  start_node embedded "$DSF" -- --data "$WORK/embedded"
  EMB=$NODE EMB_PID=$NODE_PID
  populate "$EMB"
  EMB_TOKEN=$TOKEN
fi
query() { # conns depth token
  echo --op blacklist.query --body '{"id_card":"id-{key}"}' --keys "$KEYS" --token "$3" \
    --conns "$1" --depth "$2"
}
redis_round() {
  local q n
  read -ra q <<<"$(query 64 16 "$EMB_TOKEN")"
  measure "blacklist.query 64x16, Redis" "embedded store" 1 "$EMB_PID" -- --target "$EMB" "${q[@]}"
  read -ra q <<<"$(query 64 16 "$MYSQL_TOKEN")"
  measure "blacklist.query 64x16, Redis" "dsf MariaDB + Redis" 0 "$MR_PID" -- --target "$MR" "${q[@]}"
  if [ -n "$BASELINE" ]; then
    measure "blacklist.query 64x16, Redis" "baseline MariaDB + Redis" 0 "$MRB_PID" -- --target "$MRB" "${q[@]}"
  fi
  n=$(python3 -c "print(int($SECS * 800000))")
  redis_bench "blacklist.query 64x16, Redis" "redis-benchmark GET -P 16" 0 64 16 "$n"
  n=$(python3 -c "print(int($SECS * 60000))")
  redis_bench "blacklist.query 64x1, Redis" "redis-benchmark GET -c 64" 1 64 1 "$n"
  read -ra q <<<"$(query 64 1 "$MYSQL_TOKEN")"
  measure "blacklist.query 64x1, Redis" "dsf MariaDB + Redis" 0 "$MR_PID" -- --target "$MR" "${q[@]}"
  if [ -n "$BASELINE" ]; then
    measure "blacklist.query 64x1, Redis" "baseline MariaDB + Redis" 0 "$MRB_PID" -- --target "$MRB" "${q[@]}"
  fi
}
mysql_round() {
  local shape q ref=1
  [ -n "$BASELINE" ] && ref=0
  for shape in 16x1 64x1 64x16; do
    read -ra q <<<"$(query "${shape%x*}" "${shape#*x}" "$MYSQL_TOKEN")"
    if [ -n "$BASELINE" ]; then
      measure "blacklist.query $shape, MariaDB uncached" "baseline" 1 "$MNB_PID" -- --target "$MNB" "${q[@]}"
    fi
    measure "blacklist.query $shape, MariaDB uncached" "dsf" "$ref" "$MN_PID" -- --target "$MN" "${q[@]}"
  done
}

for ROUND in $(seq "$ROUNDS"); do
  echo "# round $ROUND, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  if has node; then node_round; fi
  if has proxy; then proxy_round; fi
  if has redis; then redis_round; fi
  if has mysql; then mysql_round; fi
done

python3 - "$RESULTS" "$CLK_TCK" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
tck = float(sys.argv[2])
groups, order = {}, []
for r in rows:
    g = groups.setdefault(r["group"], {})
    if r["group"] not in order:
        order.append(r["group"])
    g.setdefault(r["label"], []).append(r)
med = lambda xs: statistics.median(xs)
print("| comparison | server | req/s | p50 µs | p99 µs | CPU µs/req | errors | req/s ÷ ref | p99 ÷ ref |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for name in order:
    stats = {}
    for label, rs in groups[name].items():
        stats[label] = dict(
            rps=med([r["rps"] for r in rs]),
            p50=med([r["p50_us"] for r in rs]),
            p99=med([r["p99_us"] for r in rs]),
            cpu=med([r["ticks"] / tck * 1e6 / r["requests"] if r["requests"] else 0 for r in rs]),
            errors=sum(r["errors"] for r in rs),
            ref=rs[0]["ref"],
        )
    ref = next((s for s in stats.values() if s["ref"]), None)
    for label, s in stats.items():
        mark = " (ref)" if s["ref"] else ""
        ratio = f"{s['rps'] / ref['rps']:.2f}" if ref and not s["ref"] and ref["rps"] else ""
        p99r = f"{s['p99'] / ref['p99']:.2f}" if ref and not s["ref"] and ref["p99"] else ""
        print(f"| {name} | {label}{mark} | {s['rps']:,.0f} | {s['p50']:,.0f} | {s['p99']:,.0f} | "
              f"{s['cpu']:.2f} | {s['errors']} | {ratio} | {p99r} |")
PY
echo
echo "Medians of $ROUNDS interleaved rounds, ${SECS} s per run (+ ${WARMUP} s warm-up)."
# KEEP=path keeps every run's JSON line.
if [ -n "${KEEP:-}" ]; then cp "$RESULTS" "$KEEP"; fi

#!/usr/bin/env bash
# Balancer benchmarks in one run: the same node reached directly, through DSF's proxy
# port and through HAProxy in TCP mode, each driven by the same load tool (dsf bench);
# then `cargo bench --bench ring` (ring build/lookup, key movement, peak-to-mean).
# Loopback only, bounded in time. Installs haproxy with apt-get if it is missing.
# Usage: benches/balancer.sh [seconds-per-run]   (writes Markdown to stdout)
# Environment: SHAPES="64x1 16x16" (connections x depth), BASELINE=path/to/older/dsf
# (adds that build's proxy to each table, for before/after in one run), RING=0 (skip
# the ring benchmark).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
shapes=${SHAPES:-64x1 16x16}
# shellcheck source=benches/lib.sh
. benches/lib.sh
need haproxy haproxy
cargo build --release --bins --benches -q
dsf=target/release/dsf
ulimit -n 20000 || true
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT

reg=$(free_port); dir=$(free_port); prx=$(free_port); hap=$(free_port); node=$(free_port)

# Every server gets one loop thread (HAProxy too: nbthread 1), the load generator one:
# the node, the proxy in front of it and the load generator share the two cores.
export DSF__RUNTIME__THREADS=1 DSF__LIMITS__MAX_CONNECTIONS=20000 DSF__ADMIN__LISTEN='' \
  DSF__CLUSTER__SECRET=bench-secret RUST_LOG=warn
balancer() { # proxy_conns_per_node [binary]; (re)starts the balancer on the same ports
  if [ -n "${lb_pid:-}" ]; then kill "$lb_pid"; wait "$lb_pid" 2>/dev/null || true; fi
  DSF__BALANCER__PROXY_CONNS_PER_NODE=$1 "${2:-$dsf}" balancer --registration "127.0.0.1:$reg" \
    --directory "127.0.0.1:$dir" --proxy "127.0.0.1:$prx" >"$tmp/balancer.out" 2>>"$tmp/balancer.err" &
  lb_pid=$!
  wait_for "$prx"  # the node registers again by itself
}
wait_for() { # port: until sys.ping answers through it
  for i in $(seq 101); do
    "$dsf" client --proxy "127.0.0.1:$1" call sys.ping >/dev/null 2>&1 && return
    if [ "$i" = 101 ]; then
      echo "nothing answers on 127.0.0.1:$1" >&2
      cat "$tmp"/*.err "$tmp/haproxy.out" >&2
      exit 1
    fi
    sleep 0.1
  done
}
"$dsf" node --id bench-node --listen "127.0.0.1:$node" --register "127.0.0.1:$reg" \
  --data "$tmp/data" >"$tmp/node.out" 2>"$tmp/node.err" &
haproxy_config "$tmp/haproxy.cfg" "$hap" "127.0.0.1:$node"
haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.out" 2>&1 &
wait_for "$hap"

run() { # label target conns depth
  "$dsf" bench --label "$1" --target "$2" --op sys.echo --body '{"msg":"hello"}' \
    --conns "$3" --depth "$4" --duration "${secs}s" --warmup 1s --threads 1 --json
}
echo "### Proxy vs direct vs HAProxy (sys.echo, ${secs} s per run, one node)"
echo
echo "| path | conns | depth | req/s | p50 µs | p99 µs | errors | vs direct |"
echo "|---|---|---|---|---|---|---|---|"
for shape in $shapes; do
  # shellcheck disable=SC2086 # split "64x1" into conns and depth on purpose
  set -- ${shape/x/ }
  rows=("$(run direct "127.0.0.1:$node" "$1" "$2")")
  balancer 4
  rows+=("$(run "dsf proxy, 4 conns/node (default)" "127.0.0.1:$prx" "$1" "$2")")
  balancer 1
  rows+=("$(run "dsf proxy, 1 conn/node" "127.0.0.1:$prx" "$1" "$2")")
  if [ -n "${BASELINE:-}" ]; then
    balancer 4 "$BASELINE"
    rows+=("$(run "baseline proxy, 4 conns/node" "127.0.0.1:$prx" "$1" "$2")")
    balancer 1 "$BASELINE"
    rows+=("$(run "baseline proxy, 1 conn/node" "127.0.0.1:$prx" "$1" "$2")")
  fi
  rows+=("$(run "haproxy tcp" "127.0.0.1:$hap" "$1" "$2")")
  python3 - "${rows[@]}" <<'PY'
import json, sys
rows = [json.loads(a) for a in sys.argv[1:]]
base = rows[0]["rps"]
for r in rows:
    print(f"| {r['label']} | {r['conns']} | {r['depth']} | {r['rps']:.0f} | {r['p50_us']} | "
          f"{r['p99_us']} | {r['errors']} | {r['rps'] / base:.2f} |")
PY
done
[ "${RING:-1}" = 0 ] && exit 0
echo
echo "### Ring and selection (\`cargo bench --bench ring\`)"
echo
echo '```'
cargo bench -q --bench ring 2>/dev/null
echo '```'

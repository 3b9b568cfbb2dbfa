#!/usr/bin/env bash
# Latency seen by clients across in-place upgrades, against the steady state of the
# same run: one balancer and two nodes (release build), `dsf bench` through the proxy
# for three windows of SECS seconds each: steady; with `dsf balancer --upgrade` in
# the middle; with `dsf node --upgrade` of one node in the middle.
# Loopback only, bounded in time.
# Usage: benches/upgrade.sh [seconds-per-window]   (writes Markdown to stdout)
# Environment: SHAPE="32x2" (connections x depth), NO_BUILD=1 (use the binary as is),
# DSF_BIN=path/to/dsf (default target/release/dsf).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-4}
shape=${SHAPE:-32x2}
[ "${NO_BUILD:-}" = 1 ] || cargo build --release --bin dsf -q
dsf=${DSF_BIN:-target/release/dsf}
ulimit -n 20000 || true
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
reg=$(free_port); dir=$(free_port); prx=$(free_port); n1=$(free_port); n2=$(free_port)
export DSF__RUNTIME__THREADS=1 DSF__ADMIN__LISTEN='' DSF__CLUSTER__SECRET=bench-secret \
  RUST_LOG=warn
balancer() { # [--upgrade]
  DSF__RUNTIME__UPGRADE_SOCKET="$tmp/lb.sock" "$dsf" balancer --registration "127.0.0.1:$reg" \
    --directory "127.0.0.1:$dir" --proxy "127.0.0.1:$prx" "$@" >>"$tmp/balancer.out" 2>>"$tmp/balancer.err" &
}
node() { # id port [--upgrade]
  DSF__RUNTIME__UPGRADE_SOCKET="$tmp/$1.sock" "$dsf" node --id "$1" --listen "127.0.0.1:$2" \
    --register "127.0.0.1:$reg" --data "$tmp/$1" "${@:3}" >>"$tmp/$1.out" 2>>"$tmp/$1.err" &
}
wait_nodes() { # until both nodes are healthy
  for _ in $(seq 100); do
    n=$("$dsf" client --node "127.0.0.1:$dir" call lb.nodes 2>/dev/null | grep -o '"healthy"' | wc -l || true)
    [ "$n" = 2 ] && return
    sleep 0.1
  done
  echo "nodes did not register" >&2; tail -n 5 "$tmp"/*.err >&2; exit 1
}
bench() { # label: one window of load through the proxy, JSON on stdout
  "$dsf" bench --target "127.0.0.1:$prx" --op sys.echo --conns "${shape%x*}" \
    --depth "${shape#*x}" --duration "${secs}s" --warmup 500ms --json --label "$1"
}
balancer; node n1 "$n1"; node n2 "$n2"; wait_nodes

row() { # label json
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.loads(sys.argv[2])
print(f"| {sys.argv[1]} | {r['rps']:.0f} | {r['p50_us']} | {r['p99_us']} | {r['max_us']} | "
      f"{r['errors']} | {r['lost']} | {r['refused_conns']} | {r['goaways']} |")
PY
}
echo "| window ($shape, ${secs} s each) | req/s | p50 µs | p99 µs | max µs | errors | lost | refused | goaways |"
echo "|---|---|---|---|---|---|---|---|---|"
row "steady" "$(bench steady)"
(sleep "$(python3 -c "print(0.5 + $secs / 2)")"; balancer --upgrade) &
row "balancer upgraded mid-window" "$(bench balancer-upgrade)"
wait_nodes
(sleep "$(python3 -c "print(0.5 + $secs / 2)")"; node n1 "$n1" --upgrade) &
row "node upgraded mid-window" "$(bench node-upgrade)"
wait_nodes
row "steady again" "$(bench steady-after)"

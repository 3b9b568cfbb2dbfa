#!/usr/bin/env bash
# Node vs raw baseline, side by side in one run with the same load tool (dsf bench),
# and resident memory per idle connection. Loopback only, bounded in time.
# Usage: benches/node.sh [seconds-per-run]   (writes a Markdown table to stdout)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}
cargo build --release --bins --benches -q
dsf=target/release/dsf
raw=$(find target/release/deps -maxdepth 1 -name 'raw_echo-*' ! -name '*.d' -printf '%T@ %p\n' |
  sort -rn | head -n1 | cut -d' ' -f2-)
ulimit -n 20000 || true
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT

# Servers get one loop thread each, the load generator one thread: two cores in all.
"$raw" 127.0.0.1:7190 1 >"$tmp/raw.out" &
DSF__RUNTIME__THREADS=1 DSF__LIMITS__MAX_CONNECTIONS=20000 RUST_LOG=warn \
  "$dsf" node --listen 127.0.0.1:7191 --admin "" >"$tmp/node.out" &
node_pid=$!
sleep 1

run() { # label target conns depth
  "$dsf" bench --label "$1" --target "$2" --op sys.echo --body '{"msg":"hello"}' \
    --conns "$3" --depth "$4" --duration "${secs}s" --warmup 1s --threads 1 --json
}
echo "| server | conns | depth | req/s | p50 µs | p99 µs | node/raw |"
echo "|---|---|---|---|---|---|---|"
for depth in 16 1; do
  r=$(run raw 127.0.0.1:7190 64 $depth)
  n=$(run node 127.0.0.1:7191 64 $depth)
  python3 - "$r" "$n" <<'PY'
import json, sys
r, n = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for x in (r, n):
    ratio = "" if x is r else f"{n['rps'] / r['rps']:.2f}"
    print(f"| {x['label']} | {x['conns']} | {x['depth']} | {x['rps']:.0f} | {x['p50_us']} | {x['p99_us']} | {ratio} |")
PY
done
echo
echo "Idle connections (node, 1 loop thread):"
python3 benches/idle_conns.py 127.0.0.1:7191 "$node_pid" 10000
kill "$node_pid"

echo
echo "Accept strategy (node with 2 loop threads, 64 conns, depth 16):"
echo "| runtime.reuse_port | req/s | p50 µs | p99 µs |"
echo "|---|---|---|---|"
port=7192
for reuse in true false; do
  DSF__RUNTIME__THREADS=2 DSF__RUNTIME__REUSE_PORT=$reuse RUST_LOG=warn \
    "$dsf" node --listen 127.0.0.1:$port --admin "" >/dev/null &
  pid=$!
  sleep 1
  r=$(run "reuse_port=$reuse" 127.0.0.1:$port 64 16)
  python3 - "$r" "$reuse" <<'PY'
import json, sys
x = json.loads(sys.argv[1])
print(f"| {sys.argv[2]} | {x['rps']:.0f} | {x['p50_us']} | {x['p99_us']} |")
PY
  kill $pid
  port=$((port + 1))
done

echo
echo "TLS node vs plain node (1 loop thread each, 64 conns, TLS 1.3, ECDSA P-256, certificates from dsf cert):"
"$dsf" cert ca --out "$tmp/pki" >/dev/null
"$dsf" cert issue --ca "$tmp/pki" --name node --san 127.0.0.1 --out "$tmp/pki" >/dev/null
DSF__RUNTIME__THREADS=1 DSF__LIMITS__MAX_CONNECTIONS=20000 RUST_LOG=warn \
  "$dsf" node --listen 127.0.0.1:7191 --admin "" >/dev/null &
plain_pid=$!
DSF__RUNTIME__THREADS=1 DSF__LIMITS__MAX_CONNECTIONS=20000 RUST_LOG=warn \
  "$dsf" node --listen 127.0.0.1:7195 --admin "" \
  --tls-cert "$tmp/pki/node.pem" --tls-key "$tmp/pki/node.key" >/dev/null &
tls_pid=$!
sleep 1
echo "| server | depth | req/s | p50 µs | p99 µs | tls/plain |"
echo "|---|---|---|---|---|---|"
for depth in 16 1; do
  p=$(run plain 127.0.0.1:7191 64 $depth)
  t=$("$dsf" bench --label tls --target 127.0.0.1:7195 --tls-ca "$tmp/pki/ca.pem" \
    --op sys.echo --body '{"msg":"hello"}' --conns 64 --depth $depth \
    --duration "${secs}s" --warmup 1s --threads 1 --json)
  python3 - "$p" "$t" <<'PY'
import json, sys
p, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for x in (p, t):
    ratio = "" if x is p else f"{t['rps'] / p['rps']:.2f}"
    print(f"| {x['label']} | {x['depth']} | {x['rps']:.0f} | {x['p50_us']} | {x['p99_us']} | {ratio} |")
PY
done
kill "$plain_pid" "$tls_pid"

#!/usr/bin/env bash
# TLS benchmarks in one run, with the same load tools for both sides: DSF's proxy
# terminating TLS vs HAProxy terminating TLS (`ssl crt`) in front of the same plain
# node (dsf bench: pipelined and unpipelined req/s, latency, and the proxy's CPU per
# request), then new-connection handshakes per second, full and resumed
# (`openssl s_time`), with the server's CPU per handshake.
# Loopback only, bounded in time. Installs haproxy with apt-get if it is missing.
# Usage: benches/tls.sh [seconds-per-run]   (writes Markdown to stdout)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}
# shellcheck source=benches/lib.sh
. benches/lib.sh
need haproxy haproxy
cargo build --release --bins -q
dsf=target/release/dsf
ulimit -n 20000 || true
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT

reg=$(free_port); dir=$(free_port); prx=$(free_port); hap=$(free_port); node=$(free_port)

# Certificates from dsf cert (ECDSA P-256), the same files for both proxies.
"$dsf" cert ca --out "$tmp/pki" >/dev/null
"$dsf" cert issue --ca "$tmp/pki" --name proxy --san 127.0.0.1 --out "$tmp/pki" >/dev/null
cat "$tmp/pki/proxy.pem" "$tmp/pki/proxy.key" >"$tmp/pki/haproxy.pem"
ca="$tmp/pki/ca.pem"

# Every server gets one loop thread (HAProxy too: nbthread 1), the load generator one.
export DSF__RUNTIME__THREADS=1 DSF__LIMITS__MAX_CONNECTIONS=20000 DSF__ADMIN__LISTEN='' \
  DSF__CLUSTER__SECRET=bench-secret RUST_LOG=error
# The balancer terminates TLS on all its ports; its pooled connections to the node are
# plain (no tls.ca), as HAProxy's are. The node registers over TLS.
"$dsf" balancer --registration "127.0.0.1:$reg" --directory "127.0.0.1:$dir" \
  --proxy "127.0.0.1:$prx" --tls-cert "$tmp/pki/proxy.pem" --tls-key "$tmp/pki/proxy.key" \
  >"$tmp/balancer.out" 2>"$tmp/balancer.err" &
lb_pid=$!
"$dsf" node --id bench-node --listen "127.0.0.1:$node" --register "127.0.0.1:$reg" \
  --tls-ca "$ca" --data "$tmp/data" >"$tmp/node.out" 2>"$tmp/node.err" &
haproxy_config "$tmp/haproxy.cfg" "$hap" "127.0.0.1:$node" "ssl crt $tmp/pki/haproxy.pem" \
  "ssl-default-bind-options ssl-min-ver TLSv1.2"
haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.out" 2>&1 &
hap_pid=$!
for port in "$prx" "$hap"; do
  for i in $(seq 101); do
    "$dsf" client --proxy "127.0.0.1:$port" --tls-ca "$ca" call sys.ping >/dev/null 2>&1 && break
    if [ "$i" = 101 ]; then
      echo "nothing answers on 127.0.0.1:$port" >&2
      cat "$tmp"/*.err "$tmp/haproxy.out" >&2
      exit 1
    fi
    sleep 0.1
  done
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user + system CPU, 1/100 s
hz=$(getconf CLK_TCK)
run() { # label target conns depth pid: one JSON report with cpu_us_per_req added
  local before after r
  before=$(ticks "$5")
  r=$("$dsf" bench --label "$1" --target "$2" --tls-ca "$ca" --op sys.echo \
    --body '{"msg":"hello"}' --conns "$3" --depth "$4" --duration "${secs}s" \
    --warmup 1s --threads 1 --json)
  after=$(ticks "$5")
  python3 - "$r" "$before" "$after" "$hz" "$secs" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); before, after, hz, secs = map(float, sys.argv[2:])
# CPU is counted over the warm-up too: divide by the requests of warm-up + run.
r["cpu_us_per_req"] = (after - before) / hz * 1e6 / max(r["rps"] * (secs + 1), 1)
print(json.dumps(r))
PY
}
echo "### TLS proxy vs HAProxy terminating TLS (sys.echo, ${secs} s per run, one plain node)"
echo
echo "| proxy | conns | depth | req/s | p50 µs | p99 µs | errors | proxy CPU µs/req | vs haproxy |"
echo "|---|---|---|---|---|---|---|---|---|"
for shape in 64x16 64x1; do
  set -- ${shape/x/ }
  d=$(run "dsf proxy (TLS)" "127.0.0.1:$prx" "$1" "$2" "$lb_pid")
  h=$(run "haproxy ssl" "127.0.0.1:$hap" "$1" "$2" "$hap_pid")
  python3 - "$d" "$h" <<'PY'
import json, sys
d, h = (json.loads(a) for a in sys.argv[1:])
for r in (d, h):
    ratio = f"{r['rps'] / h['rps']:.2f}" if r is d else ""
    print(f"| {r['label']} | {r['conns']} | {r['depth']} | {r['rps']:.0f} | {r['p50_us']} | "
          f"{r['p99_us']} | {r['errors']} | {r['cpu_us_per_req']:.1f} | {ratio} |")
PY
done

echo
echo "### New connections: TLS handshakes per second (\`openssl s_time\`, 5 s each)"
echo
echo "| server | handshake | conns/s | server CPU µs/handshake |"
echo "|---|---|---|---|"
handshakes() { # label port pid mode(new|reuse) [extra s_time flags]
  local before after t0 t1 out
  before=$(ticks "$3"); t0=$(date +%s.%N)
  out=$(openssl s_time -connect "127.0.0.1:$2" -CAfile "$ca" "-$4" -time 5 "${@:5}" 2>/dev/null |
    grep 'connections in .* real seconds' | head -n1)
  t1=$(date +%s.%N); after=$(ticks "$3")
  python3 - "$1" "$4 ${*:5}" "$out" "$t0" "$t1" "$before" "$after" "$hz" <<'PY'
import sys
label, mode, out = sys.argv[1:4]
t0, t1, before, after, hz = map(float, sys.argv[4:])
n = int(out.split()[0]) if out else 0
print(f"| {label} | {mode.strip()} | {n / (t1 - t0):.0f} | {(after - before) / hz * 1e6 / max(n, 1):.0f} |")
PY
}
handshakes "dsf proxy" "$prx" "$lb_pid" new -tls1_3
handshakes "haproxy" "$hap" "$hap_pid" new -tls1_3
handshakes "dsf proxy" "$prx" "$lb_pid" new -tls1_2
handshakes "haproxy" "$hap" "$hap_pid" new -tls1_2
handshakes "dsf proxy" "$prx" "$lb_pid" reuse -tls1_2
handshakes "haproxy" "$hap" "$hap_pid" reuse -tls1_2

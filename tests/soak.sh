#!/usr/bin/env bash
# Soak: a balancer and three nodes as separate processes (embedded stores, as `dsf up`
# runs them), mixed traffic with connection churn for SOAK_SECONDS (1800 by default),
# RSS and open descriptors of every process sampled every 10 s into a CSV, then a
# check that both stay flat: for each process the mean of the last third of the run
# may exceed the mean of the middle third by at most 10 % (descriptors: 10 % or 4,
# whichever is larger, since a sample may catch a few connections of the load open).
# A plot goes to SOAK_PLOT.png (or .svg without matplotlib).
#
# Runs only when asked: DSF_HEAVY=1 tests/soak.sh, or tests/soak.sh --soak.
#
#   SOAK_SECONDS   length of the run (default 1800)
#   SOAK_OUT       where the CSV, logs and summary go (default target/soak)
#   SOAK_PLOT      the plot, without extension (default SOAK_OUT/soak; the one in
#                  TESTING.md was made with SOAK_PLOT=docs/img/soak)
#   DSF_BIN        the binary (default: cargo build --release, target/release/dsf)
set -euo pipefail

if [ "${DSF_HEAVY:-}" != 1 ] && [ "${1:-}" != --soak ]; then
  echo "soak: skipped (set DSF_HEAVY=1 or pass --soak)"
  exit 0
fi

root=$(cd "$(dirname "$0")/.." && pwd)
secs=${SOAK_SECONDS:-1800}
out=${SOAK_OUT:-$root/target/soak}
plot=${SOAK_PLOT:-$out/soak}
if [ -z "${DSF_BIN:-}" ]; then
  (cd "$root" && cargo build --release --bin dsf >&2)
  DSF_BIN=$root/target/release/dsf
fi
bin=$DSF_BIN

rm -rf "$out"
mkdir -p "$out/data"
pids=()
step() { echo "soak: $*" >&2; }
cleanup() {
  set +e
  local p
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null
  done
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_line() { # FILE PATTERN: waits up to 30 s for a line matching PATTERN
  local i
  for i in $(seq 300); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "soak: FAIL: no '$2' in $1" >&2
  cat "$1" >&2
  exit 1
}

reg=127.0.0.1:$(free_port)
dir=127.0.0.1:$(free_port)
proxy=127.0.0.1:$(free_port)
export DSF__CLUSTER__SECRET=soak-$$-$RANDOM$RANDOM
export DSF__ADMIN__LISTEN=
export DSF__LOG__LEVEL=warn

step "balancer on $reg / $dir / $proxy"
"$bin" balancer --registration "$reg" --directory "$dir" --proxy "$proxy" \
  >"$out/balancer.out" 2>"$out/balancer.log" &
pids+=($!)
procs="balancer:$!"
wait_line "$out/balancer.out" ready
for n in 1 2 3; do
  "$bin" node --id "n$n" --listen 127.0.0.1:0 --register "$reg" --data "$out/data" \
    --admin "" >"$out/n$n.out" 2>"$out/n$n.log" &
  pids+=($!)
  procs="$procs n$n:$!"
  wait_line "$out/n$n.out" "listening on"
done

call() { "$bin" client --proxy "$proxy" call "$@"; }
for i in $(seq 100); do
  call sys.ping >/dev/null 2>&1 && break
  sleep 0.1
done
creds='{"name":"soak","password":"soak-password-1"}'
call user.register "$creds" >/dev/null
token=$(call user.login "$creds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["body"]["token"])')

# Short `dsf bench` runs of each operation in turn: every run opens and closes its
# connections.
bench_loop() {
  local until=$1 i=0
  local ops=(
    'sys.echo|{"k":"{key}"}|8|4'
    'blacklist.query|{"id_card":"S-{key}"}|8|2'
    'collector.report|{"id_card":"S-{key}","name":"Soak","source":"soak"}|2|1'
    'blacklist.insert|{"id_card":"S-{key}","name":"Soak {key}"}|2|1'
    'blacklist.update|{"id_card":"S-{key}","name":"Renamed {key}"}|2|1'
    'blacklist.search|{"name_prefix":"Soak 1","limit":20}|2|1'
  )
  while [ "$(date +%s)" -lt "$until" ]; do
    IFS='|' read -r op body conns depth <<<"${ops[$((i % ${#ops[@]}))]}"
    "$bin" bench --target "$proxy" --op "$op" --body "$body" --keys 20000 \
      --token "$token" --conns "$conns" --depth "$depth" --duration 4s --warmup 0s \
      --json --label soak >>"$out/bench.jsonl" 2>>"$out/bench.log" || true
    i=$((i + 1))
    sleep 1
  done
}

step "load for $secs s; processes: $procs"
start=$(date +%s)
bench_loop $((start + secs)) &
pids+=($!)

python3 - "$secs" "$proxy" "$dir" "$out" "$plot" "$procs" <<'EOF'
"""Connection churn, sampling, the flatness check and the plot."""
import csv, json, os, random, socket, struct, sys, threading, time

secs, proxy, directory, out, plot, procs = (
    int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6])
procs = [(p.split(":")[0], int(p.split(":")[1])) for p in procs.split()]
hostport = lambda a: (a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1]))
end = time.time() + secs
churn = {"connections": 0, "failed": 0, "logins": 0}
churn_errors = {}  # what the failed churn connections met, by kind


def frame(obj):
    b = json.dumps(obj).encode()
    return struct.pack(">I", len(b)) + b


def recv(s):
    head = b""
    while len(head) < 4:
        c = s.recv(4 - len(head))
        if not c:
            raise EOFError
        head += c
    n = struct.unpack(">I", head)[0]
    body = b""
    while len(body) < n:
        c = s.recv(n - len(body))
        if not c:
            raise EOFError
        body += c
    return json.loads(body)


def rpc(addr, op, body, token=None, linger0=False):
    s = socket.create_connection(hostport(addr), timeout=10)
    try:
        req = {"id": 1, "type": op, "body": body}
        if token:
            req["token"] = token
        s.sendall(frame(req))
        r = recv(s)
        if linger0:  # close with a reset instead of a FIN
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return r
    finally:
        s.close()


def churn_loop():
    """About 40 connect-ask-close cycles a second, a login/logout every few seconds,
    and now and then a client that goes away without reading its answer."""
    rng = random.Random(7)
    creds = {"name": "soak", "password": "soak-password-1"}
    n = 0
    while time.time() < end:
        n += 1
        try:
            if n % 100 == 0:
                r = rpc(proxy, "user.login", creds)
                tok = r["body"]["token"]
                rpc(proxy, "blacklist.query", {"id_card": "S-1"}, tok)
                if rng.random() < 0.5:
                    rpc(proxy, "user.logout", {}, tok)
                churn["logins"] += 1
            elif n % 10 == 0:
                s = socket.create_connection(hostport(proxy), timeout=10)
                s.sendall(frame({"id": 1, "type": "sys.echo", "body": {"x": "y" * 1000}}))
                s.close()  # never reads the answer
            elif n % 3 == 0:
                rpc(directory, "lb.assign", {"key": f"k{n}"})
            else:
                rpc(proxy, "sys.ping", {}, linger0=(n % 7 == 0))
            churn["connections"] += 1
        except Exception as e:
            churn["failed"] += 1
            kind = f"{type(e).__name__}: {e}"[:80]
            churn_errors[kind] = churn_errors.get(kind, 0) + 1
        time.sleep(0.025)


def sample(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return None


threading.Thread(target=churn_loop, daemon=True).start()
rows = []
t0 = time.time()
with open(os.path.join(out, "soak.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["t_s", "process", "pid", "rss_kib", "fds"])
    next_at = t0
    while True:
        now = time.time()
        for name, pid in procs:
            s = sample(pid)
            if s is None:
                sys.exit(f"soak: FAIL: {name} (pid {pid}) is gone")
            row = (round(now - t0, 1), name, pid, s[0], s[1])
            rows.append(row)
            w.writerow(row)
        f.flush()
        if now >= t0 + secs:
            break
        next_at += 10
        time.sleep(max(0, min(next_at, t0 + secs) - time.time()))

# Totals of the load.
ok = errors = runs = 0
codes = {}
try:
    with open(os.path.join(out, "bench.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            runs += 1
            ok += round(r["rps"] * 4)
            errors += r["errors"]
            for k, v in r["error_codes"].items():
                codes[k] = codes.get(k, 0) + v
except FileNotFoundError:
    pass

lines = [f"soak: {secs} s, {len(rows) // len(procs)} samples per process; "
         f"{runs} bench runs, {ok} ok responses, {errors} error responses {codes}; "
         f"churn: {churn['connections']} connections ({churn['failed']} failed), "
         f"{churn['logins']} logins"
         + (f"; churn failures: {churn_errors}" if churn_errors else "")]
failed = []
for name, _ in procs:
    mine = [r for r in rows if r[1] == name]
    third = len(mine) // 3
    mid, last = mine[third:2 * third], mine[2 * third:]
    for col, label, unit in ((3, "rss", "KiB"), (4, "fds", "")):
        m = sum(r[col] for r in mid) / max(1, len(mid))
        l = sum(r[col] for r in last) / max(1, len(last))
        first, peak = mine[0][col], max(r[col] for r in mine)
        limit = m * 1.10 if col == 3 else max(m * 1.10, m + 4)
        verdict = "flat" if l <= limit else "GROWING"
        if verdict != "flat":
            failed.append(f"{name} {label}")
        lines.append(f"  {name:<8} {label}: start {first}{unit}, middle-third mean {m:.0f}{unit}, "
                     f"last-third mean {l:.0f}{unit} ({(l / m - 1) * 100 if m else 0:+.1f} %), "
                     f"peak {peak}{unit}: {verdict}")
summary = "\n".join(lines)
print(summary)
with open(os.path.join(out, "summary.txt"), "w") as f:
    f.write(summary + "\n")

# The plot: matplotlib if it is there, else an SVG drawn here.
series = {name: [(r[0], r[3] / 1024, r[4]) for r in rows if r[1] == name] for name, _ in procs}
colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
title = f"DSF soak: {secs // 60} min of mixed traffic with connection churn"
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for (name, pts), c in zip(series.items(), colors):
        a.plot([p[0] / 60 for p in pts], [p[1] for p in pts], label=name, color=c)
        b.plot([p[0] / 60 for p in pts], [p[2] for p in pts], label=name, color=c)
    a.set_ylabel("RSS (MiB)")
    b.set_ylabel("open fds")
    b.set_xlabel("minutes")
    a.set_ylim(bottom=0)
    b.set_ylim(bottom=0)
    a.legend(loc="lower right", ncol=4)
    a.set_title(title)
    fig.tight_layout()
    path = plot + ".png"
    fig.savefig(path, dpi=100)
except ImportError:
    W, H, pad = 900, 560, 60
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
             f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    tmax = max(r[0] for r in rows) or 1
    for k, (label, idx) in enumerate((("RSS (MiB)", 1), ("open fds", 2))):
        top, h = 40 + k * 260, 200
        vmax = max(p[idx] for pts in series.values() for p in pts) * 1.1 or 1
        parts.append(f'<rect x="{pad}" y="{top}" width="{W - 2 * pad}" height="{h}" fill="none" stroke="#999"/>')
        parts.append(f'<text x="10" y="{top + h / 2}">{label}</text>')
        parts.append(f'<text x="{pad - 5}" y="{top + 10}" text-anchor="end">{vmax:.0f}</text>')
        parts.append(f'<text x="{pad - 5}" y="{top + h}" text-anchor="end">0</text>')
        for (name, pts), c in zip(series.items(), colors):
            xy = " ".join(f"{pad + p[0] / tmax * (W - 2 * pad):.1f},{top + h - p[idx] / vmax * h:.1f}" for p in pts)
            parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{xy}"/>')
        parts.append(f'<text x="{W - pad}" y="{top + h + 15}" text-anchor="end">{tmax / 60:.0f} min</text>')
    for i, ((name, _), c) in enumerate(zip(series.items(), colors)):
        parts.append(f'<text x="{pad + 10 + i * 90}" y="{H - 10}" fill="{c}">{name}</text>')
    parts.append("</svg>")
    path = plot + ".svg"
    with open(path, "w") as f:
        f.write("\n".join(parts))
print(f"soak: CSV {os.path.join(out, 'soak.csv')}, plot {path}")
if failed:
    sys.exit(f"soak: FAIL: growing: {', '.join(failed)}")
print("soak: PASS: memory and descriptors flat")
EOF

# shellcheck shell=bash disable=SC2034 # sets globals (REDIS, MYSQL, …) for the caller
# Shared helpers of the benchmark scripts (sourced, not run): free ports, CPU time of
# processes, private MariaDB and Redis servers, nodes started on free ports.
# The caller sets WORK (a temporary folder) and DSF (the dsf binary) and keeps PIDS
# (processes to stop at exit: see bench_cleanup).

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Installs the Debian packages given when the command (first argument) is missing.
need() { # command package…
  local cmd=$1
  shift
  command -v "$cmd" >/dev/null && return 0
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# User + system CPU time of the given processes, in clock ticks (see CLK_TCK).
cpu_ticks() { # pid…
  local total=0 pid stat rest
  for pid in "$@"; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    rest=${stat##*) }
    # shellcheck disable=SC2086 # split the fields on purpose
    set -- $rest
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)
export CLK_TCK

# Stops what was started (PIDS) and removes WORK.
bench_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}

# A private Redis on a free port; sets REDIS_PORT, REDIS_PID and REDIS (its URL).
start_redis() {
  need redis-server redis-server
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK" >"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  REDIS=redis://127.0.0.1:$REDIS_PORT
  for _ in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "redis did not start on 127.0.0.1:$REDIS_PORT" >&2
  exit 1
}

# A private MariaDB on a free port with database dsf and user dsf; sets DB_PORT,
# DB_PID, MYSQL (its URL) and DB_PASSWORD_FILE.
start_mariadb() {
  need mariadbd mariadb-server
  DB_PORT=$(free_port)
  mariadb-install-db --no-defaults --auth-root-authentication-method=normal --skip-test-db \
    --user=root --datadir="$WORK/db" >/dev/null
  mariadbd --no-defaults --datadir="$WORK/db" --port="$DB_PORT" --bind-address=127.0.0.1 \
    --socket="$WORK/db.sock" --user=root --skip-log-bin --skip-name-resolve \
    --max-connections=500 >"$WORK/mariadb.log" 2>&1 &
  DB_PID=$!
  PIDS+=("$DB_PID")
  for _ in $(seq 150); do
    mariadb-admin --no-defaults --socket="$WORK/db.sock" -uroot ping >/dev/null 2>&1 && break
    sleep 0.2
  done
  mariadb --no-defaults --socket="$WORK/db.sock" -uroot -e "
    CREATE DATABASE dsf;
    CREATE USER 'dsf'@'127.0.0.1' IDENTIFIED BY 'bench-pw';
    GRANT ALL ON dsf.* TO 'dsf'@'127.0.0.1';"
  DB_PASSWORD_FILE=$WORK/db-password
  echo bench-pw >"$DB_PASSWORD_FILE"
  MYSQL=mysql://dsf@127.0.0.1:$DB_PORT/dsf
}

# Starts `BINARY node` on a free port; sets NODE (its address) and NODE_PID.
# start_node NAME BINARY [ENV=VALUE …] -- [dsf node flags …]
start_node() {
  local name=$1 bin=$2
  shift 2
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  env DSF__STORE__PASSWORD_FILE="${DB_PASSWORD_FILE:-}" DSF__LOG__LEVEL=warn \
    DSF__LIMITS__MAX_CONNECTIONS=20000 "${envs[@]}" \
    "$bin" node --listen 127.0.0.1:0 --admin "" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  for _ in $(seq 300); do
    NODE=$(sed -n 's/.* listening on //p' "$WORK/$name.out" 2>/dev/null | head -1)
    [ -n "$NODE" ] && return 0
    sleep 0.1
  done
  echo "node $name did not start:" >&2
  cat "$WORK/$name.log" >&2
  exit 1
}

# Writes an HAProxy configuration to FILE: one loop thread, TCP mode, a frontend on
# 127.0.0.1:PORT (BIND options after the address, e.g. "ssl crt x.pem") forwarding to
# the node at ADDR; GLOBAL is one more line for the global section.
haproxy_config() { # file port addr [bind] [global]
  local file=$1 port=$2 addr=$3 bind=${4:-} global=${5:-}
  {
    printf 'global\n  nbthread 1\n  maxconn 8000\n'
    [ -z "$global" ] || printf '  %s\n' "$global"
    cat <<CFG
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend dsf
  bind 127.0.0.1:$port${bind:+ $bind}
  default_backend nodes
backend nodes
  server bench-node $addr
CFG
  } >"$file"
}

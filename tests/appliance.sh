#!/usr/bin/env bash
# The appliance end to end (only with DSF_HEAVY=1; bounded by DSF_APPLIANCE_TIMEOUT,
# 1800 s by default): the image builds reproducibly, `podman load`s, answers sys.ping
# through the proxy of `dsf up`, stops cleanly on SIGTERM; then compose.yaml (with
# its `ha` profile: two balancers sharing membership through Redis, nginx in front)
# on locally built MariaDB/Redis/nginx images runs register → login →
# blacklist.insert → blacklist.query through a balancer and through nginx, and keeps
# answering through both after a node is killed; then compose.tls.yaml (TLS on every
# connection, nodes registering over mutual TLS, certificates from
# compose/make-certs) answers the same calls through its TLS proxy; then the `etcd`
# profile (three etcd members, two balancers sharing membership through them, nodes
# listing both, nginx in front) shows the registrations under /dsf/ in etcd, answers
# through nginx, keeps every node after one balancer is killed, and fails /readyz
# while etcd has no quorum yet keeps serving. Prints the time of every stage.
#
#   DSF_HEAVY=1 tests/appliance.sh
#   DSF_HEAVY=1 DSF_BIN=target/x86_64-unknown-linux-gnu/release/dsf tests/appliance.sh
#   DSF_APPLIANCE_LOGS=DIR   keep the log of every container there when the test fails
#   DSF_APPLIANCE_LOGS_ALWAYS=1   … and when it passes
set -euo pipefail

if [ "${DSF_HEAVY:-}" != 1 ]; then
  echo "appliance: skipped (set DSF_HEAVY=1)"
  exit 0
fi
if [ -z "${DSF_APPLIANCE_BOUNDED:-}" ]; then
  DSF_APPLIANCE_BOUNDED=1 exec timeout --kill-after=60 "${DSF_APPLIANCE_TIMEOUT:-1800}" "$0" "$@"
fi

root=$(cd "$(dirname "$0")/.." && pwd)
export CONTAINERS_CONF=$root/images/containers.conf
# shellcheck source=SCRIPTDIR/../images/lib/oci.sh
. "$root/images/lib/oci.sh"
cache=${XDG_CACHE_HOME:-$HOME/.cache}/dsf-images
work=$(mktemp -d)
project=dsf-appliance-$$
up_container=$project-up
compose=()

# step MESSAGE: progress, with the seconds since the previous step and since the start.
last=$SECONDS
step() {
  echo "appliance: [+$((SECONDS - last))s, ${SECONDS}s] $*" >&2
  last=$SECONDS
}
fail() {
  echo "appliance: FAIL: $*" >&2
  exit 1
}
cleanup() {
  set +e
  if [ -n "${rootfs_pid:-}" ]; then
    # Its process group (apt and dpkg in the chroot too); its trap unmounts /proc.
    kill -TERM -- "-$rootfs_pid" 2>/dev/null
    wait "$rootfs_pid" 2>/dev/null
  fi
  if [ "${#compose[@]}" -gt 0 ]; then
    if [ -z "${passed:-}" ] || [ -n "${DSF_APPLIANCE_LOGS_ALWAYS:-}" ]; then
      save_logs
      [ -n "${passed:-}" ] || tail -50 "$work/compose.log" >&2
      if [ -n "${DSF_APPLIANCE_LOGS:-}" ]; then
        mkdir -p "$DSF_APPLIANCE_LOGS"
        cp "$work/compose.log" "$DSF_APPLIANCE_LOGS/compose-$project.log"
        echo "appliance: all logs in $DSF_APPLIANCE_LOGS/compose-$project.log" >&2
      fi
    fi
    # `down` only knows the containers of an unscaled project: remove the replicas
    # (dependents first), then the rest, the network and the volume.
    local s
    for s in node node-1 node-2 node-etcd node-etcd-2 nginx nginx-etcd balancer-2 balancer \
      balancer-etcd-1 balancer-etcd-2 etcd-1 etcd-2 etcd-3 redis mariadb; do
      containers_all "$s" | xargs -r podman rm -f -v -t 5 >/dev/null 2>&1
    done
    "${compose[@]}" down -v -t 5 >/dev/null 2>&1
    podman pod rm -f "pod_$project" >/dev/null 2>&1
  fi
  podman rm -f -v -t 5 "$up_container" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
# On a signal (DSF_APPLIANCE_TIMEOUT's included) clean up all the same.
trap 'exit 143' TERM INT HUP

# save_logs: every container's log (each replica, not only the first one that
# `compose logs` shows), oldest line first, in $work/compose.log.
save_logs() {
  local c
  for c in $(podman ps -a --filter "label=com.docker.compose.project=$project" --format '{{.Names}}'); do
    podman logs -t "$c" 2>&1 | sed "s/^/[$c] /"
  done | sort -k2,2 -s >"$work/compose.log"
}
containers_all() { # SERVICE: its containers, running or not
  podman ps -a --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}'
}

# free_port: a port no socket uses, below the kernel's ephemeral range (a port in it
# may be taken by any outgoing connection between this check and podman's bind).
free_port() {
  local p low
  low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null) || low=32768
  while :; do
    p=$(shuf -i "10000-$((low - 1))" -n 1)
    ss -Hatn "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
}

# podman-compose >= 1.1 (profiles, --env-file, exec-form health checks); Debian
# bookworm ships 1.0.3, so a newer one goes into a virtualenv in the cache.
ensure_compose() {
  local v
  v=$(podman-compose version 2>/dev/null | sed -n 's/^podman-compose version //p' | head -1) || true
  if [ -n "$v" ] && [ "$(printf '%s\n1.1.0\n' "$v" | sort -V | head -1)" = 1.1.0 ]; then
    echo podman-compose
    return
  fi
  if [ ! -x "$cache/venv/bin/podman-compose" ]; then
    python3 -m venv "$cache/venv" >&2 2>/dev/null || {
      need pip3 python3-pip
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
      python3 -m venv "$cache/venv" >&2
    }
    "$cache/venv/bin/pip" install -q 'podman-compose>=1.1,<2' >&2
  fi
  echo "$cache/venv/bin/podman-compose"
}

# call ADDR TYPE [BODY] [--token T]: one request through a proxy port; prints the
# response; fails unless ok.
call() {
  local addr=$1
  shift
  timeout 10 "$client" client --proxy "$addr" call "$@"
}
# body_field JSON FIELD: a field of the response body (`dsf client` prints the whole
# response; accept a bare body too).
body_field() { jq -er --arg f "$2" '(.body // .)[$f]' <<<"$1"; }

# What a fresh Debian machine lacks: podman with runc, netavark and aardvark-dns
# (container names resolve on compose networks), catatonit (`init: true`), skopeo,
# debootstrap (images/rootfs), python3-venv (podman-compose).
need jq jq
need podman podman
need runc runc
need skopeo skopeo
need debootstrap debootstrap
need ss iproute2
need_file /usr/lib/podman/netavark netavark
need_file /usr/lib/podman/aardvark-dns aardvark-dns
need_file /usr/libexec/podman/catatonit catatonit
need ip iproute2
need curl curl # /readyz of the etcd stage's balancer, from the host
# What images/build needs, installed now: apt must not run while the rootfs
# images below are being built.
need readelf binutils
need_file /etc/ssl/certs/ca-certificates.crt ca-certificates
step "tools present"

# The MariaDB, Redis, nginx and etcd images (debootstrap and apt: mostly waiting on
# the network) build meanwhile the static binary compiles; waited for in step 3.
setsid "$root/images/rootfs/build" mariadb redis nginx etcd >"$work/rootfs.out" 2>"$work/rootfs.err" &
rootfs_pid=$!

# 1. Reproducible image.
if [ -z "${DSF_BIN:-}" ]; then
  step "building the static dsf and the image"
  d1=$(timeout 1500 "$root/images/build")
  DSF_BIN=$root/target/x86_64-unknown-linux-gnu/release/dsf
else
  d1=$(timeout 300 "$root/images/build")
fi
step "first image: $d1"
export DSF_BIN
d2=$(timeout 300 "$root/images/build")
[ "$d1" = "$d2" ] || fail "two builds gave different digests: $d1 $d2"
step "second image: $d2 (the same digest)"
client=${DSF_CLIENT:-$DSF_BIN}

# 2. podman load, dsf up, sys.ping through the proxy, clean stop.
config_digest=$(jq -r '.config.digest' "$root/images/out/oci/blobs/sha256/$(jq -r '.manifests[0].digest' "$root/images/out/oci/index.json" | cut -d: -f2)")
timeout 120 podman load -q -i "$root/images/out/dsf.tar" >/dev/null
[ "sha256:$(podman image inspect --format '{{.Id}}' dsf:latest)" = "$config_digest" ] ||
  fail "podman's dsf:latest is not the image just built"
step "podman load: dsf:latest is the image just built"
port=$(free_port)
podman run -d --name "$up_container" -p "127.0.0.1:$port:6400" dsf:latest >/dev/null
up_ready() { grep -q ready <<<"$(podman logs "$up_container" 2>&1)"; }
for _ in $(seq 60); do
  up_ready && break
  sleep 1
done
up_ready || fail "dsf up printed no ready line: $(podman logs "$up_container" 2>&1 | tail -5)"
out=$(call "127.0.0.1:$port" sys.ping) || fail "sys.ping through dsf up's proxy: $out"
step "dsf up in a container answers sys.ping: $out"
timeout 60 podman stop -t 20 "$up_container" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "$up_container")
[ "$code" = 0 ] || fail "dsf up exited $code on SIGTERM (want 0)"
podman rm -v "$up_container" >/dev/null
step "dsf up stopped on SIGTERM with exit code 0"

# 3. The cluster from compose.yaml, on MariaDB, Redis and nginx images built here.
step "waiting for the MariaDB, Redis, nginx and etcd images (cached in $cache)"
wait "$rootfs_pid" || {
  cat "$work/rootfs.err" >&2
  fail "images/rootfs/build"
}
rootfs_pid=
mapfile -t refs <"$work/rootfs.out"
[ "${#refs[@]}" = 4 ] || fail "images/rootfs/build printed: ${refs[*]}"
step "images ${refs[*]}"
pc=$(ensure_compose)
port=$(free_port)
ha_port=$(free_port)
cat >"$work/dsf.env" <<ENV
DSF_DB_ROOT_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -dc A-Za-z0-9)
DSF_DB_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -dc A-Za-z0-9)
DSF_CLUSTER_SECRET=$(head -c 18 /dev/urandom | base64 | tr -dc A-Za-z0-9)
DSF_IMAGE=dsf:latest
MARIADB_IMAGE=${refs[0]}
REDIS_IMAGE=${refs[1]}
NGINX_IMAGE=${refs[2]}
ETCD_IMAGE=${refs[3]}
DSF_PROXY_PORT=$port
DSF_HA_PROXY_PORT=$ha_port
ENV
compose=("$pc" -p "$project" -f "$root/compose/compose.yaml" --env-file "$work/dsf.env" --profile ha)
# MariaDB first: its start creates the network's bridge, whose MAC address is then
# pinned before any other container starts (compose/pin-bridge-mac says why).
step "compose up mariadb (proxy on :$port, nginx on :$ha_port)"
timeout 120 "${compose[@]}" up -d mariadb >"$work/up.log" 2>&1 || {
  cat "$work/up.log" >&2
  fail "compose up mariadb"
}
pinned=$("$root/compose/pin-bridge-mac" "${project}_default") || fail "pinning the bridge's MAC address"
step "bridge MAC address pinned: $pinned; compose up with 3 nodes and the ha profile"
timeout 300 "${compose[@]}" up -d --scale node=3 >>"$work/up.log" 2>&1 || {
  cat "$work/up.log" >&2
  fail "compose up"
}
proxy=127.0.0.1:$port
ha=127.0.0.1:$ha_port
step "compose up returned"

containers() { # SERVICE: its running containers
  podman ps --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}'
}
lb_nodes() { # [SERVICE]: lb.nodes from a balancer's directory port, inside its container
  podman exec "$(containers "${1:-balancer}" | head -1)" \
    /bin/dsf client --node 127.0.0.1:6300 call lb.nodes 2>/dev/null
}
node_count() { # [SERVICE]: healthy nodes a balancer knows
  lb_nodes "$@" | jq '[(.body // .).nodes[] | select(.state == "healthy")] | length' 2>/dev/null || echo 0
}
nodes_are() { # OP N [SERVICE]: test(1) of the healthy node count, asked anew at each call
  test "$(node_count "${3:-balancer}")" "$1" "$2"
}
wait_for() { # SECONDS DESCRIPTION COMMAND…
  local t=$1 what=$2
  shift 2
  for _ in $(seq "$t"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  fail "waited ${t}s for $what"
}
# Health checks are not scheduled where systemd is absent: run them by hand.
wait_for 180 "MariaDB to be healthy" podman healthcheck run "$(containers mariadb)"
step "MariaDB healthy"
wait_for 120 "3 nodes to register" nodes_are = 3
step "3 nodes registered: $(lb_nodes | jq -c '[(.body // .).nodes[].addr]'), restarts: $(containers node | xargs podman inspect --format '{{.RestartCount}}' | tr '\n' ' ')"
wait_for 30 "the second balancer to see 3 nodes through Redis" nodes_are = 3 balancer-2
step "the second balancer sees them too"
for c in $(containers balancer) $(containers balancer-2) $(containers node); do
  podman healthcheck run "$c" >/dev/null || fail "health check of $c"
done
step "health checks of both balancers and every node pass"
wait_for 60 "sys.ping through the proxy" call "$proxy" sys.ping
wait_for 30 "sys.ping through nginx" call "$ha" sys.ping

user=u$$
password=appliance-$$-password
call "$proxy" user.register "{\"name\":\"$user\",\"password\":\"$password\"}" >/dev/null ||
  fail "user.register"
out=$(call "$proxy" user.login "{\"name\":\"$user\",\"password\":\"$password\"}") || fail "user.login: $out"
token=$(body_field "$out" token) || fail "user.login gave no token: $out"
out=$(call "$proxy" blacklist.insert '{"id_card":"X-0001","name":"Appliance Test"}' --token "$token") ||
  fail "blacklist.insert: $out"
out=$(call "$proxy" blacklist.query '{"id_card":"X-0001"}' --token "$token") || fail "blacklist.query: $out"
[ "$(body_field "$out" listed)" = true ] || fail "blacklist.query does not see the insert: $out"
step "register → login → insert → query through the balancer: ok"
out=$(call "$ha" blacklist.insert '{"id_card":"X-0002","name":"Appliance Test"}' --token "$token") ||
  fail "blacklist.insert through nginx: $out"
for a in "$ha" "$proxy"; do
  out=$(call "$a" blacklist.query '{"id_card":"X-0002"}' --token "$token") || fail "blacklist.query through $a: $out"
  [ "$(body_field "$out" listed)" = true ] || fail "blacklist.query through $a does not see the insert: $out"
done
step "the same session inserts and queries through nginx and both balancers: ok"

# 4. Kill a node: the balancer drops it and the cluster keeps answering.
victim=$(containers node | sort | sed -n 2p)
podman kill "$victim" >/dev/null
wait_for 30 "the balancer to drop $victim" nodes_are -le 2
wait_for 30 "the second balancer to drop $victim" nodes_are -le 2 balancer-2
for i in $(seq 20); do
  for a in "$proxy" "$ha"; do
    out=$(call "$a" blacklist.query '{"id_card":"X-0001"}' --token "$token") ||
      fail "query $i through $a after killing $victim: $out"
    [ "$(body_field "$out" listed)" = true ] || fail "query $i through $a after killing $victim: $out"
  done
done
step "killed $victim; 20 queries through the balancer and 20 through nginx answered by the remaining nodes"

# 5. compose.tls.yaml: TLS on every connection, nodes registering over mutual TLS,
# certificates from compose/make-certs, chosen in the environment.
save_logs
cp "$work/compose.log" "$work/compose-plain.log"
for s in node nginx balancer-2 balancer redis mariadb; do
  containers_all "$s" | xargs -r podman rm -f -v -t 5 >/dev/null 2>&1
done
"${compose[@]}" down -v -t 5 >/dev/null 2>&1
project=$project-tls
DSF="$client" "$root/compose/make-certs" "$work/tls" >/dev/null || fail "compose/make-certs"
tls_port=$(free_port)
dir_port=$(free_port)
{
  echo "DSF_TLS_DIR=$work/tls"
  echo "DSF_PROXY_PORT=$tls_port"
  echo "DSF_DIRECTORY_PORT=$dir_port"
} >>"$work/dsf.env"
compose=("$pc" -p "$project" -f "$root/compose/compose.tls.yaml" --env-file "$work/dsf.env")
timeout 120 "${compose[@]}" up -d mariadb >"$work/up.log" 2>&1 || {
  cat "$work/up.log" >&2
  fail "compose.tls.yaml up mariadb"
}
"$root/compose/pin-bridge-mac" "${project}_default" >/dev/null || fail "pinning the bridge's MAC address"
timeout 300 "${compose[@]}" up -d >>"$work/up.log" 2>&1 || {
  cat "$work/up.log" >&2
  fail "compose.tls.yaml up"
}
step "compose.tls.yaml up (TLS proxy on :$tls_port)"
tls_call() { # TYPE [BODY] [--token T]: through the TLS proxy, verified against the CA
  timeout 10 "$client" client --proxy "127.0.0.1:$tls_port" --tls-ca "$work/tls/ca.pem" call "$@"
}
tls_nodes() {
  timeout 10 "$client" client --node "127.0.0.1:$dir_port" --tls-ca "$work/tls/ca.pem" call lb.nodes 2>/dev/null |
    jq -c '[(.body // .).nodes[] | select(.state == "healthy") | .node] | sort'
}
wait_for 180 "MariaDB (TLS) to be healthy" podman healthcheck run "$(containers mariadb)"
tls_nodes_are() { [ "$(tls_nodes)" = "$1" ]; } # JSON, asked anew at each call
wait_for 120 "node-1 and node-2 to register over mutual TLS" tls_nodes_are '["node-1","node-2"]'
step "node-1 and node-2 registered over mutual TLS"
for c in $(containers balancer) $(containers node-1) $(containers node-2) $(containers redis); do
  podman healthcheck run "$c" >/dev/null || fail "health check of $c"
done
wait_for 60 "sys.ping through the TLS proxy" tls_call sys.ping
if timeout 10 "$client" client --proxy "127.0.0.1:$tls_port" call sys.ping >/dev/null 2>&1; then
  fail "a plaintext client got an answer from the TLS proxy"
fi
tls_call user.register "{\"name\":\"$user\",\"password\":\"$password\"}" >/dev/null || fail "user.register over TLS"
out=$(tls_call user.login "{\"name\":\"$user\",\"password\":\"$password\"}") || fail "user.login over TLS: $out"
token=$(body_field "$out" token) || fail "user.login over TLS gave no token: $out"
for i in 1 2 3 4; do
  out=$(tls_call blacklist.insert "{\"id_card\":\"T-000$i\",\"name\":\"TLS Test\"}" --token "$token") ||
    fail "blacklist.insert over TLS: $out"
  out=$(tls_call blacklist.query "{\"id_card\":\"T-000$i\"}" --token "$token") || fail "blacklist.query over TLS: $out"
  [ "$(body_field "$out" listed)" = true ] || fail "blacklist.query over TLS does not see the insert: $out"
done
step "TLS: register → login → insert → query through the TLS proxy (MariaDB and Redis over TLS); a plaintext client is refused"

# 6. The `etcd` profile (PROTOCOL §10): membership in a three-member etcd cluster,
# two balancers, nodes listing both (node-etcd prefers balancer-etcd-1, node-etcd-2
# balancer-etcd-2), clients through nginx-etcd.
save_logs
cp "$work/compose.log" "$work/compose-tls.log"
for s in node-1 node-2 balancer redis mariadb; do
  containers_all "$s" | xargs -r podman rm -f -v -t 5 >/dev/null 2>&1
done
"${compose[@]}" down -v -t 5 >/dev/null 2>&1
printf '[balancer]\netcd = ["http://127.0.0.1:2379"]\n' >"$work/etcd-check.toml"
"$client" check-config "$work/etcd-check.toml" >"$work/etcd-check.out" 2>&1 ||
  fail "this dsf does not take balancer.etcd (PROTOCOL §10): $(tail -3 "$work/etcd-check.out")"
project=${project%-tls}-etcd
etcd_port=$(free_port)
echo "DSF_ETCD_PROXY_PORT=$etcd_port" >>"$work/dsf.env"
compose=("$pc" -p "$project" -f "$root/compose/compose.yaml" --env-file "$work/dsf.env" --profile etcd)
etcd_proxy=127.0.0.1:$etcd_port
timeout 120 "${compose[@]}" up -d mariadb >"$work/up.log" 2>&1 || {
  cat "$work/up.log" >&2
  fail "etcd profile: compose up mariadb"
}
"$root/compose/pin-bridge-mac" "${project}_default" >/dev/null || fail "pinning the bridge's MAC address"
# The balancers (and etcd) first, so that each node registers with the balancer it
# lists first.
timeout 300 "${compose[@]}" up -d balancer-etcd-1 balancer-etcd-2 redis >>"$work/up.log" 2>&1 || {
  cat "$work/up.log" >&2
  fail "etcd profile: compose up of etcd and the balancers"
}
for m in etcd-1 etcd-2 etcd-3; do
  wait_for 60 "$m to be healthy" podman healthcheck run "$(containers "$m")"
done
etcdctl_in() { # MEMBER ARG…: etcdctl inside a member's container, against that member
  local m=$1
  shift
  timeout 10 podman exec "$(containers "$m")" etcdctl --endpoints=http://127.0.0.1:2379 "$@"
}
etcdctl_in etcd-1 endpoint health --cluster >/dev/null || fail "etcd cluster health: $(etcdctl_in etcd-1 endpoint health --cluster 2>&1)"
step "etcd profile: three etcd members healthy, one cluster"
for b in balancer-etcd-1 balancer-etcd-2; do
  wait_for 60 "$b to answer its health check" podman healthcheck run "$(containers "$b")"
done
timeout 300 "${compose[@]}" up -d --scale node-etcd=3 nginx-etcd node-etcd node-etcd-2 >>"$work/up.log" 2>&1 || {
  cat "$work/up.log" >&2
  fail "etcd profile: compose up of nginx-etcd and the nodes"
}
wait_for 180 "MariaDB (etcd profile) to be healthy" podman healthcheck run "$(containers mariadb)"
wait_for 120 "4 nodes at balancer-etcd-1" nodes_are = 4 balancer-etcd-1
wait_for 30 "4 nodes at balancer-etcd-2" nodes_are = 4 balancer-etcd-2
step "etcd profile: both balancers list the 4 nodes"

# registrations: the §10 records under /dsf/nodes/, one JSON object a line.
registrations() {
  etcdctl_in etcd-2 get --prefix /dsf/ -w json |
    jq -c '[.kvs[]? | {key: (.key | @base64d), value: (.value | @base64d | fromjson), lease}]'
}
regs=$(registrations) || fail "etcdctl get --prefix /dsf/: $regs"
jq -e 'length == 4' <<<"$regs" >/dev/null || fail "etcd holds $(jq length <<<"$regs") registrations, not 4: $regs"
jq -e 'all(.[]; .key == "/dsf/nodes/\(.value.service)/\(.value.node)"
  and (.value | has("node") and has("service") and has("addr") and has("weight") and has("ops") and has("state") and has("balancer"))
  and .lease != null and .lease != 0)' <<<"$regs" >/dev/null ||
  fail "the registrations in etcd are not PROTOCOL §10's records on a lease: $regs"
holders=$(jq -c '[.[].value.balancer] | unique' <<<"$regs")
[ "$(jq length <<<"$holders")" = 2 ] || fail "the 4 registrations are not held by both balancers: $holders"
step "etcdctl get --prefix /dsf/: 4 registrations on leases, held by $holders"
wait_for 60 "sys.ping through nginx-etcd" call "$etcd_proxy" sys.ping
call "$etcd_proxy" user.register "{\"name\":\"$user\",\"password\":\"$password\"}" >/dev/null ||
  fail "user.register through nginx-etcd"
out=$(call "$etcd_proxy" user.login "{\"name\":\"$user\",\"password\":\"$password\"}") || fail "user.login through nginx-etcd: $out"
token=$(body_field "$out" token) || fail "user.login through nginx-etcd gave no token: $out"
out=$(call "$etcd_proxy" blacklist.insert '{"id_card":"E-0001","name":"Etcd Test"}' --token "$token") ||
  fail "blacklist.insert through nginx-etcd: $out"
for i in $(seq 10); do
  out=$(call "$etcd_proxy" blacklist.query '{"id_card":"E-0001"}' --token "$token") || fail "query $i through nginx-etcd: $out"
  [ "$(body_field "$out" listed)" = true ] || fail "query $i through nginx-etcd does not see the insert: $out"
done
step "etcd profile: register → login → insert → 10 queries through nginx-etcd: ok"

# Kill balancer-etcd-1 (SIGKILL): its nodes register with balancer-etcd-2, the next
# one they list, which writes their keys under its own lease; the killed one's lease
# expires. (`restart: on-failure` starts it again, holding nothing: the nodes stay
# where they are.)
victim=$(containers balancer-etcd-1)
podman kill -s KILL "$victim" >/dev/null
regs_held_by_one() {
  regs=$(registrations) && jq -e 'length == 4 and ([.[].value.balancer] | unique | length) == 1' <<<"$regs" >/dev/null
}
wait_for 30 "the 4 registrations to be held by balancer-etcd-2 alone" regs_held_by_one
wait_for 15 "balancer-etcd-2 to list 4 healthy nodes" nodes_are = 4 balancer-etcd-2
for i in $(seq 20); do
  out=$(call "$etcd_proxy" blacklist.query '{"id_card":"E-0001"}' --token "$token") ||
    fail "query $i through nginx-etcd after killing balancer-etcd-1: $out"
  [ "$(body_field "$out" listed)" = true ] || fail "query $i after killing balancer-etcd-1: $out"
done
step "killed balancer-etcd-1: the 4 registrations moved to $(jq -c '[.[].value.balancer] | unique' <<<"$regs"), 20 queries answered"

# Two of three members stopped: no quorum. /readyz of the remaining balancer fails,
# and it keeps serving from its last view.
b2=$(containers balancer-etcd-2)
b2_ip=$(podman inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$b2")
readyz() { curl -s -o /dev/null -m 5 -w '%{http_code}' "http://$b2_ip:9100/readyz" || true; }
readyz_is() { [ "$(readyz)" = "$1" ]; } # CODE, asked anew at each call
[ "$(readyz)" = 200 ] || fail "balancer-etcd-2's /readyz answers $(readyz) with etcd whole"
podman stop -t 5 "$(containers etcd-2)" "$(containers etcd-3)" >/dev/null
wait_for 30 "balancer-etcd-2's /readyz to fail without an etcd quorum" readyz_is 503
for i in $(seq 20); do
  out=$(call "$etcd_proxy" blacklist.query '{"id_card":"E-0001"}' --token "$token") ||
    fail "query $i without an etcd quorum: $out"
  [ "$(body_field "$out" listed)" = true ] || fail "query $i without an etcd quorum: $out"
done
step "etcd without quorum: /readyz 503, 20 queries answered from the last view"
podman start "$(containers_all etcd-2)" "$(containers_all etcd-3)" >/dev/null
wait_for 60 "balancer-etcd-2's /readyz to recover" readyz_is 200
wait_for 30 "the 4 registrations back in etcd" regs_held_by_one
step "etcd whole again: /readyz 200, 4 registrations"

passed=1
step "ok (${SECONDS}s in all)"

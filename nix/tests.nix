# `cargo test` with MariaDB, Redis (server and redis-cli, for the Redis Cluster
# tests) and etcd (etcd and etcdctl) on PATH: the whole-system tests start private
# instances on free loopback ports, which the build sandbox allows.
{
  dsf,
  etcd,
  mariadb,
  redis,
}:
dsf.overrideAttrs (old: {
  pname = "dsf-tests";
  doCheck = true;
  nativeCheckInputs = (old.nativeCheckInputs or []) ++ [etcd mariadb redis];
  preCheck = ''
    export HOME=$TMPDIR
  '';
  installPhase = "touch $out";
})

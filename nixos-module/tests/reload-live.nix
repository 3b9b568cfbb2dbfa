# reload.nix with only keys dsf takes on SIGHUP changed.
{lib, ...}: {
  imports = [./reload.nix];
  services.dsf = {
    balancer.algorithm = lib.mkForce "round_robin";
    nodes.instances."1".weight = lib.mkForce 5;
    cache.ttl = "60s";
    settings = {
      log.level = lib.mkForce "debug";
      limits.max_connections = 500;
      balancer.services.kv.algorithm = "p2c";
    };
  };
}

# Live reload: the units read /etc/dsf/NAME.toml, reload with SIGHUP, and carry a
# reload trigger (the file) and a restart trigger (the settings dsf cannot take live).
# reload-live.nix and reload-restart.nix change this configuration.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    balancer.algorithm = "consistent_hash";
    nodes.instances."1" = {
      port = 7001;
      weight = 1;
    };
    settings = {
      log.level = "info";
      limits.request_timeout = "5s";
    };
  };
}

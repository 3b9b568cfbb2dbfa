# Freeform settings over most sections of dsf.example.toml, a secret file named in the
# settings (a runtime path the build-time check must not read) and per-node settings.
{
  services.dsf = {
    enable = true;
    nodes.instances = {
      users = {
        port = 7101;
        ops = ["user." "sys."];
        weight = 2;
        adminPort = 9201;
      };
      blacklist = {
        port = 7102;
        listenAddress = "0.0.0.0";
        advertise = "10.0.0.5:7102";
        ops = ["blacklist." "collector."];
        pool = {
          min = 2;
          max = 8;
        };
        settings.cache.local_capacity = 5000;
      };
    };
    balancer = {
      listenAddress = "0.0.0.0";
      adminPort = null;
      leaseTtl = "5s";
      heartbeat = "2s";
    };
    database.url = "mysql://dsf@db.example.org:3306/dsf";
    redis.urls = ["redis://cache-1:6379/0"];
    cache = {
      ttl = "10m";
      negativeTtl = "1m";
    };
    settings = {
      runtime.threads = 2;
      limits = {
        max_frame = 65536;
        request_timeout = "2s";
        drain_timeout = "15s";
      };
      log = {
        level = "info,dsf=debug";
        format = "json";
      };
      store.query_timeout = "2s";
      auth.session_ttl = "8h";
      cluster.secret_file = "/run/secrets/dsf-cluster-secret";
      balancer = {
        vnodes = 256;
        services.dsf.algorithm = "least_inflight";
      };
    };
  };
}

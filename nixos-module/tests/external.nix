# Named nodes against an external MySQL and Redis, registering with a remote balancer.
{
  services.dsf = {
    enable = true;
    balancer.enable = false;
    nodes.register = "lb.example.org:6200";
    nodes.instances = {
      users = {
        port = 7001;
        listenAddress = "0.0.0.0";
        ops = ["user."];
      };
      blacklist = {
        port = 7002;
        ops = ["blacklist." "collector."];
        pool.max = 32;
        settings.runtime.threads = 2;
      };
    };
    cluster.secretFile = "/run/secrets/dsf-cluster-secret";
    database.url = "mysql://dsf@db.example.org:3306/dsf";
    database.passwordFile = "/run/secrets/dsf-db-password";
    redis.urls = ["redis://cache-1:6379/0" "redis://cache-2:6379/0"];
    environmentFile = "/run/secrets/dsf.env";
    openFirewall = true;
  };
}

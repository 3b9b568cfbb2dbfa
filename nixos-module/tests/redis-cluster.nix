# A node host of docs/deploy.md's scale-out layout: nodes listing both balancers,
# MariaDB on its own host, the cache on a Redis Cluster reached through seed nodes.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    balancer.enable = false;
    nodes = {
      register = "10.0.0.11:6200,10.0.0.12:6200";
      instances = {
        a = {
          port = 7001;
          listenAddress = "10.0.0.101";
        };
        b = {
          port = 7002;
          listenAddress = "10.0.0.101";
        };
      };
    };
    cluster.secretFile = "/run/secrets/dsf-cluster-secret";
    database = {
      url = "mysql://dsf@10.0.0.40:3306/dsf";
      passwordFile = "/run/secrets/dsf-db-password";
    };
    redis = {
      cluster = true;
      urls = ["redis://10.0.0.31:6379" "redis://10.0.0.32:6379" "redis://10.0.0.33:6379"];
      passwordFile = "/run/secrets/dsf-redis-password";
    };
    openFirewall = true;
  };
}

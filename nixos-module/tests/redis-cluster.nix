# The nodes' cache on a Redis Cluster, reached through seed nodes with a password.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    nodes.count = 2;
    database.url = "mysql://dsf@db.example.org:3306/dsf";
    redis = {
      cluster = true;
      urls = ["redis://10.0.0.31:6379" "redis://10.0.0.32:6379" "redis://10.0.0.33:6379"];
      passwordFile = "/run/secrets/dsf-redis-password";
    };
  };
}

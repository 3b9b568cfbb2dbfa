# Issue 17.5: nodes with an external database and Redis, registering with a remote
# balancer, start after network-online.target.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    balancer.enable = false;
    nodes.register = "lb.example.org:6200";
    nodes.count = 1;
    cluster.secretFile = "/run/secrets/dsf-cluster-secret";
    database.url = "mysql://dsf@db.example.org:3306/dsf";
    database.passwordFile = "/run/secrets/dsf-db-password";
    redis.urls = ["redis://cache-1:6379/0"];
  };
}

# Issue 17.2: a Redis password from a file reaches the nodes as a credential and is
# added to the URLs when the unit starts; it is in neither the settings nor the store.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    balancer.enable = false;
    nodes.register = "lb.example.org:6200";
    nodes.instances.cache = {
      port = 7001;
      adminPort = 9101;
    };
    cluster.secretFile = "/run/secrets/dsf-cluster-secret";
    redis.urls = ["redis://cache-1:6379/0" "rediss://dsf@cache-2:6380/1"];
    redis.passwordFile = "/run/secrets/dsf-redis-password";
  };
}

# A Redis Cluster asked of the local (single) Redis, and a node left with no seed.
{
  services.dsf = {
    enable = true;
    nodes.instances = {
      a = {
        port = 7001;
        settings.cache.redis = [];
      };
      b.port = 7002;
    };
    redis.createLocally = true;
    redis.cluster = true;
  };
}

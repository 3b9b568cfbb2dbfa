# Three numbered nodes, a local balancer, local MariaDB and Redis.
{
  services.dsf = {
    enable = true;
    nodes.count = 3;
    database.createLocally = true;
    redis.createLocally = true;
    balancer.algorithm = "bounded_load";
    settings.log.format = "json";
  };
}

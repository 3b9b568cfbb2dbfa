# Every assertion that a plausible mistake trips: evaluation lists them all.
{
  services.dsf = {
    enable = true;
    nodes.count = 2;
    nodes.instances.a.port = 6400;
    database.createLocally = true;
    database.url = "mysql://dsf:hunter2@db:3306/dsf";
    redis.createLocally = true;
    redis.urls = ["redis://cache:6379/0"];
    redis.cluster = true;
    settings.cluster.secret = "plain";
  };
}

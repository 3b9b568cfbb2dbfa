# Issue 17.2: passwords written into the settings or URLs would land in the Nix
# store; each place is refused with the option to use instead.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    nodes.count = 1;
    redis.urls = ["redis://:hunter2@cache-1:6379/0" "unix:///run/redis/redis.sock?pass=hunter2"];
    settings.store = {
      url = "mysql://dsf@db.example.org:3306/dsf?password=hunter2";
      password = "hunter2";
    };
    settings.balancer.redis = "redis://dsf:hunter2@cache-1:6379/2";
  };
}

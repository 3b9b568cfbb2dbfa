# Issue 17.1: the local Redis is reached over a unix socket of its own group, with no
# TCP listener, instead of an unauthenticated 127.0.0.1 port.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    nodes.count = 2;
    database.createLocally = true;
    redis.createLocally = true;
  };
}

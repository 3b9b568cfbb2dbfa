# Issue 17.6: a node waiting for its database is not killed by systemd's default
# 90 s start timeout while dsf would wait forever: the two limits agree.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    nodes.count = 1;
    database.createLocally = true;
  };
}

# Issue 17.8: nodes.count and nodes.instances together are refused, and the option's
# documentation says so (it used to say count was ignored).
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    nodes.count = 2;
    nodes.instances.a.port = 7101;
  };
}

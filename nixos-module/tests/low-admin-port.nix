# Issue 17.8: an admin listener below 1024 gets CAP_NET_BIND_SERVICE (and only that)
# when the process binds it itself (without socket activation).
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    socketActivation = false;
    balancer.adminPort = 910;
    nodes.instances.a = {
      port = 7001;
      adminPort = 911;
    };
  };
}

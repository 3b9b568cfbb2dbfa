# Socket activation (on by default): a .socket unit per listener, named as dsf takes
# them from LISTEN_FDNAMES, on the balancer (admin on a low port) and two nodes.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    balancer = {
      listenAddress = "0.0.0.0";
      adminPort = 910;
    };
    nodes.instances = {
      a = {
        port = 7001;
        adminPort = 9101;
      };
      b = {
        port = 7002;
        listenAddress = "10.0.0.7";
      };
    };
  };
}

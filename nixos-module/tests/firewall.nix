# Issue 17.8: openFirewall opens only what listens beyond loopback: here one node on
# 0.0.0.0, not the balancer, which binds 127.0.0.1.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    openFirewall = true;
    nodes.instances = {
      public = {
        port = 7001;
        listenAddress = "0.0.0.0";
        advertise = "10.0.0.5:7001";
      };
      private.port = 7002;
    };
  };
}

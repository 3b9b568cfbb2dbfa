# A node listening on a host name cannot have a .socket unit.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    nodes.instances.a = {
      port = 7001;
      listenAddress = "node-a.internal";
    };
  };
}

# Issue 18: Prometheus on this host scrapes every admin listener of DSF.
{
  services.prometheus.enable = true;
  services.dsf = {
    enable = true;
    checkConfig = false;
    nodes.count = 2;
    prometheus.enable = true;
  };
}

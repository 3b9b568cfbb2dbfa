# etcd membership on one host: a single etcd member provisioned through services.etcd.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    nodes.count = 2;
    balancer.etcd.createLocally = true;
  };
}

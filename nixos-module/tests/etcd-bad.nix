# etcd membership set up wrongly: endpoints beside a local member, Redis membership
# beside etcd.
{
  services.dsf = {
    enable = true;
    balancer.etcd = {
      createLocally = true;
      endpoints = ["http://10.0.0.21:2379"];
    };
    settings.balancer.redis = "redis://cache-1:6379/1";
  };
}

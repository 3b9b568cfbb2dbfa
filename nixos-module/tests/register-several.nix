# Nodes of a host without a balancer of this module, listing two balancers that share
# membership: one on this host, one on another.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    balancer.enable = false;
    nodes.count = 2;
    nodes.register = "127.0.0.1:6200,10.0.0.12:6200";
    cluster.secretFile = "/run/secrets/dsf-cluster-secret";
  };
}

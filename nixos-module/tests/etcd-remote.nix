# A balancer-only host of docs/deploy.md's scale-out layout: membership shared with
# the other balancer through a three-member etcd cluster.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    balancer = {
      listenAddress = "10.0.0.11";
      etcd.endpoints = ["http://10.0.0.21:2379" "http://10.0.0.22:2379" "http://10.0.0.23:2379"];
    };
    nodes.instances = {};
    cluster.secretFile = "/run/secrets/dsf-cluster-secret";
    openFirewall = true;
  };
}

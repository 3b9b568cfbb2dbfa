# Two nodes and a balancer sharing membership with other hosts' balancers through a
# three-member etcd cluster.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    nodes.count = 2;
    balancer = {
      listenAddress = "0.0.0.0";
      etcd = {
        endpoints = ["http://10.0.0.21:2379" "http://10.0.0.22:2379" "http://10.0.0.23:2379"];
        prefix = "/prod/dsf/";
      };
    };
    database.url = "mysql://dsf@db.example.org:3306/dsf";
    cluster.secretFile = "/run/secrets/dsf-cluster-secret";
  };
}

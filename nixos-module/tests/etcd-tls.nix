# A balancer of the scale-out layout whose etcd members require client certificates:
# https:// endpoints, the CA and the client certificate as systemd credentials.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    balancer = {
      listenAddress = "10.0.0.11";
      etcd = {
        endpoints = ["https://10.0.0.21:2379" "https://10.0.0.22:2379" "https://10.0.0.23:2379"];
        caFile = "/etc/dsf/etcd-ca.pem";
        certificateFile = "/run/secrets/etcd-client.pem";
        keyFile = "/run/secrets/etcd-client.key";
      };
    };
    nodes.instances = {};
    cluster.secretFile = "/run/secrets/dsf-cluster-secret";
  };
}

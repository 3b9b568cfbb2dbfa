# etcd TLS set up wrongly: a client certificate without its key, and TLS files for
# plain http:// endpoints.
{
  services.dsf = {
    enable = true;
    balancer.etcd = {
      endpoints = ["http://10.0.0.21:2379"];
      caFile = "/etc/dsf/etcd-ca.pem";
      certificateFile = "/run/secrets/etcd-client.pem";
    };
  };
}

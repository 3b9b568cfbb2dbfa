# Issue 12: TLS files reach every unit as systemd credentials, named in the
# environment; the private key stays out of the Nix store and out of the settings.
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    nodes.instances."1".port = 7001;
    nodes.instances."2" = {
      port = 7002;
      tls = {
        certificateFile = "/run/secrets/node-2.pem";
        keyFile = "/run/secrets/node-2.key";
      };
    };
    tls = {
      enable = true;
      certificateFile = "/var/lib/acme/dsf/fullchain.pem";
      keyFile = "/var/lib/acme/dsf/key.pem";
      caFile = "/etc/dsf/ca.pem";
    };
  };
}

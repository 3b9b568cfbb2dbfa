# The dsf image through nixpkgs' dockerTools (a docker-archive: `podman load < result`).
# Same interface as images/build: /bin/dsf, user 65532, /data, `up` by default.
{
  dockerTools,
  dsf,
  lib,
  revision,
  writeTextDir,
}:
dockerTools.buildLayeredImage {
  name = "dsf";
  tag = dsf.version;
  contents = [
    dsf
    dockerTools.caCertificates
    (writeTextDir "etc/passwd" "root:x:0:0:root:/:/sbin/nologin\ndsf:x:65532:65532:dsf:/data:/sbin/nologin\n")
    (writeTextDir "etc/group" "root:x:0:\ndsf:x:65532:\n")
  ];
  fakeRootCommands = ''
    mkdir -p data tmp
    chown 65532:65532 data
    chmod 1777 tmp
  '';
  config = {
    Entrypoint = ["/bin/dsf"];
    Cmd = ["up" "--bind" "0.0.0.0"];
    User = "65532:65532";
    WorkingDir = "/data";
    Env = ["SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt" "DSF__NODE__DATA_DIR=/data"];
    ExposedPorts = {
      "6200/tcp" = {};
      "6300/tcp" = {};
      "6400/tcp" = {};
      "7001/tcp" = {};
      "9100/tcp" = {};
    };
    Volumes."/data" = {};
    StopSignal = "SIGTERM";
    # No baked-in health check: which one fits depends on the command (node,
    # balancer or up); images/README.md lists them for --health-cmd.
    # The source label only when the package names a homepage (Cargo.toml's
    # `repository`): no placeholder address.
    Labels =
      {
        "org.opencontainers.image.title" = "dsf";
        "org.opencontainers.image.version" = dsf.version;
        "org.opencontainers.image.revision" = revision;
      }
      // lib.optionalAttrs (dsf.meta ? homepage) {"org.opencontainers.image.source" = dsf.meta.homepage;};
  };
}

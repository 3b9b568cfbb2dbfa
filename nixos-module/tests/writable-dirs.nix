# Issue 17.8: under ProtectSystem=strict, a log folder and a data folder outside the
# state directory are made writable (Logs-/StateDirectory under /var, else ReadWritePaths).
{
  services.dsf = {
    enable = true;
    checkConfig = false;
    settings.log.dir = "/var/log/dsf";
    nodes.instances = {
      a = {
        port = 7001;
        settings.node.data_dir = "/srv/dsf-a";
      };
      b = {
        port = 7002;
        settings.node.data_dir = "/var/lib/dsf-data/b";
      };
    };
  };
}

# The systemd unit shared by the balancer and every node: Type=notify, secrets as
# credentials, and the hardening set.
{
  cfg,
  lib,
  secretFile,
  useSecret,
}: {
  unit = {
    name,
    description,
    command,
    config,
    after ? [],
    before ? [],
    requires ? [],
    wants ? [],
    ports ? [],
  }: let
    lowPort = lib.any (p: p < 1024) ports;
  in {
    inherit description before requires wants;
    after = ["network.target"] ++ after;
    wantedBy = ["dsf.target"];
    partOf = ["dsf.target"];

    # Files are handed over by systemd as credentials (readable by this unit only);
    # the configuration names them through the environment, %d being their folder.
    environment =
      lib.optionalAttrs useSecret {DSF__CLUSTER__SECRET_FILE = "%d/cluster-secret";}
      // lib.optionalAttrs (cfg.database.passwordFile != null) {DSF__STORE__PASSWORD_FILE = "%d/db-password";};

    serviceConfig = {
      Type = "notify";
      NotifyAccess = "main";
      ExecStart = "${lib.getExe cfg.package} ${command} --config ${config}";
      EnvironmentFile = lib.mkIf (cfg.environmentFile != null) (toString cfg.environmentFile);
      LoadCredential =
        lib.optional useSecret "cluster-secret:${secretFile}"
        ++ lib.optional (cfg.database.passwordFile != null) "db-password:${toString cfg.database.passwordFile}";
      Restart = "on-failure";
      RestartSec = "2s";
      # dsf drains on SIGTERM for limits.drain_timeout (10 s by default).
      TimeoutStopSec = "30s";
      LimitNOFILE = 65536;
      User = "dsf";
      Group = "dsf";
      WorkingDirectory = "%S/dsf-${name}";

      # Hardening, alphabetised. The unix socket family carries sd_notify and the
      # local MySQL connection.
      AmbientCapabilities = lib.mkIf lowPort ["CAP_NET_BIND_SERVICE"];
      CapabilityBoundingSet =
        if lowPort
        then ["CAP_NET_BIND_SERVICE"]
        else "";
      DevicePolicy = "closed";
      DynamicUser = true;
      LockPersonality = true;
      MemoryDenyWriteExecute = true;
      NoNewPrivileges = true;
      PrivateDevices = true;
      PrivateTmp = true;
      ProtectClock = true;
      ProtectControlGroups = true;
      ProtectHome = true;
      ProtectHostname = true;
      ProtectKernelLogs = true;
      ProtectKernelModules = true;
      ProtectKernelTunables = true;
      ProtectProc = "invisible";
      ProtectSystem = "strict";
      RemoveIPC = true;
      RestrictAddressFamilies = ["AF_INET" "AF_INET6" "AF_UNIX"];
      RestrictNamespaces = true;
      RestrictRealtime = true;
      RestrictSUIDSGID = true;
      StateDirectory = "dsf-${name}";
      StateDirectoryMode = "0700";
      SystemCallArchitectures = "native";
      SystemCallFilter = ["@system-service" "~@privileged"];
      UMask = "0077";
    };
  };
}

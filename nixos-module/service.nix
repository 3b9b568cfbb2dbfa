# The systemd unit shared by the balancer and every node: Type=notify, secrets as
# credentials, reload by SIGHUP, listeners from .socket units, and the hardening set.
{
  cfg,
  lib,
  pkgs,
  secretFile,
  useSecret,
}: {
  unit = {
    name,
    description,
    # The process reads its settings from /etc/dsf/NAME.toml (environment.etc), so
    # that a new settings file alone does not change the unit: see reloadTriggers.
    command,
    after ? [],
    before ? [],
    requires ? [],
    wants ? [],
    # Whether the process reaches other hosts (or binds a configured address).
    network ? false,
    # Ports the process binds itself (not passed by a .socket unit).
    ports ? [],
    # Its .socket units (names without the suffix), whose listeners it inherits.
    sockets ? [],
    # Settings changes that a SIGHUP applies, and those that need a restart.
    reloadTriggers ? [],
    restartTriggers ? [],
    timeoutStart ? null,
    # Extra groups (the local Redis socket's).
    groups ? [],
    # Extra "id:path" credentials, ExecStartPre commands and environment files.
    credentials ? [],
    # Extra environment (e.g. DSF__TLS__… naming credentials).
    extraEnvironment ? {},
    execStartPre ? [],
    environmentFiles ? [],
    runtimeDirectory ? false,
    stateDirectories ? ["dsf-${name}"],
    logsDirectories ? [],
    readWritePaths ? [],
  }: let
    lowPort = lib.any (p: p < 1024) ports;
    online = lib.optional network "network-online.target";
    envFiles = lib.optional (cfg.environmentFile != null) (toString cfg.environmentFile) ++ environmentFiles;
    socketUnits = map (s: "${s}.socket") sockets;
  in {
    inherit description before reloadTriggers restartTriggers;
    requires = socketUnits ++ requires;
    after = ["network.target"] ++ online ++ socketUnits ++ after;
    wants = online ++ wants;
    wantedBy = ["dsf.target"];
    partOf = ["dsf.target"];

    # Files are handed over by systemd as credentials (readable by this unit only);
    # the configuration names them through the environment, %d being their folder.
    environment =
      lib.optionalAttrs useSecret {DSF__CLUSTER__SECRET_FILE = "%d/cluster-secret";}
      // lib.optionalAttrs (cfg.database.passwordFile != null) {DSF__STORE__PASSWORD_FILE = "%d/db-password";}
      // extraEnvironment;

    serviceConfig = {
      Type = "notify";
      NotifyAccess = "main";
      ExecStartPre = lib.mkIf (execStartPre != []) execStartPre;
      ExecStart = "${lib.getExe cfg.package} ${command} --config /etc/dsf/${name}.toml";
      # dsf re-reads its settings file and environment on SIGHUP, takes what it can
      # live and names in one warning the keys that need a restart. Credentials are
      # copied by systemd at start: a changed credential file needs a restart.
      ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
      Sockets = lib.mkIf (socketUnits != []) socketUnits;
      EnvironmentFile = lib.mkIf (envFiles != []) envFiles;
      LoadCredential =
        lib.optional useSecret "cluster-secret:${secretFile}"
        ++ lib.optional (cfg.database.passwordFile != null) "db-password:${toString cfg.database.passwordFile}"
        ++ credentials;
      Restart = "on-failure";
      RestartSec = "2s";
      TimeoutStartSec = lib.mkIf (timeoutStart != null) "${toString timeoutStart}s";
      # dsf drains on SIGTERM for limits.drain_timeout (10 s by default).
      TimeoutStopSec = "30s";
      LimitNOFILE = 65536;
      User = "dsf";
      Group = "dsf";
      SupplementaryGroups = lib.mkIf (groups != []) groups;
      WorkingDirectory = "%S/dsf-${name}";

      # Hardening, alphabetised. The unix socket family carries sd_notify, the local
      # MySQL and the local Redis connections. A port below 1024 (a listener or an
      # admin port) needs CAP_NET_BIND_SERVICE, and nothing else is granted.
      AmbientCapabilities = lib.mkIf lowPort ["CAP_NET_BIND_SERVICE"];
      CapabilityBoundingSet =
        if lowPort
        then ["CAP_NET_BIND_SERVICE"]
        else "";
      DevicePolicy = "closed";
      DynamicUser = true;
      LockPersonality = true;
      LogsDirectory = lib.mkIf (logsDirectories != []) logsDirectories;
      LogsDirectoryMode = lib.mkIf (logsDirectories != []) "0700";
      MemoryDenyWriteExecute = true;
      NoNewPrivileges = true;
      PrivateMounts = true;
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
      ReadWritePaths = lib.mkIf (readWritePaths != []) readWritePaths;
      RemoveIPC = true;
      RestrictAddressFamilies = ["AF_INET" "AF_INET6" "AF_UNIX"];
      RestrictNamespaces = true;
      RestrictRealtime = true;
      RestrictSUIDSGID = true;
      RuntimeDirectory = lib.mkIf runtimeDirectory "dsf-${name}";
      RuntimeDirectoryMode = lib.mkIf runtimeDirectory "0700";
      StateDirectory = stateDirectories;
      StateDirectoryMode = "0700";
      SystemCallArchitectures = "native";
      SystemCallFilter = ["@system-service" "~@privileged"];
      UMask = "0077";
    };
  };
}

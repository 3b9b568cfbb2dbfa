# Socket activation (PROTOCOL §9) and live reload for the module's units.
#
# With services.dsf.socketActivation, systemd binds every listener in a .socket unit
# of its own and hands it to the service as a descriptor named after the listener
# (FileDescriptorName=: node, admin, registration, directory, proxy), which dsf takes
# from LISTEN_FDS/LISTEN_FDNAMES instead of binding. The socket stays open while the
# service restarts: connections wait in its queue, none is refused.
#
# A settings change reaches a running process by SIGHUP (ExecReload) when only keys
# that dsf takes live changed (X-Reload-Triggers), and by a restart otherwise
# (X-Restart-Triggers: a hash of the settings without those keys).
{
  cfg,
  lib,
  addr,
}: let
  # Keys dsf takes on SIGHUP, by section; keep in step with LIVE_KEYS in
  # src/config/reload.rs.
  liveKeys = {
    log = ["level"];
    limits = ["max_frame" "max_connections" "max_inflight_per_connection" "max_inflight" "idle_timeout" "drain_timeout"];
    balancer = ["algorithm" "vnodes" "load_factor" "services" "outlier"];
    node = ["weight"];
    cache = ["ttl" "negative_ttl"];
    store = ["pool_min" "pool_max"];
  };
  withoutLive = settings:
    lib.mapAttrs (section: v:
      if lib.isAttrs v
      then removeAttrs v (liveKeys.${section} or [])
      else v)
    settings;

  isIp = a: let
    u = addr.unbracket a;
  in
    builtins.match "[0-9.]+" u != null || lib.hasInfix ":" u;

  socketUnit = {
    service,
    fdName,
    address,
    port,
  }: {
    description = "DSF ${fdName} listener of ${service}";
    wantedBy = ["sockets.target" "dsf.target"];
    partOf = ["dsf.target"];
    listenStreams = [(addr.hostPort address port)];
    socketConfig =
      {
        FileDescriptorName = fdName;
        Service = "${service}.service";
      }
      # An address configured later than sockets.target (a static address on an
      # interface that comes up with the network) is bound all the same.
      // lib.optionalAttrs (addr.needsConfiguredAddress address) {FreeBind = true;};
  };
in {
  inherit liveKeys;

  # What a process's unit gets for reloads: triggers on its settings and its file.
  triggers = {
    settings,
    file,
  }: {
    reloadTriggers = [file];
    restartTriggers = [(builtins.hashString "sha256" (builtins.toJSON (withoutLive settings)))];
  };

  # The .socket units of one process: `listeners` is a list of { fdName; address;
  # port; } (null ports skipped), `service` the unit name without `.service`. The
  # first listener's socket unit carries the service's own name.
  sockets = service: listeners: let
    used = lib.filter (l: l.port != null) listeners;
    name = i: l:
      if i == 0
      then service
      else "${service}-${l.fdName}";
  in
    lib.optionalAttrs cfg.socketActivation (lib.listToAttrs (lib.imap0 (i: l:
      lib.nameValuePair (name i l) (socketUnit {
        inherit service;
        inherit (l) fdName address port;
      }))
    used));

  # Listener addresses that a .socket unit cannot bind (host names).
  badAddresses = listeners:
    lib.optionals cfg.socketActivation (map (l: l.address) (lib.filter (l: l.port != null && !isIp l.address) listeners));
}

# services.dsf: one DSF balancer and any number of DSF nodes on one host, with optional
# local MySQL (MariaDB), Redis and etcd provisioning.
{
  config,
  lib,
  options,
  pkgs,
  ...
}: let
  cfg = config.services.dsf;
  settingsFormat = pkgs.formats.toml {};

  inherit (lib) literalExpression mkDefault mkIf mkOption types;

  # Secrets live in files outside the Nix store and reach the processes as systemd
  # credentials; the environment names the credential, never the secret itself.
  secretDir = "/var/lib/dsf-secret";
  generatedSecret = "${secretDir}/cluster-secret";
  secretFile =
    if cfg.cluster.secretFile != null
    then toString cfg.cluster.secretFile
    else generatedSecret;
  generateSecret = cfg.cluster.secretFile == null && cfg.balancer.enable;
  useSecret = cfg.cluster.secretFile != null || cfg.balancer.enable;

  addr = import ./address.nix {inherit lib;};
  inherit (addr) hostPort isLoopback;
  inStore = path: path != null && lib.hasPrefix builtins.storeDir (toString path);

  localStoreUrl = "mysql://dsf@localhost/${cfg.database.name}?socket=${cfg.database.socket}";
  # The local Redis listens on a unix socket of group redis-dsf (mode 0660), which
  # the units join: no other local user can reach it.
  localRedisSocket = "/run/redis-dsf/redis.sock";
  localRedisUrl = "redis+unix://${localRedisSocket}";
  localRedisGroup = "redis-dsf";

  useMysql = cfg.database.createLocally || cfg.database.url != null;
  nodes = cfg.nodes.instances;
  nodeUnits = lib.mapAttrsToList (name: _: "dsf-node-${name}.service") nodes;

  # Render one process's settings and validate them with the package's own
  # `dsf check-config`, so that a wrong key fails `nixos-rebuild`, not the service.
  # The check runs cfg.package on the build machine: checkConfig is off by default
  # when that machine cannot execute the host's binaries (cross builds).
  configFile = name: settings: let
    file = settingsFormat.generate "dsf-${name}.toml" settings;
  in
    if cfg.checkConfig
    then
      pkgs.runCommand "dsf-${name}-checked.toml" {} ''
        ${lib.getExe cfg.package} check-config ${file}
        cp ${file} $out
      ''
    else file;

  # The node's start-up budget: systemd's TimeoutStartSec, and store.startup_timeout
  # a little below it, so that dsf gives up with its own message (and
  # Restart=on-failure tries again) before systemd kills it.
  startupMargin = 10;
  startupTimeout = "${toString (cfg.nodes.startTimeout - startupMargin)}s";

  redisUrls = import ./redis-url.nix {inherit lib;};

  balancerSettings = lib.recursiveUpdate cfg.settings {
    admin.listen = lib.optionalString (cfg.balancer.adminPort != null) (hostPort "127.0.0.1" cfg.balancer.adminPort);
  };

  # Where a process writes outside its StateDirectory: folders under /var/lib or
  # /var/log become extra State-/LogsDirectory entries (created and owned by systemd
  # for the dynamic user); any other folder is made writable with ReadWritePaths and
  # must exist, writable by the unit.
  writable = stateDir: settings: let
    dirs =
      lib.optional ((settings.log.dir or "") != "") (toString settings.log.dir)
      ++ lib.optional ((settings.node.data_dir or "") != "" && toString settings.node.data_dir != "/var/lib/${stateDir}") (toString settings.node.data_dir);
    under = prefix: d: lib.hasPrefix prefix d && d != lib.removeSuffix "/" prefix;
    strip = prefix: d: lib.removeSuffix "/" (lib.removePrefix prefix d);
  in {
    stateDirectories = [stateDir] ++ map (strip "/var/lib/") (lib.filter (under "/var/lib/") dirs);
    logsDirectories = map (strip "/var/log/") (lib.filter (under "/var/log/") dirs);
    readWritePaths = lib.filter (d: !(under "/var/lib/" d || under "/var/log/" d)) dirs;
  };

  # What a unit reaches over the network beyond this host: such a unit waits for
  # network-online.target, not only network.target.
  nodeNeedsNetwork = settings:
    lib.any (u: !addr.urlIsLocal u) (lib.filter (u: u != "") ([(settings.store.url or "")] ++ (settings.cache.redis or [])))
    || lib.any (b: !isLoopback (addr.hostOf b)) (lib.filter (b: b != "") (map lib.trim (lib.splitString "," (settings.node.register or ""))))
    || addr.needsConfiguredAddress (addr.hostOf settings.node.listen);
  balancerNeedsNetwork =
    ((balancerSettings.balancer.redis or "") != "" && !addr.urlIsLocal balancerSettings.balancer.redis)
    || etcd.remote
    || addr.needsConfiguredAddress cfg.balancer.listenAddress;

  # With redis.passwordFile, the Redis URLs are completed at start: ExecStartPre
  # reads the credential and writes DSF__CACHE__REDIS (the URLs with the password,
  # percent-encoded) to an environment file in the unit's RuntimeDirectory, which
  # systemd reads for ExecStart. The password never enters the Nix store.
  redisEnvFile = name: "/run/dsf-${name}/redis.env";
  redisEnvScript = name: urls:
    pkgs.writeShellScript "dsf-${name}-redis-env" ''
      set -eu
      LC_ALL=C
      pw=$(< "$CREDENTIALS_DIRECTORY/redis-password")
      enc=
      for ((i = 0; i < ''${#pw}; i++)); do
        c=''${pw:i:1}
        case $c in
          [A-Za-z0-9._~-]) enc+=$c ;;
          *) printf -v h '%%%02X' "'$c"; enc+=$h ;;
        esac
      done
      umask 0077
      printf 'DSF__CACHE__REDIS=%s\n' ${lib.concatMapStringsSep "," (redisUrls.withPassword "enc") urls} > ${redisEnvFile name}
    '';

  nodeSettings = name: node:
    lib.recursiveUpdate (lib.recursiveUpdate cfg.settings {
      node = {
        listen = hostPort node.listenAddress node.port;
        advertise = lib.optionalString (node.advertise != null) node.advertise;
        register = lib.optionalString (cfg.nodes.register != null) cfg.nodes.register;
        inherit (node) ops service weight;
        data_dir = "/var/lib/dsf-node-${name}";
      };
      store = {
        pool_min = node.pool.min;
        pool_max = node.pool.max;
      };
      admin.listen = lib.optionalString (node.adminPort != null) (hostPort "127.0.0.1" node.adminPort);
    })
    node.settings;

  allPorts =
    lib.optionals cfg.balancer.enable (lib.attrValues cfg.balancer.ports ++ lib.optional (cfg.balancer.adminPort != null) cfg.balancer.adminPort)
    ++ lib.concatMap (n: [n.port] ++ lib.optional (n.adminPort != null) n.adminPort) (lib.attrValues nodes);
  duplicatePorts = lib.unique (lib.filter (p: lib.count (q: q == p) allPorts > 1) allPorts);

  service = import ./service.nix {inherit cfg lib pkgs secretFile useSecret;};
  sock = import ./sockets.nix {inherit cfg lib addr;};

  # The listeners of each process, for its .socket units (named as dsf expects them).
  balancerListeners =
    map (l: {
      fdName = l;
      address = cfg.balancer.listenAddress;
      port = cfg.balancer.ports.${l};
    }) ["registration" "directory" "proxy"]
    ++ [
      {
        fdName = "admin";
        address = "127.0.0.1";
        port = cfg.balancer.adminPort;
      }
    ];
  nodeListeners = node: [
    {
      fdName = "node";
      address = node.listenAddress;
      inherit (node) port;
    }
    {
      fdName = "admin";
      address = "127.0.0.1";
      port = node.adminPort;
    }
  ];
  nodeSockets = name: node: sock.sockets "dsf-node-${name}" (nodeListeners node);
  balancerSockets = lib.optionalAttrs cfg.balancer.enable (sock.sockets "dsf-balancer" balancerListeners);
  allSockets = balancerSockets // lib.concatMapAttrs nodeSockets nodes;
  # A process bound by its .socket units binds nothing itself (no capability for
  # ports below 1024).
  selfBound = ports:
    if cfg.socketActivation
    then []
    else ports;
  tls = import ./tls.nix {inherit cfg lib;};
  etcd = import ./etcd.nix {inherit cfg config lib addr;};

  # Every process's rendered settings, for the checks that look for secrets in them.
  allSettings = lib.optional cfg.balancer.enable balancerSettings ++ lib.mapAttrsToList nodeSettings nodes;

  nodeUnit = name: node: let
    settings = nodeSettings name node;
    urls = settings.cache.redis or [];
    redisPassword = cfg.redis.passwordFile != null && urls != [];
    tlsFiles = tls.unit {inherit (node.tls) certificateFile keyFile;};
  in
    service.unit ({
        name = "node-${name}";
        description = "DSF node ${name}";
        command = "node";
        sockets = lib.attrNames (nodeSockets name node);
        inherit
          (sock.triggers {
            inherit settings;
            file = configFile "node-${name}" settings;
          })
          reloadTriggers
          restartTriggers
          ;
        after =
          lib.optional cfg.balancer.enable "dsf-balancer.service"
          ++ lib.optional generateSecret "dsf-secret.service"
          ++ lib.optional cfg.database.createLocally "mysql.service"
          ++ lib.optional cfg.redis.createLocally "redis-dsf.service";
        requires =
          lib.optional generateSecret "dsf-secret.service"
          ++ lib.optional cfg.database.createLocally "mysql.service"
          ++ lib.optional cfg.redis.createLocally "redis-dsf.service";
        wants = lib.optional cfg.balancer.enable "dsf-balancer.service";
        network = nodeNeedsNetwork settings;
        ports = selfBound ([node.port] ++ lib.optional (node.adminPort != null) node.adminPort);
        timeoutStart = cfg.nodes.startTimeout;
        groups = lib.optional cfg.redis.createLocally localRedisGroup;
        credentials = lib.optional redisPassword "redis-password:${toString cfg.redis.passwordFile}" ++ tlsFiles.credentials;
        extraEnvironment = tlsFiles.environment;
        execStartPre = lib.optional redisPassword (redisEnvScript "node-${name}" urls);
        # "-": ExecStartPre itself starts before the file exists.
        environmentFiles = lib.optional redisPassword "-${redisEnvFile "node-${name}"}";
        runtimeDirectory = redisPassword;
      }
      // writable "dsf-node-${name}" settings);

  # One static scrape target per admin listener, labelled with its process.
  adminTargets =
    lib.optional (cfg.balancer.enable && cfg.balancer.adminPort != null) {
      targets = [(hostPort "127.0.0.1" cfg.balancer.adminPort)];
      labels.process = "balancer";
    }
    ++ lib.concatLists (lib.mapAttrsToList (name: n:
      lib.optional (n.adminPort != null) {
        targets = [(hostPort "127.0.0.1" n.adminPort)];
        labels.process = "node-${name}";
      })
    nodes);
  alertRules = ../monitoring/alerts.yaml;

  nodeModule = {
    options = {
      port = mkOption {
        type = types.port;
        description = "Port of this node's protocol listener.";
      };
      listenAddress = mkOption {
        type = types.str;
        default = "127.0.0.1";
        description = ''
          Address the node listens on. With `0.0.0.0` (or `::`) and no {option}`advertise`,
          the node registers `<hostname>:<port>`, so the host name must resolve to a
          reachable address on the balancer's host; set {option}`advertise` otherwise.
        '';
      };
      advertise = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "10.0.0.5:7001";
        description = "Address (`host:port`) registered with the balancer; `null` = the listen address.";
      };
      adminPort = mkOption {
        type = types.nullOr types.port;
        default = null;
        description = "Port of the node's admin HTTP listener (/metrics, /healthz, /readyz) on 127.0.0.1; `null` = off.";
      };
      weight = mkOption {
        type = types.ints.between 1 1000;
        default = 1;
        description = "Weight of this node in the balancer's selection.";
      };
      service = mkOption {
        type = types.str;
        default = "dsf";
        description = "Service name the node registers under.";
      };
      ops = mkOption {
        type = types.listOf types.str;
        default = [];
        example = ["user." "blacklist."];
        description = "Operation-name prefixes this node serves; empty = all of them.";
      };
      pool = {
        min = mkOption {
          type = types.ints.positive;
          default = cfg.database.pool.min;
          defaultText = literalExpression "config.services.dsf.database.pool.min";
          description = "Connections the node keeps open to MySQL at least.";
        };
        max = mkOption {
          type = types.ints.positive;
          default = cfg.database.pool.max;
          defaultText = literalExpression "config.services.dsf.database.pool.max";
          description = "Connections the node opens to MySQL at most.";
        };
      };
      tls = tls.nodeOptions;
      settings = mkOption {
        inherit (settingsFormat) type;
        default = {};
        example = {runtime.threads = 2;};
        description = "Settings for this node only, applied over {option}`services.dsf.settings`.";
      };
    };
  };
in {
  options.services.dsf = {
    enable = lib.mkEnableOption "DSF, a distributed service framework (balancer and nodes)";

    package = lib.mkPackageOption pkgs "dsf" {};

    settings = mkOption {
      inherit (settingsFormat) type;
      default = {};
      example = literalExpression ''
        {
          limits.request_timeout = "2s";
          log.format = "json";
          balancer.services.user.algorithm = "least_inflight";
        }
      '';
      description = ''
        DSF configuration shared by the balancer and every node, rendered to TOML (see
        `dsf.example.toml` for every key). The typed options of this module fill in the
        matching keys; per-process keys (listen addresses, data folders, pool sizes) are
        set from {option}`services.dsf.nodes` and {option}`services.dsf.balancer`. Never put
        secrets here: the file lands in the world-readable Nix store.
      '';
    };

    socketActivation = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Let systemd bind every listener of the balancer and the nodes in `.socket` units
        (`dsf-balancer.socket`, `dsf-balancer-directory.socket`, …, `dsf-node-<name>.socket`,
        `dsf-node-<name>-admin.socket`) and pass them to the processes (`LISTEN_FDS`,
        named by `FileDescriptorName=`). The sockets stay open while a unit restarts,
        so `nixos-rebuild switch` and `systemctl restart` refuse no connection; and a
        port below 1024 needs no capability in the service. Off: each process binds its
        own listeners, and connections are refused while it restarts.
      '';
    };

    checkConfig = mkOption {
      type = types.bool;
      default = pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform;
      defaultText = literalExpression "pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform";
      description = ''
        Validate each generated configuration file at build time with `dsf check-config`
        of {option}`package`. That runs the host's binary on the build machine, so it is
        off by default when cross-compiling to a machine the build machine cannot execute.
      '';
    };

    environmentFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/dsf.env";
      description = ''
        File of `DSF__SECTION__KEY=value` lines loaded into every DSF unit (for example
        `DSF__CLUSTER__SECRET` or a `DSF__STORE__URL` with a password). Keep it outside the
        Nix store; give it as a string so that it is not copied there.
      '';
    };

    tls = tls.options;

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Open the ports of the processes that listen on a non-loopback address: the
        balancer's three ports when {option}`balancer.listenAddress` is not loopback,
        and each node's port when its `listenAddress` is not. Admin listeners bind
        127.0.0.1 and are never opened.
      '';
    };

    prometheus = {
      enable = lib.mkEnableOption ''
        a scrape job for every admin listener of this host (`/metrics` of the balancer and
        of each node, on 127.0.0.1) in {option}`services.prometheus.scrapeConfigs`, and the
        alert rules of `monitoring/alerts.yaml` in {option}`services.prometheus.ruleFiles`.
        Processes whose admin port is `null` are not scraped'';
      jobName = mkOption {
        type = types.str;
        default = "dsf";
        description = "`job_name` of the scrape configuration.";
      };
      alertRules = mkOption {
        type = types.bool;
        default = true;
        description = "Add the repository's `monitoring/alerts.yaml` (when present) to {option}`services.prometheus.ruleFiles`.";
      };
    };

    cluster.secretFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/dsf-cluster-secret";
      description = ''
        File holding the shared secret nodes present to the balancer. `null` with the local
        balancer enabled: a random secret is generated once in `${generatedSecret}`.
        Nodes that register with a balancer on another host need that balancer's secret.
      '';
    };

    balancer = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Run a balancer on this host (unit `dsf-balancer.service`).";
      };
      listenAddress = mkOption {
        type = types.str;
        default = "127.0.0.1";
        example = "0.0.0.0";
        description = "Address the balancer's three listeners bind.";
      };
      ports = {
        registration = mkOption {
          type = types.port;
          default = 6200;
          description = "Port nodes register on.";
        };
        directory = mkOption {
          type = types.port;
          default = 6300;
          description = "Port clients ask which node to talk to.";
        };
        proxy = mkOption {
          type = types.port;
          default = 6400;
          description = "Port clients send requests on, forwarded to nodes.";
        };
      };
      adminPort = mkOption {
        type = types.nullOr types.port;
        default = 9100;
        description = "Port of the balancer's admin HTTP listener on 127.0.0.1; `null` = off.";
      };
      algorithm = mkOption {
        type = types.enum ["consistent_hash" "bounded_load" "round_robin" "weighted_round_robin" "least_inflight" "least_connections" "p2c" "random"];
        default = "consistent_hash";
        description = "Default node selection algorithm.";
      };
      leaseTtl = mkOption {
        type = types.str;
        default = "3s";
        description = "A node that sends no heartbeat for this long is removed.";
      };
      heartbeat = mkOption {
        type = types.str;
        default = "1s";
        description = "Heartbeat interval the balancer asks nodes for.";
      };
      etcd = etcd.options;
    };

    nodes = {
      count = mkOption {
        type = types.ints.positive;
        default = 1;
        description = ''
          Number of identical nodes, named `1`…`count` (units `dsf-node-<n>.service`),
          listening on consecutive ports from {option}`basePort`. Setting both this and
          {option}`instances` is an error: use one or the other.
        '';
      };
      basePort = mkOption {
        type = types.port;
        default = 7001;
        description = "Port of node `1`; node `n` listens on `basePort + n - 1`.";
      };
      adminBasePort = mkOption {
        type = types.nullOr types.port;
        default = 9101;
        description = "Admin HTTP port of node `1` (then consecutive); `null` = off.";
      };
      instances = mkOption {
        type = types.attrsOf (types.submodule nodeModule);
        default = {};
        defaultText = literalExpression "nodes `1`…`count` generated from nodes.count and nodes.basePort";
        example = literalExpression ''
          {
            users = { port = 7001; ops = [ "user." ]; };
            blacklist = { port = 7002; ops = [ "blacklist." "collector." ]; pool.max = 32; };
          }
        '';
        description = "Named nodes, each with its own port and pool sizes (units `dsf-node-<name>.service`).";
      };
      register = mkOption {
        type = types.nullOr types.str;
        default =
          if cfg.balancer.enable
          then hostPort (addr.localAddress cfg.balancer.listenAddress) cfg.balancer.ports.registration
          else null;
        defaultText = literalExpression "the local balancer's registration address when it is enabled (a wildcard listen address is reached over loopback), else null";
        example = "lb-1.example.org:6200,lb-2.example.org:6200";
        description = ''
          Balancer registration address the nodes register with; `null` = do not
          register. Balancers that share membership (through etcd or Redis) may be
          listed together, separated by commas: a node holds its registration at the
          first that answers and moves to the next when that one fails.
        '';
      };
      startTimeout = mkOption {
        type = types.ints.between 20 86400;
        default = 300;
        example = 900;
        description = ''
          Seconds a node may take to start, waiting for its database included: the
          units' `TimeoutStartSec`. With MySQL the settings get
          `store.startup_timeout` ${toString startupMargin} s shorter, so that dsf gives up
          with its own error first and `Restart=on-failure` starts it again, instead
          of systemd killing it. If you set `store.startup_timeout` yourself, keep it
          below this.
        '';
      };
    };

    database = {
      createLocally = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Provision a local MySQL/MariaDB database (through {option}`services.mysql`) that
          the nodes reach over its unix socket as the system user `dsf`, without a
          password. With neither this nor {option}`url`, each node uses its embedded store.
        '';
      };
      name = mkOption {
        type = types.str;
        default = "dsf";
        description = ''
          Name of the local database (with {option}`createLocally`): letters, digits and
          `_` only, since services.mysql grants on it unquoted.
        '';
      };
      socket = mkOption {
        type = types.path;
        default = "/run/mysqld/mysqld.sock";
        description = "Unix socket of the local MySQL server.";
      };
      url = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "mysql://dsf@db.example.org:3306/dsf";
        description = "URL of an external MySQL database, without a password (see {option}`passwordFile`).";
      };
      passwordFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = "/run/secrets/dsf-db-password";
        description = "File holding the password for {option}`url`, kept out of the Nix store.";
      };
      pool = {
        min = mkOption {
          type = types.ints.positive;
          default = 1;
          description = "Default for each node's `pool.min`.";
        };
        max = mkOption {
          type = types.ints.positive;
          default = 16;
          description = "Default for each node's `pool.max`.";
        };
      };
    };

    redis = {
      createLocally = mkOption {
        type = types.bool;
        default = false;
        description = "Provision a local Redis (`services.redis.servers.dsf`) as the shared cache.";
      };
      port = mkOption {
        type = types.nullOr types.port;
        default = null;
        example = 6379;
        description = ''
          The local Redis always listens on the unix socket `${localRedisSocket}` (group
          `${localRedisGroup}`, mode 0660), which the nodes use. A port here makes it also
          listen on 127.0.0.1, for other local clients; set {option}`passwordFile` then,
          since any local user can reach a TCP port.
        '';
      };
      urls = mkOption {
        type = types.listOf types.str;
        default = [];
        example = ["redis://cache-1:6379/0" "rediss://cache-2:6380/0"];
        description = ''
          External Redis URLs: independent servers, sharded by consistent hashing, or
          with {option}`cluster` the seed nodes of one Redis Cluster; empty = in-process
          cache. Without a password: see {option}`passwordFile`.
        '';
      };
      passwordFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = "/run/secrets/dsf-redis-password";
        description = ''
          File holding the Redis password, kept out of the Nix store: handed to the nodes
          as a systemd credential and added to every Redis URL when the unit starts
          (percent-encoded). With {option}`createLocally`, also the local Redis's
          `requirepass`.
        '';
      };
      cluster = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Treat {option}`urls` as seed nodes of one Redis Cluster (`cache.cluster`)
          instead of independent shards: the nodes learn the cluster's slots from any
          seed that answers, so list a few masters and replicas. The keys of one cache
          entry share a hash tag; a moved slot, a failover or a lost shard is served
          from the database, never with a stale value (PROTOCOL §10).
        '';
      };
    };

    cache = {
      ttl = mkOption {
        type = types.str;
        default = "300s";
        description = "Lifetime of a cached positive answer.";
      };
      negativeTtl = mkOption {
        type = types.str;
        default = "30s";
        description = "Lifetime of a cached \"not listed\" answer.";
      };
    };
  };

  config = mkIf cfg.enable {
    assertions = let
      countSet = options.services.dsf.nodes.count.highestPrio < (lib.mkOptionDefault null).priority;
      instancesSet = options.services.dsf.nodes.instances.highestPrio < (mkDefault null).priority;
      badNames = lib.filter (n: builtins.match "[A-Za-z0-9_.-]+" n == null) (lib.attrNames nodes);
      poolInverted = lib.filter (n: nodes.${n}.pool.min > nodes.${n}.pool.max) (lib.attrNames nodes);
      storeUrls = lib.unique (lib.filter (u: u != "") (map (s: s.store.url or "") allSettings));
      redisUrlsInSettings = lib.unique (lib.concatMap (s: (s.cache.redis or []) ++ lib.optional ((s.balancer.redis or "") != "") s.balancer.redis) allSettings);
      inlinePasswords = lib.filter (s: (s.store.password or "") != "") allSettings;
      clusterWithoutSeeds = lib.attrNames (lib.filterAttrs (name: node: let
        s = nodeSettings name node;
      in
        (s.cache.cluster or false) && (s.cache.redis or []) == [])
      nodes);
      badSocketAddresses = lib.unique (lib.optionals cfg.balancer.enable (sock.badAddresses balancerListeners) ++ lib.concatMap (n: sock.badAddresses (nodeListeners n)) (lib.attrValues nodes));
    in
      [
        {
          assertion = !(countSet && instancesSet);
          message = "services.dsf.nodes: set either nodes.count (numbered nodes from nodes.basePort) or nodes.instances (named nodes), not both.";
        }
        {
          assertion = cfg.balancer.enable || nodes != {};
          message = "services.dsf: nothing to run; keep services.dsf.balancer.enable = true or define services.dsf.nodes.";
        }
        {
          assertion = badNames == [];
          message = "services.dsf.nodes.instances: names ${lib.concatStringsSep ", " badNames} are not usable in unit names; use letters, digits, '_', '.', '-'.";
        }
        {
          assertion = poolInverted == [];
          message = "services.dsf.nodes.instances: pool.min > pool.max for ${lib.concatStringsSep ", " poolInverted}; raise pool.max or lower pool.min.";
        }
        {
          assertion = duplicatePorts == [];
          message = "services.dsf: port(s) ${lib.concatMapStringsSep ", " toString duplicatePorts} are used twice; give each node, admin listener and balancer listener its own port.";
        }
        {
          assertion = !(cfg.database.createLocally && cfg.database.url != null);
          message = "services.dsf.database: createLocally = true provisions the database itself; remove database.url, or set createLocally = false to use the external database.";
        }
        {
          assertion = !cfg.database.createLocally || builtins.match "[A-Za-z0-9_]{1,64}" cfg.database.name != null;
          message = "services.dsf.database.name = \"${cfg.database.name}\" cannot be used: services.mysql grants on `${cfg.database.name}.*` unquoted, so MySQL rejects any character but letters, digits and '_' (at most 64); use for example \"${lib.replaceStrings ["-" "." " "] ["_" "_" "_"] cfg.database.name}\".";
        }
        {
          assertion = !(cfg.database.createLocally && cfg.database.passwordFile != null);
          message = "services.dsf.database: the local database uses unix-socket authentication and needs no password; remove database.passwordFile.";
        }
        {
          assertion = cfg.database.passwordFile == null || cfg.database.url != null;
          message = "services.dsf.database.passwordFile is set but database.url is not; set database.url = \"mysql://USER@HOST:3306/dsf\".";
        }
        {
          assertion = lib.all (u: !redisUrls.hasPassword u) storeUrls;
          message = "services.dsf: the database URL ${lib.concatMapStringsSep ", " redisUrls.redact (lib.filter redisUrls.hasPassword storeUrls)} (database.url or settings.store.url) contains a password, which would land in the world-readable Nix store; remove it from the URL and put it in a file named by services.dsf.database.passwordFile.";
        }
        {
          assertion = inlinePasswords == [];
          message = "services.dsf: settings.store.password would land in the world-readable Nix store; remove it and put the password in a file named by services.dsf.database.passwordFile.";
        }
        {
          assertion = lib.all (u: !redisUrls.hasPassword u) redisUrlsInSettings;
          message = "services.dsf: the Redis URL(s) ${lib.concatMapStringsSep ", " redisUrls.redact (lib.filter redisUrls.hasPassword redisUrlsInSettings)} (redis.urls, settings.cache.redis or settings.balancer.redis) contain a password, which would land in the world-readable Nix store; remove it (`redis://:…@`, `?pass=`, `?password=`) and put it in a file named by services.dsf.redis.passwordFile.";
        }
        {
          assertion = !(cfg.redis.createLocally && cfg.redis.urls != []);
          message = "services.dsf.redis: createLocally = true runs Redis here; remove redis.urls, or set createLocally = false to use them.";
        }
        {
          assertion = cfg.redis.passwordFile == null || cfg.redis.createLocally || cfg.redis.urls != [];
          message = "services.dsf.redis.passwordFile is set but no Redis is used; set redis.urls = [ \"redis://HOST:6379/0\" ] or redis.createLocally = true, or remove redis.passwordFile.";
        }
        {
          assertion = !(cfg.redis.cluster && cfg.redis.createLocally);
          message = "services.dsf.redis.cluster: the local Redis (redis.createLocally) is a single server, not a cluster; set redis.createLocally = false and list the cluster's seed nodes in redis.urls, or set redis.cluster = false.";
        }
        {
          assertion = clusterWithoutSeeds == [];
          message = "services.dsf.redis.cluster = true needs the cluster's seed nodes: set redis.urls = [ \"redis://cache-1:6379\" \"redis://cache-2:6379\" … ] (settings.cache.redis is empty for ${lib.concatStringsSep ", " clusterWithoutSeeds}).";
        }
        {
          assertion = (cfg.settings.cluster.secret or "") == "";
          message = "services.dsf.settings.cluster.secret would land in the world-readable Nix store; put the secret in a file and set services.dsf.cluster.secretFile instead.";
        }
        {
          assertion = !(lib.any inStore [cfg.cluster.secretFile cfg.database.passwordFile cfg.redis.passwordFile cfg.environmentFile]);
          message = "services.dsf: cluster.secretFile, database.passwordFile, redis.passwordFile and environmentFile must not point into the Nix store (everyone can read it); give them as strings like \"/run/secrets/dsf\".";
        }
        {
          assertion = cfg.balancer.enable || nodes == {} || cfg.nodes.register == null || cfg.cluster.secretFile != null || cfg.environmentFile != null;
          message = "services.dsf: the nodes register with a remote balancer but have no cluster secret; set services.dsf.cluster.secretFile to a file holding that balancer's secret.";
        }
        {
          assertion = badSocketAddresses == [];
          message = "services.dsf.socketActivation: ${lib.concatStringsSep ", " badSocketAddresses} is not an IP address, which a .socket unit needs (ListenStream=); use the address itself, or set socketActivation = false.";
        }
        {
          assertion = !cfg.prometheus.enable || adminTargets != [];
          message = "services.dsf.prometheus.enable: no process has an admin listener to scrape; set services.dsf.balancer.adminPort or services.dsf.nodes.adminBasePort (or a node's adminPort).";
        }
      ]
      ++ etcd.assertions
      ++ tls.assertions;

    warnings =
      lib.optional (!useMysql && lib.length (lib.attrNames nodes) > 1)
      "services.dsf: ${toString (lib.length (lib.attrNames nodes))} nodes with embedded stores do not share users, sessions or the blacklist; set services.dsf.database.createLocally = true or services.dsf.database.url."
      ++ lib.optional (cfg.nodes.register == null && nodes != {})
      "services.dsf: nodes.register is null, so no balancer will send work to the nodes."
      ++ lib.optional (cfg.redis.createLocally && cfg.redis.port != null && cfg.redis.passwordFile == null)
      "services.dsf.redis.port: the local Redis also listens on 127.0.0.1:${toString cfg.redis.port} without a password, so every local user can read and change the cache; set services.dsf.redis.passwordFile, or redis.port = null (the nodes use the unix socket)."
      ++ lib.optional (cfg.prometheus.enable && !(config.services.prometheus.enable or false))
      "services.dsf.prometheus.enable adds scrape targets to services.prometheus, which is not enabled on this host; set services.prometheus.enable = true."
      ++ lib.optional (cfg.openFirewall && cfg.balancer.enable && isLoopback cfg.balancer.listenAddress)
      "services.dsf.openFirewall: the balancer listens on ${cfg.balancer.listenAddress} (loopback), so its ports stay closed; set services.dsf.balancer.listenAddress = \"0.0.0.0\" to serve other hosts.";

    services.dsf.nodes.instances = mkDefault (lib.listToAttrs (lib.genList (i: {
        name = toString (i + 1);
        value = {
          port = cfg.nodes.basePort + i;
          adminPort =
            if cfg.nodes.adminBasePort == null
            then null
            else cfg.nodes.adminBasePort + i;
        };
      })
      cfg.nodes.count));

    services.dsf.settings = {
      store = mkIf useMysql {
        url = mkDefault (
          if cfg.database.createLocally
          then localStoreUrl
          else cfg.database.url
        );
        startup_timeout = mkDefault startupTimeout;
      };
      cache = {
        redis = mkDefault (
          if cfg.redis.createLocally
          then [localRedisUrl]
          else cfg.redis.urls
        );
        cluster = mkDefault cfg.redis.cluster;
        ttl = mkDefault cfg.cache.ttl;
        negative_ttl = mkDefault cfg.cache.negativeTtl;
      };
      balancer = mkIf cfg.balancer.enable {
        registration = mkDefault (hostPort cfg.balancer.listenAddress cfg.balancer.ports.registration);
        directory = mkDefault (hostPort cfg.balancer.listenAddress cfg.balancer.ports.directory);
        proxy = mkDefault (hostPort cfg.balancer.listenAddress cfg.balancer.ports.proxy);
        algorithm = mkDefault cfg.balancer.algorithm;
        lease_ttl = mkDefault cfg.balancer.leaseTtl;
        heartbeat = mkDefault cfg.balancer.heartbeat;
        # Only when used, so that a package without etcd support takes the file.
        etcd = mkIf etcd.used (mkDefault etcd.endpoints);
        etcd_prefix = mkIf etcd.used (mkDefault cfg.balancer.etcd.prefix);
      };
    };

    services.mysql = mkIf cfg.database.createLocally {
      enable = true;
      package = mkDefault pkgs.mariadb;
      ensureDatabases = [cfg.database.name];
      ensureUsers = [
        {
          name = "dsf";
          ensurePermissions."${cfg.database.name}.*" = "ALL PRIVILEGES";
        }
      ];
    };

    # As nixpkgs' nextcloud and paperless do: a unix socket of the server's group,
    # which the DSF units join (SupplementaryGroups), and TCP only on request.
    services.redis.servers.dsf = mkIf cfg.redis.createLocally {
      enable = true;
      unixSocket = localRedisSocket;
      unixSocketPerm = 660;
      bind = "127.0.0.1";
      port =
        if cfg.redis.port == null
        then 0
        else cfg.redis.port;
      requirePassFile = mkIf (cfg.redis.passwordFile != null) cfg.redis.passwordFile;
    };

    # nixpkgs' defaults make it one member on 127.0.0.1:2379 (peers on :2380);
    # whatever else is set in services.etcd, the balancer uses its advertised URLs.
    services.etcd = mkIf cfg.balancer.etcd.createLocally {
      enable = true;
    };

    services.prometheus = mkIf cfg.prometheus.enable {
      scrapeConfigs = [
        {
          job_name = cfg.prometheus.jobName;
          metrics_path = "/metrics";
          static_configs = adminTargets;
        }
      ];
      ruleFiles = lib.optional (cfg.prometheus.alertRules && builtins.pathExists alertRules) alertRules;
    };

    environment.systemPackages = [cfg.package];

    # Each process's settings, at the path its unit names: a new file alone leaves the
    # unit unchanged, so that a switch reloads (SIGHUP) instead of restarting.
    environment.etc =
      lib.optionalAttrs cfg.balancer.enable {"dsf/balancer.toml".source = configFile "balancer" balancerSettings;}
      // lib.mapAttrs' (name: node: lib.nameValuePair "dsf/node-${name}.toml" {source = configFile "node-${name}" (nodeSettings name node);}) nodes;

    systemd.sockets = allSockets;

    networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall (
      lib.optionals (cfg.balancer.enable && !isLoopback cfg.balancer.listenAddress) (lib.attrValues cfg.balancer.ports)
      ++ lib.concatMap (n: lib.optional (!isLoopback n.listenAddress) n.port) (lib.attrValues nodes)
    );

    systemd.targets.dsf = {
      description = "DSF balancer and nodes";
      wantedBy = ["multi-user.target"];
    };

    systemd.services =
      {
        dsf-balancer = mkIf cfg.balancer.enable (service.unit ({
            name = "balancer";
            description = "DSF balancer";
            command = "balancer";
            sockets = lib.attrNames balancerSockets;
            inherit
              (sock.triggers {
                settings = balancerSettings;
                file = configFile "balancer" balancerSettings;
              })
              reloadTriggers
              restartTriggers
              ;
            # Wanted, not required: the balancer outlives an etcd restart, serving
            # its last view of the membership meanwhile.
            after = lib.optional generateSecret "dsf-secret.service" ++ lib.optional cfg.balancer.etcd.createLocally "etcd.service";
            requires = lib.optional generateSecret "dsf-secret.service";
            wants = lib.optional cfg.balancer.etcd.createLocally "etcd.service";
            before = nodeUnits;
            network = balancerNeedsNetwork;
            ports = selfBound (lib.attrValues cfg.balancer.ports ++ lib.optional (cfg.balancer.adminPort != null) cfg.balancer.adminPort);
            credentials = (tls.unit {balancer = true;}).credentials ++ etcd.unit.credentials;
            extraEnvironment = (tls.unit {balancer = true;}).environment // etcd.unit.environment;
          }
          // writable "dsf-balancer" balancerSettings));

        dsf-secret = mkIf generateSecret {
          description = "Generate the DSF cluster secret";
          unitConfig.ConditionPathExists = "!${generatedSecret}";
          # Needs no network and no privilege: systemd itself reads the file (as root)
          # for the other units' LoadCredential.
          serviceConfig = {
            Type = "oneshot";
            CapabilityBoundingSet = "";
            DynamicUser = true;
            LockPersonality = true;
            MemoryDenyWriteExecute = true;
            NoNewPrivileges = true;
            PrivateDevices = true;
            PrivateMounts = true;
            PrivateNetwork = true;
            PrivateTmp = true;
            ProcSubset = "pid";
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
            RestrictAddressFamilies = "none";
            RestrictNamespaces = true;
            RestrictRealtime = true;
            RestrictSUIDSGID = true;
            StateDirectory = baseNameOf secretDir;
            StateDirectoryMode = "0700";
            SystemCallArchitectures = "native";
            SystemCallFilter = ["@system-service" "~@privileged @resources"];
            UMask = "0077";
          };
          script = ''
            head -c 36 /dev/urandom | base64 -w0 > ${generatedSecret}.tmp
            mv ${generatedSecret}.tmp ${generatedSecret}
          '';
        };
      }
      // lib.mapAttrs' (name: node: lib.nameValuePair "dsf-node-${name}" (nodeUnit name node)) nodes;
  };
}

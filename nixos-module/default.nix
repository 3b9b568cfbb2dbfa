# services.dsf: one DSF balancer and any number of DSF nodes on one host, with optional
# local MySQL (MariaDB) and Redis provisioning.
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

  hostPort = address: port:
    if lib.hasInfix ":" address
    then "[${address}]:${toString port}"
    else "${address}:${toString port}";
  isLoopback = address: address == "localhost" || lib.hasPrefix "127." address || address == "::1";
  inStore = path: path != null && lib.hasPrefix builtins.storeDir (toString path);

  localStoreUrl = "mysql://dsf@localhost/${cfg.database.name}?socket=${cfg.database.socket}";
  localRedisUrl = "redis://127.0.0.1:${toString cfg.redis.port}/0";

  useMysql = cfg.database.createLocally || cfg.database.url != null;
  nodes = cfg.nodes.instances;
  nodeUnits = lib.mapAttrsToList (name: _: "dsf-node-${name}.service") nodes;

  # Render one process's settings and validate them with the package's own
  # `dsf check-config`, so that a wrong key fails `nixos-rebuild`, not the service.
  configFile = name: settings: let
    file = settingsFormat.generate "dsf-${name}.toml" settings;
  in
    if cfg.checkConfig
    then
      pkgs.runCommand "dsf-${name}-checked.toml" {nativeBuildInputs = [cfg.package];} ''
        dsf check-config ${file}
        cp ${file} $out
      ''
    else file;

  balancerSettings = lib.recursiveUpdate cfg.settings {
    admin.listen = lib.optionalString (cfg.balancer.adminPort != null) (hostPort "127.0.0.1" cfg.balancer.adminPort);
  };

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

  service = import ./service.nix {inherit cfg lib secretFile useSecret;};

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

    checkConfig = mkOption {
      type = types.bool;
      default = true;
      description = "Validate each generated configuration file at build time with `dsf check-config`.";
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

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the balancer's ports, and the ports of nodes that listen on a non-loopback address.";
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
    };

    nodes = {
      count = mkOption {
        type = types.ints.positive;
        default = 1;
        description = ''
          Number of identical nodes, named `1`…`count` (units `dsf-node-<n>.service`),
          listening on consecutive ports from {option}`basePort`. Ignored when
          {option}`instances` is set.
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
          then hostPort (lib.replaceStrings ["0.0.0.0" "::"] ["127.0.0.1" "::1"] cfg.balancer.listenAddress) cfg.balancer.ports.registration
          else null;
        defaultText = literalExpression "the local balancer's registration address when it is enabled, else null";
        example = "lb.example.org:6200";
        description = "Balancer registration address the nodes register with; `null` = do not register.";
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
        description = "Database name.";
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
        type = types.port;
        default = 6379;
        description = "Port of the local Redis server (on 127.0.0.1).";
      };
      urls = mkOption {
        type = types.listOf types.str;
        default = [];
        example = ["redis://cache-1:6379/0" "redis://cache-2:6379/0"];
        description = "External Redis URLs (sharded by consistent hashing); empty = in-process cache.";
      };
      cluster = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Treat {option}`urls` as one Redis Cluster instead of independent shards. Not
          supported by dsf yet: the servers in {option}`urls` are sharded by the hash ring.
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
    in [
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
        assertion = !(cfg.database.createLocally && cfg.database.passwordFile != null);
        message = "services.dsf.database: the local database uses unix-socket authentication and needs no password; remove database.passwordFile.";
      }
      {
        assertion = cfg.database.passwordFile == null || cfg.database.url != null;
        message = "services.dsf.database.passwordFile is set but database.url is not; set database.url = \"mysql://USER@HOST:3306/dsf\".";
      }
      {
        assertion = cfg.database.url == null || builtins.match "[a-z]+://[^/@]*:[^/@]*@.*" cfg.database.url == null;
        message = "services.dsf.database.url contains a password, which would land in the world-readable Nix store; remove it from the URL and put it in a file named by services.dsf.database.passwordFile.";
      }
      {
        assertion = !(cfg.redis.createLocally && cfg.redis.urls != []);
        message = "services.dsf.redis: createLocally = true runs Redis here; remove redis.urls, or set createLocally = false to use them.";
      }
      {
        assertion = !cfg.redis.cluster;
        message = "services.dsf.redis.cluster: dsf does not support Redis Cluster yet; set redis.cluster = false and list the servers in redis.urls (they are sharded by the hash ring).";
      }
      {
        assertion = (cfg.settings.cluster.secret or "") == "";
        message = "services.dsf.settings.cluster.secret would land in the world-readable Nix store; put the secret in a file and set services.dsf.cluster.secretFile instead.";
      }
      {
        assertion = !(lib.any inStore [cfg.cluster.secretFile cfg.database.passwordFile cfg.environmentFile]);
        message = "services.dsf: cluster.secretFile, database.passwordFile and environmentFile must not point into the Nix store (everyone can read it); give them as strings like \"/run/secrets/dsf\".";
      }
      {
        assertion = cfg.balancer.enable || nodes == {} || cfg.nodes.register == null || cfg.cluster.secretFile != null || cfg.environmentFile != null;
        message = "services.dsf: the nodes register with a remote balancer but have no cluster secret; set services.dsf.cluster.secretFile to a file holding that balancer's secret.";
      }
    ];

    warnings =
      lib.optional (!useMysql && lib.length (lib.attrNames nodes) > 1)
      "services.dsf: ${toString (lib.length (lib.attrNames nodes))} nodes with embedded stores do not share users, sessions or the blacklist; set services.dsf.database.createLocally = true or services.dsf.database.url."
      ++ lib.optional (cfg.nodes.register == null && nodes != {})
      "services.dsf: nodes.register is null, so no balancer will send work to the nodes.";

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
      store.url = mkIf useMysql (mkDefault (
        if cfg.database.createLocally
        then localStoreUrl
        else cfg.database.url
      ));
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

    services.redis.servers.dsf = mkIf cfg.redis.createLocally {
      enable = true;
      bind = "127.0.0.1";
      inherit (cfg.redis) port;
    };

    environment.systemPackages = [cfg.package];

    networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall (
      lib.optionals cfg.balancer.enable (lib.attrValues cfg.balancer.ports)
      ++ lib.concatMap (n: lib.optional (!isLoopback n.listenAddress) n.port) (lib.attrValues nodes)
    );

    systemd.targets.dsf = {
      description = "DSF balancer and nodes";
      wantedBy = ["multi-user.target"];
    };

    systemd.services =
      {
        dsf-balancer = mkIf cfg.balancer.enable (service.unit {
          name = "balancer";
          description = "DSF balancer";
          command = "balancer";
          config = configFile "balancer" balancerSettings;
          after = lib.optional generateSecret "dsf-secret.service";
          requires = lib.optional generateSecret "dsf-secret.service";
          before = nodeUnits;
          ports = lib.attrValues cfg.balancer.ports;
        });

        dsf-secret = mkIf generateSecret {
          description = "Generate the DSF cluster secret";
          unitConfig.ConditionPathExists = "!${generatedSecret}";
          serviceConfig = {
            Type = "oneshot";
            StateDirectory = baseNameOf secretDir;
            StateDirectoryMode = "0700";
            UMask = "0077";
          };
          script = ''
            head -c 36 /dev/urandom | base64 -w0 > ${generatedSecret}.tmp
            mv ${generatedSecret}.tmp ${generatedSecret}
          '';
        };
      }
      // lib.mapAttrs' (name: node:
        lib.nameValuePair "dsf-node-${name}" (service.unit {
          name = "node-${name}";
          description = "DSF node ${name}";
          command = "node";
          config = configFile "node-${name}" (nodeSettings name node);
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
          ports = [node.port];
        }))
      nodes;
  };
}

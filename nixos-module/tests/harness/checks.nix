# What each configuration in ../ must evaluate to. Each entry: `check`, from the
# evaluation (./eval.nix) to a list of { what; ok; }, and optionally `hostSystem`.
# The defect tests (named after issue 17's items) all failed on the module before
# that issue's fixes.
{lib}: let
  expect = what: ok: {inherit what ok;};
  asserts = r: text: lib.any (lib.hasInfix text) r.failedAssertions;
  noAssertions = r: expect "no failed assertions (${lib.concatStringsSep " | " r.failedAssertions})" (r.failedAssertions == []);
  sc = r: unit: r.units.${unit}.serviceConfig;
  nodeUnits = r: lib.filter (lib.hasPrefix "dsf-node-") (lib.attrNames r.units);
  allNodes = r: f: nodeUnits r != [] && lib.all f (nodeUnits r);
  list = v:
    if lib.isList v
    then v
    else [v];
in {
  bad.check = r: [
    (expect "at least six failed assertions" (lib.length r.failedAssertions >= 6))
  ];

  tls.check = r: let
    lb = r.units.dsf-balancer;
    n1 = r.units.dsf-node-1;
    n2 = r.units.dsf-node-2;
    creds = u: (sc r u).LoadCredential;
    envOf = u: r.units.${u}.environment;
  in [
    (noAssertions r)
    (expect "the balancer gets certificate, key, CA and client CA as credentials" (lib.all (c: lib.elem c (creds "dsf-balancer")) ["tls-cert:/var/lib/acme/dsf/fullchain.pem" "tls-key:/var/lib/acme/dsf/key.pem" "tls-ca:/etc/dsf/ca.pem" "tls-client-ca:/etc/dsf/ca.pem"]))
    (expect "the balancer requires client certificates on registration" (lb.environment.DSF__TLS__CLIENT_AUTH == "registration" && lb.environment.DSF__TLS__CLIENT_CA == "%d/tls-client-ca"))
    (expect "every unit names the files in its credentials folder" (lib.all (u: (envOf u).DSF__TLS__CERT == "%d/tls-cert" && (envOf u).DSF__TLS__KEY == "%d/tls-key" && (envOf u).DSF__TLS__CA == "%d/tls-ca") ["dsf-balancer" "dsf-node-1" "dsf-node-2"]))
    (expect "node 1 presents the host certificate" (lib.elem "tls-cert:/var/lib/acme/dsf/fullchain.pem" (creds "dsf-node-1") && lib.elem "tls-key:/var/lib/acme/dsf/key.pem" (creds "dsf-node-1")))
    (expect "node 2 presents its own" (lib.elem "tls-cert:/run/secrets/node-2.pem" (creds "dsf-node-2") && lib.elem "tls-key:/run/secrets/node-2.key" (creds "dsf-node-2")))
    (expect "nodes get no client CA" (!(n1.environment ? DSF__TLS__CLIENT_CA) && !lib.any (lib.hasPrefix "tls-client-ca:") (creds "dsf-node-2")))
    (expect "no TLS path is in any rendered settings" (lib.all (u: !lib.hasInfix "acme" (builtins.toJSON (r.settingsOf u)) && !lib.hasInfix "node-2.key" (builtins.toJSON (r.settingsOf u))) ["dsf-balancer" "dsf-node-1" "dsf-node-2"]))
    (expect "node 2 keeps the cluster secret credential too" (lib.any (lib.hasPrefix "cluster-secret:") (creds "dsf-node-2") && n2.environment.DSF__CLUSTER__SECRET_FILE == "%d/cluster-secret"))
  ];

  etcd-remote.check = r: let
    lb = r.settingsOf "dsf-balancer";
  in [
    (noAssertions r)
    (expect "a balancer and no node" (lib.attrNames r.units == ["dsf-balancer"]))
    (expect "the balancer gets the three endpoints as balancer.etcd" (lb.balancer.etcd == ["http://10.0.0.21:2379" "http://10.0.0.22:2379" "http://10.0.0.23:2379"]))
    (expect "and the default prefix as balancer.etcd_prefix" (lb.balancer.etcd_prefix == "/dsf/"))
    (expect "no Redis membership" ((lb.balancer.redis or "") == ""))
    (expect "the balancer waits for the network to reach etcd" (lib.elem "network-online.target" r.units.dsf-balancer.wants && lib.elem "network-online.target" r.units.dsf-balancer.after))
    (expect "no local etcd" (!r.config.services.etcd.enable && !lib.elem "etcd.service" r.units.dsf-balancer.after))
    (expect "its three ports are open" (lib.sort (a: b: a < b) r.config.networking.firewall.allowedTCPPorts == [6200 6300 6400]))
  ];

  etcd-local.check = r: let
    lb = r.settingsOf "dsf-balancer";
    u = r.units.dsf-balancer;
  in [
    (noAssertions r)
    (expect "services.etcd runs here" r.config.services.etcd.enable)
    (expect "the balancer uses its advertised client URL" (lb.balancer.etcd == ["http://127.0.0.1:2379"] && lb.balancer.etcd_prefix == "/dsf/"))
    (expect "the balancer starts after etcd.service and wants it" (lib.elem "etcd.service" u.after && lib.elem "etcd.service" u.wants))
    (expect "but does not stop with it (no Requires=)" (!lib.elem "etcd.service" u.requires))
    (expect "a loopback etcd needs no network-online.target" (!lib.elem "network-online.target" u.after))
  ];

  etcd-tls.check = r: let
    lb = r.settingsOf "dsf-balancer";
    creds = (sc r "dsf-balancer").LoadCredential;
    env = r.units.dsf-balancer.environment;
  in [
    (noAssertions r)
    (expect "the balancer gets the https:// endpoints as balancer.etcd" (lib.all (lib.hasPrefix "https://") lb.balancer.etcd && lib.length lb.balancer.etcd == 3))
    (expect "CA, client certificate and key reach it as credentials" (lib.all (c: lib.elem c creds) ["etcd-tls-ca:/etc/dsf/etcd-ca.pem" "etcd-tls-cert:/run/secrets/etcd-client.pem" "etcd-tls-key:/run/secrets/etcd-client.key"]))
    (expect "named in its environment as balancer.etcd_tls_*" (env.DSF__BALANCER__ETCD_TLS_CA == "%d/etcd-tls-ca" && env.DSF__BALANCER__ETCD_TLS_CERT == "%d/etcd-tls-cert" && env.DSF__BALANCER__ETCD_TLS_KEY == "%d/etcd-tls-key"))
    (expect "no TLS path is in the rendered settings" (!lib.hasInfix "etcd-client" (builtins.toJSON lb) && !lib.hasInfix "etcd-ca" (builtins.toJSON lb)))
  ];

  etcd-tls-bad.check = r: [
    (expect "a client certificate without its key is refused" (asserts r "balancer.etcd: certificateFile and keyFile go together"))
    (expect "TLS files with only http:// endpoints are refused" (asserts r "caFile and certificateFile are for https:// endpoints"))
  ];

  register-several.check = r: [
    (noAssertions r)
    (expect "the nodes get both balancers in node.register" (allNodes r (u: (r.settingsOf u).node.register == "127.0.0.1:6200,10.0.0.12:6200")))
    (expect "a remote balancer listed second: the nodes wait for network-online.target" (allNodes r (u: lib.elem "network-online.target" r.units.${u}.after)))
  ];

  etcd-bad.check = r: [
    (expect "endpoints beside a local etcd are refused" (asserts r "remove balancer.etcd.endpoints, or set createLocally = false"))
    (expect "etcd and Redis membership together are refused, naming both" (asserts r "both etcd (balancer.etcd.endpoints, balancer.etcd.createLocally or settings.balancer.etcd) and Redis (settings.balancer.redis)"))
  ];

  redis-cluster.check = r: let
    settings = r.settingsOf "dsf-node-a";
  in [
    (noAssertions r)
    (expect "two nodes and no balancer" (lib.attrNames r.units == ["dsf-node-a" "dsf-node-b"]))
    (expect "the nodes get cache.cluster = true" (allNodes r (u: (r.settingsOf u).cache.cluster)))
    (expect "and the seed nodes, without the password" (settings.cache.redis == ["redis://10.0.0.31:6379" "redis://10.0.0.32:6379" "redis://10.0.0.33:6379"]))
    (expect "the password is added to every seed at start" (lib.hasInfix "redis://:\"$enc\"@10.0.0.31:6379,redis://:\"$enc\"@10.0.0.32:6379,redis://:\"$enc\"@10.0.0.33:6379" (r.preScriptOf "dsf-node-a")))
    (expect "the nodes list both balancers" (allNodes r (u: (r.settingsOf u).node.register == "10.0.0.11:6200,10.0.0.12:6200")))
    (expect "the node ports are open" (r.config.networking.firewall.allowedTCPPorts == [7001 7002]))
  ];

  redis-cluster-bad.check = r: [
    (expect "a cluster on the local single Redis is refused" (asserts r "the local Redis (redis.createLocally) is a single server"))
    (expect "a node without seed nodes is refused, naming it" (asserts r "settings.cache.redis is empty for a)"))
  ];

  tls-bad.check = r: [
    (expect "TLS without a CA is refused, naming caFile" (asserts r "set services.dsf.tls.caFile"))
    (expect "a key in the Nix store is refused" (asserts r "a private key must not be in the Nix store"))
  ];

  cluster.check = r: [(noAssertions r)];
  external.check = r: [(noAssertions r)];
  settings.check = r: [(noAssertions r)];

  redis-socket.check = r: let
    redis = r.config.services.redis.servers.dsf;
  in [
    (noAssertions r)
    (expect "the local Redis has no TCP listener (port 0)" (redis.port == 0))
    (expect "the local Redis listens on /run/redis-dsf/redis.sock, mode 0660" (redis.unixSocket or null == "/run/redis-dsf/redis.sock" && redis.unixSocketPerm or null == 660))
    (expect "nodes use the socket URL" (allNodes r (u: (r.settingsOf u).cache.redis == ["redis+unix:///run/redis-dsf/redis.sock"])))
    (expect "nodes join the socket's group redis-dsf" (allNodes r (u: (sc r u).SupplementaryGroups or [] == ["redis-dsf"])))
    (expect "nodes start after redis-dsf.service" (allNodes r (u: lib.elem "redis-dsf.service" r.units.${u}.after)))
  ];

  redis-password.check = r: let
    s = sc r "dsf-node-cache";
    settings = r.settingsOf "dsf-node-cache";
  in [
    (noAssertions r)
    (expect "the password file is a credential" (lib.elem "redis-password:/run/secrets/dsf-redis-password" s.LoadCredential))
    (expect "ExecStartPre writes the URLs with the password" (lib.length (list (s.ExecStartPre or [])) == 1))
    (expect "the script puts the encoded password in each URL" (lib.hasInfix "DSF__CACHE__REDIS=%s\\n' redis://:\"$enc\"@cache-1:6379/0,rediss://dsf:\"$enc\"@cache-2:6380/1 > /run/dsf-node-cache/redis.env" (r.preScriptOf "dsf-node-cache")))
    (expect "the script reads the credential" (lib.hasInfix "$CREDENTIALS_DIRECTORY/redis-password" (r.preScriptOf "dsf-node-cache")))
    (expect "ExecStart reads them from the RuntimeDirectory" (lib.elem "-/run/dsf-node-cache/redis.env" (list (s.EnvironmentFile or [])) && s.RuntimeDirectory or null == "dsf-node-cache"))
    (expect "the settings keep the URLs without a password" (settings.cache.redis == ["redis://cache-1:6379/0" "rediss://dsf@cache-2:6380/1"]))
    (expect "the password file's path is nowhere in the settings" (!lib.hasInfix "dsf-redis-password" (builtins.toJSON settings)))
  ];

  secrets-in-store.check = r: [
    (expect "a password in a Redis URL is refused" (asserts r "Redis URL(s) redis://cache-1:6379/0, unix:///run/redis/redis.sock, redis://cache-1:6379/2"))
    (expect "the refusal names redis.passwordFile" (asserts r "services.dsf.redis.passwordFile"))
    (expect "a password in the store URL is refused" (asserts r "database URL mysql://db.example.org:3306/dsf"))
    (expect "settings.store.password is refused" (asserts r "settings.store.password"))
    (expect "no message shows the password" (!lib.any (lib.hasInfix "hunter2") r.failedAssertions))
  ];

  ipv6.check = r: [
    (noAssertions r)
    (expect "the node registers at [2001:db8::5]:6200" ((r.settingsOf "dsf-node-1").node.register == "[2001:db8::5]:6200"))
    (expect "the balancer listens on [2001:db8::5]:6200" ((r.settingsOf "dsf-balancer").balancer.registration == "[2001:db8::5]:6200"))
    (expect "binding that address waits for network-online.target" (lib.elem "network-online.target" r.units.dsf-balancer.after))
  ];

  database-name.check = r: [
    (expect "database.name = \"dsf-prod\" is refused with a name that works" (asserts r "use for example \"dsf_prod\""))
  ];

  network-online.check = r: let
    u = r.units.dsf-node-1;
  in [
    (noAssertions r)
    (expect "the node wants network-online.target" (lib.elem "network-online.target" u.wants))
    (expect "the node starts after network-online.target" (lib.elem "network-online.target" u.after))
  ];

  start-timeout.check = r: let
    s = sc r "dsf-node-1";
    settings = r.settingsOf "dsf-node-1";
  in [
    (noAssertions r)
    (expect "the node has TimeoutStartSec=300s" (s.TimeoutStartSec or null == "300s"))
    (expect "dsf gives up on the database 10 s before that" (settings.store.startup_timeout or null == "290s"))
  ];

  cross = {
    hostSystem = "aarch64-linux";
    check = r: [
      (noAssertions r)
      (expect "checkConfig is off by default" (!r.config.services.dsf.checkConfig))
      (expect "no check-config derivation runs the aarch64 dsf" (!lib.hasInfix "-checked.toml" (toString r.config.environment.etc."dsf/node-1.toml".source)))
    ];
  };

  firewall.check = r: let
    open = r.config.networking.firewall.allowedTCPPorts;
  in [
    (noAssertions r)
    (expect "the node on 0.0.0.0 is open" (lib.elem 7001 open))
    (expect "the node on loopback is closed" (!lib.elem 7002 open))
    (expect "the balancer on loopback is closed" (!lib.any (p: lib.elem p open) [6200 6300 6400]))
  ];

  low-admin-port.check = r: [
    (noAssertions r)
    (expect "the balancer (admin 910) may bind it" ((sc r "dsf-balancer").CapabilityBoundingSet == ["CAP_NET_BIND_SERVICE"] && (sc r "dsf-balancer").AmbientCapabilities or [] == ["CAP_NET_BIND_SERVICE"]))
    (expect "the node (admin 911) may bind it" ((sc r "dsf-node-a").CapabilityBoundingSet == ["CAP_NET_BIND_SERVICE"] && (sc r "dsf-node-a").AmbientCapabilities or [] == ["CAP_NET_BIND_SERVICE"]))
  ];

  count-and-instances.check = r: [
    (expect "setting both is refused" (asserts r "set either nodes.count"))
    (expect "nodes.count's description does not say it is ignored" (!lib.hasInfix "Ignored" r.options.services.dsf.nodes.count.description))
  ];

  writable-dirs.check = r: [
    (noAssertions r)
    (expect "log.dir under /var/log is a LogsDirectory of every unit" (lib.all (u: (sc r u).LogsDirectory or [] == ["dsf"]) (["dsf-balancer"] ++ nodeUnits r)))
    (expect "a data_dir outside /var is a ReadWritePaths entry" ((sc r "dsf-node-a").ReadWritePaths or [] == ["/srv/dsf-a"]))
    (expect "a data_dir under /var/lib is an extra StateDirectory" ((sc r "dsf-node-b").StateDirectory == ["dsf-node-b" "dsf-data/b"]))
  ];

  prometheus.check = r: let
    p = r.config.services.prometheus;
    job = lib.head p.scrapeConfigs;
  in [
    (noAssertions r)
    (expect "one scrape job named dsf" (lib.length p.scrapeConfigs == 1 && job.job_name == "dsf"))
    (expect "targets: the balancer's and both nodes' admin listeners" (lib.concatMap (t: t.targets) job.static_configs == ["127.0.0.1:9100" "127.0.0.1:9101" "127.0.0.1:9102"]))
    (expect "each target is labelled with its process" (map (t: t.labels.process) job.static_configs == ["balancer" "node-1" "node-2"]))
  ];

  sockets.check = r: let
    sock = name: r.sockets.${name};
    fd = name: (sock name).socketConfig.FileDescriptorName;
    lbSockets = ["dsf-balancer" "dsf-balancer-directory" "dsf-balancer-proxy" "dsf-balancer-admin"];
  in [
    (noAssertions r)
    (expect "the balancer has a socket per listener, named as dsf takes them" (map fd lbSockets == ["registration" "directory" "proxy" "admin"]))
    (expect "the balancer's sockets bind its addresses" (map (n: (sock n).listenStreams) lbSockets == [["0.0.0.0:6200"] ["0.0.0.0:6300"] ["0.0.0.0:6400"] ["127.0.0.1:910"]]))
    (expect "every balancer socket activates dsf-balancer.service" (lib.all (n: (sock n).socketConfig.Service == "dsf-balancer.service") lbSockets))
    (expect "the balancer inherits all four" ((sc r "dsf-balancer").Sockets == map (n: "${n}.socket") (lib.sort (a: b: a < b) lbSockets)))
    (expect "the balancer requires and follows its sockets" (lib.all (n: lib.elem "${n}.socket" r.units.dsf-balancer.requires && lib.elem "${n}.socket" r.units.dsf-balancer.after) lbSockets))
    (expect "node a: node and admin sockets" (fd "dsf-node-a" == "node" && fd "dsf-node-a-admin" == "admin" && (sock "dsf-node-a").listenStreams == ["127.0.0.1:7001"] && (sock "dsf-node-a").socketConfig.Service == "dsf-node-a.service"))
    (expect "node b (no admin port): one socket" (r.sockets ? dsf-node-b && !(r.sockets ? dsf-node-b-admin) && (sc r "dsf-node-b").Sockets == ["dsf-node-b.socket"]))
    (expect "a configured address is bound before it exists (FreeBind)" ((sock "dsf-node-b").socketConfig.FreeBind or false && !((sock "dsf-node-a").socketConfig ? FreeBind)))
    (expect "the admin port below 1024 needs no capability: systemd binds it" ((sc r "dsf-balancer").CapabilityBoundingSet == "" && !((sc r "dsf-balancer") ? AmbientCapabilities)))
    (expect "sockets start with sockets.target and dsf.target" (lib.all (n: lib.elem "sockets.target" (sock n).wantedBy && lib.elem "dsf.target" (sock n).wantedBy) (lib.attrNames r.sockets)))
  ];

  sockets-off.check = r: [
    (noAssertions r)
    (expect "no .socket unit" (r.sockets == {}))
    (expect "no Sockets= in the services" (!((sc r "dsf-balancer") ? Sockets) && !((sc r "dsf-node-a") ? Sockets)))
  ];

  sockets-bad.check = r: [
    (expect "a host name as a socket address is refused, naming it" (asserts r "node-a.internal is not an IP address"))
  ];

  reload = {
    variants = {
      live = "reload-live";
      restart = "reload-restart";
    };
    check = r: let
      units = ["dsf-balancer" "dsf-node-1"];
    in [
      (noAssertions r)
      (expect "ExecReload sends SIGHUP" (lib.all (u: lib.hasSuffix "/bin/kill -HUP $MAINPID" (sc r u).ExecReload) units))
      (expect "the settings come from /etc/dsf, not a store path in ExecStart" ((sc r "dsf-balancer").ExecStart == "/nix/store/00000000000000000000000000000000-dsf/bin/dsf balancer --config /etc/dsf/balancer.toml" && lib.hasSuffix "--config /etc/dsf/node-1.toml" (sc r "dsf-node-1").ExecStart))
      (expect "/etc/dsf/node-1.toml is the rendered file the unit reloads on" (toString r.config.environment.etc."dsf/node-1.toml".source == toString (lib.head r.units.dsf-node-1.reloadTriggers)))
      (expect "each unit has one restart trigger" (lib.all (u: lib.length r.units.${u}.restartTriggers == 1) units))
    ];
    compare = r: v: let
      same = a: b: u: a.units.${u}.restartTriggers == b.units.${u}.restartTriggers && a.units.${u}.serviceConfig == b.units.${u}.serviceConfig;
      reloads = a: b: u: a.units.${u}.reloadTriggers != b.units.${u}.reloadTriggers;
    in [
      (expect "live keys changed: the balancer reloads, its restart trigger and service stay" (same r v.live "dsf-balancer" && reloads r v.live "dsf-balancer"))
      (expect "live keys changed: the node reloads, its restart trigger and service stay" (same r v.live "dsf-node-1" && reloads r v.live "dsf-node-1"))
      (expect "the new weight and algorithm are in the reloaded files" ((v.live.settingsOf "dsf-node-1").node.weight == 5 && (v.live.settingsOf "dsf-balancer").balancer.algorithm == "round_robin"))
      (expect "limits.request_timeout changed: both restart" (!(same r v.restart "dsf-balancer") && !(same r v.restart "dsf-node-1")))
    ];
  };
}

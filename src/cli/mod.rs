//! The `dsf` command line (PROTOCOL §6): one function per subcommand.

mod cert;
mod reload;
mod telemetry;
mod up;

use clap::{Args, Parser, Subcommand};
use dsf::client::{CallOptions, ClientError, Connection, DirectoryClient};
use dsf::config::{Config, ConfigError, Loader};
use dsf::runtime::shutdown;
use reload::reloader;
use std::path::PathBuf;
use std::time::Duration;

/// DSF: a distributed service framework.
#[derive(Debug, Parser)]
#[command(name = "dsf", version, about, propagate_version = true)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a whole local cluster: a balancer and N nodes, on the embedded defaults.
    Up(UpArgs),
    /// Run one node.
    Node(NodeArgs),
    /// Run one balancer (registration, directory and proxy ports).
    Balancer(BalancerArgs),
    /// Send one request and print the response JSON.
    Client(ClientArgs),
    /// Validate a configuration file.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
    /// Drive load against a node or proxy and report throughput and latency.
    Bench(dsf::bench::BenchArgs),
    /// Make a private CA, or a certificate signed by it (PROTOCOL §8).
    Cert(cert::CertArgs),
}

/// `dsf node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Protocol listener address (node.listen).
    #[arg(long)]
    pub listen: Option<String>,
    /// A balancer's registration address (node.register); several balancers sharing
    /// membership: comma-separated, tried in turn.
    #[arg(long)]
    pub register: Option<String>,
    /// MySQL URL (store.url); default: embedded store in --data.
    #[arg(long)]
    pub mysql: Option<String>,
    /// Redis URL (cache.redis); repeat for several instances.
    #[arg(long)]
    pub redis: Vec<String>,
    /// Data folder for the embedded stores (node.data_dir).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Admin HTTP listener (admin.listen); "" turns it off.
    #[arg(long)]
    pub admin: Option<String>,
    /// Node id (node.id).
    #[arg(long)]
    pub id: Option<String>,
    /// Operation prefixes to serve, comma-separated (node.ops), e.g. "user.,sys.".
    #[arg(long, value_delimiter = ',')]
    pub ops: Vec<String>,
    /// Service name announced to the balancer (node.service).
    #[arg(long)]
    pub service: Option<String>,
    /// Selection weight announced to the balancer, 1–1000 (node.weight).
    #[arg(long)]
    pub weight: Option<u32>,
    /// Event-loop threads (runtime.threads).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Replace the running node of this configuration without refusing a connection:
    /// take its listeners over runtime.upgrade_socket; it then drains and exits.
    #[arg(long)]
    pub upgrade: bool,
    /// Certificates (the [tls] section).
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// The `[tls]` flags shared by `dsf node` and `dsf balancer` (PROTOCOL §8).
#[derive(Debug, Args, Default)]
pub struct TlsArgs {
    /// PEM certificate chain presented as server and client (tls.cert).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (tls.key).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle verifying the servers this process connects to (tls.ca).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// PEM CA bundle verifying client certificates (tls.client_ca).
    #[arg(long)]
    pub tls_client_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// Applies the flags given as overrides.
    fn apply(&self, loader: Loader) -> Loader {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        loader
            .set_opt("tls.cert", path(&self.tls_cert))
            .set_opt("tls.key", path(&self.tls_key))
            .set_opt("tls.ca", path(&self.tls_ca))
            .set_opt("tls.client_ca", path(&self.tls_client_ca))
    }
}

/// `dsf up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// TOML configuration file (balancer and node sections apply).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// How many nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Data folder shared by the nodes' embedded stores (node.data_dir).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Host the balancer's listeners bind when configured on all interfaces
    /// (0.0.0.0, the default of `dsf balancer`): a local cluster stays local unless
    /// asked otherwise, e.g. `--bind 0.0.0.0`.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// The balancer's admin HTTP listener (admin.listen; default 127.0.0.1:9100);
    /// "" turns it off.
    #[arg(long)]
    pub admin: Option<String>,
    /// TLS everywhere, with a private CA kept in DATA/tls (made on the first run)
    /// and certificates issued for the balancer and each node.
    #[arg(long)]
    pub tls: bool,
}

/// `dsf balancer`.
#[derive(Debug, Args)]
pub struct BalancerArgs {
    /// TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Registration listener for nodes (balancer.registration).
    #[arg(long)]
    pub registration: Option<String>,
    /// Directory listener for clients (balancer.directory).
    #[arg(long)]
    pub directory: Option<String>,
    /// Proxy listener for clients (balancer.proxy).
    #[arg(long)]
    pub proxy: Option<String>,
    /// Redis URL to share membership with other balancers (balancer.redis).
    #[arg(long)]
    pub redis: Option<String>,
    /// etcd endpoint to share membership through (balancer.etcd); repeat for each
    /// member of the cluster.
    #[arg(long)]
    pub etcd: Vec<String>,
    /// Default selection algorithm (balancer.algorithm).
    #[arg(long)]
    pub algorithm: Option<String>,
    /// Admin HTTP listener (admin.listen); "" turns it off.
    #[arg(long)]
    pub admin: Option<String>,
    /// Event-loop threads (runtime.threads).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Replace the running balancer of this configuration without refusing a
    /// connection: take its listeners and leases over runtime.upgrade_socket.
    #[arg(long)]
    pub upgrade: bool,
    /// Certificates (the [tls] section).
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// `dsf client`.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Talk straight to a node.
    #[arg(long, group = "target")]
    pub node: Option<String>,
    /// Talk to a balancer's proxy port.
    #[arg(long, group = "target")]
    pub proxy: Option<String>,
    /// Ask a balancer's directory port which node to use, then talk to it.
    #[arg(long, group = "target")]
    pub balancer: Option<String>,
    /// Give up after this long (e.g. "5s").
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Session token (before or after `call`).
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// Routing key (before or after `call`).
    #[arg(long, global = true)]
    pub key: Option<String>,
    /// Speak TLS, verifying the server against this PEM CA bundle.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate to present (listeners that require one).
    #[arg(long, requires = "tls_ca", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Name the server's certificate must carry (default: the host of the address).
    #[arg(long, requires = "tls_ca")]
    pub tls_server_name: Option<String>,
    /// The request.
    #[command(subcommand)]
    pub action: ClientAction,
}

/// What `dsf client` does.
#[derive(Debug, Subcommand)]
pub enum ClientAction {
    /// Send one request: `call TYPE [BODY_JSON]`.
    Call {
        /// Operation name, e.g. `sys.ping`.
        #[arg(value_name = "TYPE")]
        op: String,
        /// Request body as a JSON object.
        #[arg(value_name = "BODY_JSON")]
        body: Option<String>,
    },
}

/// Runs the parsed command; returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Up(args) => report(up(args)),
        Command::Node(args) => report(node(args)),
        Command::Balancer(args) => report(balancer(args)),
        Command::Client(args) => client(args),
        Command::CheckConfig { file } => check_config(&file),
        Command::Bench(args) => report(dsf::bench::run(args)),
        Command::Cert(args) => report(cert::run(args)),
    }
}

fn report(r: anyhow::Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dsf: {}", chain(&e));
            1
        }
    }
}

/// An error and its causes, each named once: a layer whose message already quotes
/// its cause is not followed by that cause again.
fn chain(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

/// Loads configuration for `dsf node` through the documented pipeline.
pub fn node_config(args: &NodeArgs) -> Result<Config, ConfigError> {
    let mut loader = Loader::new(args.config.as_deref())
        .set_opt("node.listen", args.listen.clone())
        .set_opt("node.register", args.register.clone())
        .set_opt("store.url", args.mysql.clone())
        .set_opt(
            "node.data_dir",
            args.data.as_ref().map(|p| p.display().to_string()),
        )
        .set_opt("admin.listen", args.admin.clone())
        .set_opt("node.id", args.id.clone())
        .set_opt("node.service", args.service.clone())
        .set_opt("node.weight", args.weight.map(i64::from))
        .set_opt("runtime.threads", args.threads.map(|t| t as i64));
    loader = args.tls.apply(loader);
    if !args.redis.is_empty() {
        loader = loader.set("cache.redis", args.redis.clone());
    }
    if !args.ops.is_empty() {
        loader = loader.set("node.ops", args.ops.clone());
    }
    loader.load()
}

fn node(args: NodeArgs) -> anyhow::Result<()> {
    let cfg = node_config(&args)?;
    let log = telemetry::init(&cfg.log)?;
    let (trigger, shutdown) = shutdown::channel();
    shutdown::on_signals(trigger)?;
    let (file, upgrade) = (args.config.clone(), args.upgrade);
    let reload = reloader(&cfg, file.as_deref(), &log, move || node_config(&args));
    dsf::app::builder(cfg)
        .reload(reload)
        .upgrade(upgrade)
        .run(shutdown, |started| {
            println!("node {} listening on {}", started.id, started.addr);
            if let Some(admin) = started.admin {
                println!("admin listening on {admin}");
            }
            println!("ready");
        })?;
    Ok(())
}

/// Loads configuration for `dsf balancer` through the documented pipeline.
pub fn balancer_config(args: &BalancerArgs) -> Result<Config, ConfigError> {
    let mut loader = args.tls.apply(Loader::new(args.config.as_deref()));
    if !args.etcd.is_empty() {
        loader = loader.set("balancer.etcd", args.etcd.clone());
    }
    loader
        .set_opt("balancer.registration", args.registration.clone())
        .set_opt("balancer.directory", args.directory.clone())
        .set_opt("balancer.proxy", args.proxy.clone())
        .set_opt("balancer.redis", args.redis.clone())
        .set_opt("balancer.algorithm", args.algorithm.clone())
        .set_opt("admin.listen", args.admin.clone())
        .set_opt("runtime.threads", args.threads.map(|t| t as i64))
        .load()
}

fn balancer(args: BalancerArgs) -> anyhow::Result<()> {
    let cfg = balancer_config(&args)?;
    let log = telemetry::init(&cfg.log)?;
    let (trigger, shutdown) = shutdown::channel();
    shutdown::on_signals(trigger)?;
    let (file, upgrade) = (args.config.clone(), args.upgrade);
    let reload = reloader(&cfg, file.as_deref(), &log, move || balancer_config(&args));
    dsf::balancer::run_reloading(cfg, upgrade, shutdown, reload, |s| {
        println!("balancer registration listening on {}", s.registration);
        println!("balancer directory listening on {}", s.directory);
        println!("balancer proxy listening on {}", s.proxy);
        if let Some(admin) = s.admin {
            println!("admin listening on {admin}");
        }
        println!("ready");
    })?;
    Ok(())
}

fn up(args: UpArgs) -> anyhow::Result<()> {
    let cfg = Loader::new(args.config.as_deref())
        .set_opt(
            "node.data_dir",
            args.data.as_ref().map(|p| p.display().to_string()),
        )
        .set_opt("admin.listen", args.admin.clone())
        .load()?;
    let cfg = up::local(cfg, args.bind, args.admin.is_some());
    let _guard = telemetry::init(&cfg.log)?;
    let (trigger, _) = shutdown::channel();
    shutdown::on_signals(trigger.clone())?;
    let tls_dir = args.tls.then(|| cfg.node.data_dir.join("tls"));
    up::run(cfg, args.nodes, tls_dir, trigger, |line| println!("{line}"))
}

fn check_config(file: &std::path::Path) -> i32 {
    match Loader::new(Some(file)).check() {
        Ok(_) => {
            println!("{}: ok", file.display());
            0
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            1
        }
    }
}

fn client(args: ClientArgs) -> i32 {
    let ClientAction::Call { op, body } = &args.action;
    let op = op.clone();
    let (token, key) = (args.token.clone(), args.key.clone());
    let body = match body
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
    {
        None => serde_json::json!({}),
        Some(Ok(v @ serde_json::Value::Object(_))) => v,
        Some(Ok(_)) => {
            eprintln!("dsf client: BODY_JSON must be a JSON object");
            return 2;
        }
        Some(Err(e)) => {
            eprintln!("dsf client: BODY_JSON is not valid JSON: {e}");
            return 2;
        }
    };
    let opts = CallOptions { token, key };
    let tls = match client_tls(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("dsf client: {e}");
            return 2;
        }
    };
    let (target, result): (String, Result<_, ClientError>) =
        match (&args.node, &args.proxy, &args.balancer) {
            (Some(a), _, _) | (_, Some(a), _) => (
                a.clone(),
                smol::block_on(async {
                    let conn = Connection::connect_with(a, args.timeout, tls.as_ref()).await?;
                    conn.call_timeout(&op, body, &opts, args.timeout).await
                }),
            ),
            (_, _, Some(dir)) => (
                dir.clone(),
                smol::block_on(async {
                    let mut client = DirectoryClient::new(dir.clone(), args.timeout);
                    if let Some(tls) = tls.clone() {
                        client = client.with_tls(tls);
                    }
                    let mut resp = client.call(&op, body, &opts).await?;
                    // The wire id is the client's business; print the request's own, 1.
                    resp.id = Some(1);
                    Ok(resp)
                }),
            ),
            _ => {
                eprintln!("dsf client: one of --node, --proxy or --balancer is required");
                return 2;
            }
        };
    match result {
        Ok(resp) => {
            println!("{}", resp.to_json_string());
            if resp.result.is_ok() {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("dsf client: {target}: {e}");
            2
        }
    }
}

/// The client's TLS side from `--tls-*`; `None` without `--tls-ca`.
fn client_tls(args: &ClientArgs) -> Result<Option<dsf::tls::Connector>, dsf::tls::TlsError> {
    let Some(ca) = &args.tls_ca else {
        return Ok(None);
    };
    let cfg = dsf::config::TlsConfig {
        ca: ca.clone(),
        cert: args.tls_cert.clone().unwrap_or_default(),
        key: args.tls_key.clone().unwrap_or_default(),
        ..Default::default()
    };
    let connector = dsf::tls::Tls::from_config(&cfg)?.and_then(|t| t.connector());
    Ok(match (connector, &args.tls_server_name) {
        (Some(c), Some(name)) => Some(c.with_server_name(name.clone())),
        (c, _) => c,
    })
}

//! A second service on the node library: a key-value store whose operations need a
//! DSF session, so a token from `user.login` on any DSF node works here too.
//!
//! Run it beside a balancer and a DSF node on one database:
//!
//! ```text
//! cargo run --release --example kv -- --listen 127.0.0.1:7100 \
//!     --register 127.0.0.1:6200 [--mysql URL | --data DIR] [--admin ADDR]
//! dsf client --proxy 127.0.0.1:6400 --token T call kv.put '{"k":"a","v":"1"}'
//! ```
//!
//! The balancer routes `kv.*` to it by prefix; the cluster secret, if the balancer
//! has one, comes from `DSF__CLUSTER__SECRET` or `--config`'s `cluster.secret_file`.

use clap::Parser;
use dsf::config::Loader;
use dsf::framework::{validate, Access};
use dsf::node::Node;
use dsf::protocol::ApiError;
use dsf::store::{SqlValue, Store, TableMigration, Tables};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// The service's own table, in each backend's SQL.
const TABLES: Tables = Tables {
    app: "kv",
    migrations: &[TableMigration {
        version: 1,
        name: "kv",
        mysql: "CREATE TABLE IF NOT EXISTS kv (k VARCHAR(255) NOT NULL PRIMARY KEY, \
                v MEDIUMTEXT NOT NULL, updated BIGINT NOT NULL)",
        sqlite: "CREATE TABLE IF NOT EXISTS kv (k TEXT NOT NULL PRIMARY KEY, \
                 v TEXT NOT NULL, updated INTEGER NOT NULL)",
    }],
};

/// Command line: the `dsf node` flags a service needs.
#[derive(Parser)]
struct Args {
    /// TOML configuration file (any `dsf node` key).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Protocol listener address.
    #[arg(long)]
    listen: Option<String>,
    /// A balancer's registration address.
    #[arg(long)]
    register: Option<String>,
    /// MySQL URL; default: the embedded store in --data.
    #[arg(long)]
    mysql: Option<String>,
    /// Data folder of the embedded store.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Admin HTTP listener (metrics, health).
    #[arg(long)]
    admin: Option<String>,
    /// Node id.
    #[arg(long)]
    id: Option<String>,
}

/// `kv.put` body (controller input).
#[derive(Deserialize)]
struct Put {
    k: String,
    v: String,
}

/// `kv.get` body.
#[derive(Deserialize)]
struct Get {
    k: String,
}

/// `kv.get` answer (view).
#[derive(Serialize)]
struct Value {
    v: String,
}

/// Model: the table, through whichever store the node opened.
async fn put(store: Arc<dyn Store>, req: Put) -> Result<serde_json::Value, ApiError> {
    validate::length("k", &req.k, 1, 255)?;
    validate::length("v", &req.v, 0, 65_536)?;
    let now = dsf::store::now_ms() as i64;
    store
        .execute(
            "REPLACE INTO kv (k, v, updated) VALUES (?, ?, ?)",
            vec![req.k.into(), req.v.into(), SqlValue::Int(now)],
        )
        .await?;
    Ok(serde_json::json!({}))
}

async fn get(store: Arc<dyn Store>, req: Get) -> Result<Value, ApiError> {
    validate::length("k", &req.k, 1, 255)?;
    let rows = store
        .query("SELECT v FROM kv WHERE k = ?", vec![req.k.into()])
        .await?;
    match rows
        .first()
        .and_then(|r| r.first())
        .and_then(SqlValue::as_str)
    {
        Some(v) => Ok(Value { v: v.to_owned() }),
        None => Err(ApiError::not_found("no such key")),
    }
}

/// The configuration pipeline: file, `DSF__` environment, flags. Run at start and
/// again on every `SIGHUP`.
fn config(args: &Args) -> Result<dsf::config::Config, dsf::config::ConfigError> {
    Loader::new(args.config.as_deref())
        .set_opt("node.listen", args.listen.clone())
        .set_opt("node.register", args.register.clone())
        .set_opt("store.url", args.mysql.clone())
        .set_opt(
            "node.data_dir",
            args.data.as_ref().map(|p| p.display().to_string()),
        )
        .set_opt("admin.listen", args.admin.clone())
        .set_opt("node.id", args.id.clone())
        .load()
}

fn main() {
    let args = Args::parse();
    let cfg = config(&args);
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kv: {e}");
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cfg.log.level))
        .with_writer(std::io::stderr)
        .init();
    let (trigger, shutdown) = dsf::runtime::shutdown::channel();
    if let Err(e) = dsf::runtime::shutdown::on_signals(trigger) {
        eprintln!("kv: signals: {e}");
        std::process::exit(1);
    }
    // SIGHUP runs the pipeline again: weight, limits, cache TTLs, pool sizes and
    // certificates change live (PROTOCOL §9).
    let origin = args
        .config
        .as_ref()
        .map_or("environment and flags".into(), |p| p.display().to_string());
    let reload = dsf::runtime::Reload::new(cfg.clone(), origin, move || config(&args));
    let node = Node::builder(cfg)
        .reload(reload)
        .service("kv", &["kv."])
        .tables(TABLES)
        .routes(|node, routes| {
            let store = Arc::new(node.store.clone());
            routes
                .route_with("kv.put", Access::Authenticated, &store, |s, _ctx, req| {
                    put(Arc::clone(&*s), req)
                })
                .route_with("kv.get", Access::Authenticated, &store, |s, _ctx, req| {
                    get(Arc::clone(&*s), req)
                })
                // Setting a key twice leaves it as setting it once.
                .idempotent(&["kv.get", "kv.put"]);
            Ok(())
        });
    let result = node.run(shutdown, |s| {
        println!("kv node {} listening on {}", s.id, s.addr);
        if let Some(admin) = s.admin {
            println!("admin listening on {admin}");
        }
        println!("ready");
    });
    if let Err(e) = result {
        eprintln!("kv: {e}");
        std::process::exit(1);
    }
}

//! An application adding its own operation to DSF in a few lines.
//!
//! Run: `cargo run --example custom_op` (listens on 127.0.0.1:7070), then
//! `cargo run -- client --node 127.0.0.1:7070 call greet.hello '{"name":"Ada"}'`.

use dsf::framework::{validate, Access, Router};
use dsf::runtime::{shutdown, Runtime, Server, ServerOptions};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Controller input: decoded from the request body by the router.
#[derive(Deserialize)]
struct Hello {
    name: String,
}

/// View: becomes the response body.
#[derive(Serialize)]
struct Greeting {
    greeting: String,
}

fn main() -> anyhow::Result<()> {
    let cfg = dsf::config::Config::default();
    let mut router = Router::new(cfg.limits.request_timeout);
    router.route(
        "greet.hello",
        Access::Public,
        |_ctx, req: Hello| async move {
            validate::length("name", &req.name, 1, 64)?;
            Ok(Greeting {
                greeting: format!("hello, {}", req.name),
            })
        },
    );

    let rt = Runtime::new("example", 2)?;
    let server = Server::bind(
        "127.0.0.1:7070",
        &rt,
        ServerOptions::new("example", cfg.limits),
    )?;
    println!("example listening on {}", server.local_addr());
    let (trigger, stop) = shutdown::channel();
    shutdown::on_signals(trigger)?;
    smol::block_on(server.run(&rt, Arc::new(router), stop))?;
    Ok(())
}

//! The DSF business — users, sessions, the blacklist and collector reports — as one
//! application on the node library: [`builder`] is `dsf node`.
//!
//! Nothing here is private to the library: it installs its operations through the
//! same [`NodeBuilder`] any other service uses, and shares [`App`] (the store, cache,
//! sessions and password hasher) with its handlers.

pub mod blacklist;
pub mod collector;
pub mod user;
pub mod validate;

use crate::auth::password::Passwords;
use crate::auth::sessions::Sessions;
use crate::cache::aside::CacheAside;
use crate::config::Config;
use crate::node::{Node, NodeBuilder, NodeContext, Routes};
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// The reads of the DSF business, safe to send twice.
pub const IDEMPOTENT: &[&str] = &["blacklist.query", "blacklist.search"];

/// A DSF node: the node library with the DSF business installed.
pub fn builder(cfg: Config) -> NodeBuilder {
    Node::builder(cfg).routes(|node, routes| {
        let app = App::new(node).map_err(|e| format!("auth: {e}"))?;
        install(routes, &app);
        Ok(())
    })
}

/// What the operations share.
pub struct App {
    /// The persistent store.
    pub store: Arc<dyn Store>,
    /// Cache-aside reads (`blacklist.query`, sessions).
    pub cache: Arc<CacheAside>,
    /// Sessions and login throttling.
    pub sessions: Arc<Sessions>,
    /// Password hashing.
    pub passwords: Passwords,
    /// Session lifetime.
    pub session_ttl: Duration,
    /// Login attempts per name and window before `rate_limited`.
    pub max_failed_logins: u32,
    /// The login throttling window.
    pub login_window: Duration,
}

impl App {
    /// The business state over what the node opened.
    pub fn new(node: &NodeContext) -> Result<Arc<App>, crate::auth::password::HashError> {
        let cfg = &node.config;
        Ok(Arc::new(App {
            store: node.store.clone(),
            cache: node.cache.clone(),
            sessions: node.sessions.clone(),
            passwords: Passwords::new(&cfg.auth)?,
            session_ttl: cfg.auth.session_ttl,
            max_failed_logins: cfg.auth.max_failed_logins,
            login_window: cfg.auth.login_window,
        }))
    }
}

/// Installs every business operation group the node serves.
pub fn install(routes: &mut Routes<'_>, app: &Arc<App>) {
    user::register(routes, app);
    blacklist::register(routes, app);
    collector::register(routes, app);
    routes.idempotent(IDEMPOTENT);
}

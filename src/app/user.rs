//! `user.*`: register, login, logout (PROTOCOL §3).
//!
//! Login answers the same `unauthorized` for an unknown name and a wrong password and
//! spends the same argon2 time on both. Every attempt is counted against the name
//! before the password is checked (and forgotten on success), so parallel guesses
//! cannot slip past `auth.max_failed_logins` while the first ones are still hashing.

use super::{validate, App};
use crate::auth::{new_token, token_hash};
use crate::framework::Access;
use crate::node::Routes;
use crate::protocol::{ApiError, ErrorCode};
use crate::store::{now_ms, SessionRecord};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Body of `user.register` and `user.login`.
#[derive(Debug, Deserialize)]
pub struct Credentials {
    /// User name.
    pub name: String,
    /// Password in clear (the connection's business; never stored or logged).
    pub password: String,
}

/// View of `user.register`.
#[derive(Debug, Serialize)]
pub struct Registered {
    /// The new user's id.
    pub user_id: u64,
}

/// View of `user.login`.
#[derive(Debug, Serialize)]
pub struct LoggedIn {
    /// Session token for the `token` field of later requests.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in_s: u64,
}

/// Registers `user.register`, `user.login` and `user.logout`.
pub fn register(routes: &mut Routes<'_>, app: &Arc<App>) {
    routes.route_with(
        "user.register",
        Access::Public,
        app,
        |app, _ctx, c: Credentials| async move { register_user(&app, c).await },
    );
    routes.route_with(
        "user.login",
        Access::Public,
        app,
        |app, _ctx, c: Credentials| async move { login(&app, c).await },
    );
    routes.route_with(
        "user.logout",
        Access::Authenticated,
        app,
        |app, ctx, _: Map<String, Value>| async move {
            let token = ctx
                .token
                .as_deref()
                .ok_or_else(|| ApiError::unauthorized("this operation requires a token"))?;
            app.sessions.revoke(&token_hash(token)).await?;
            Ok(json!({}))
        },
    );
}

async fn register_user(app: &App, c: Credentials) -> Result<Registered, ApiError> {
    validate::user_name(&c.name)?;
    validate::password(&c.password)?;
    let hash = app.passwords.hash(&c.password).await?;
    let user_id = app.store.create_user(&c.name, &hash).await?;
    Ok(Registered { user_id })
}

async fn login(app: &App, c: Credentials) -> Result<LoggedIn, ApiError> {
    validate::user_name(&c.name)?;
    crate::framework::validate::length("password", &c.password, 1, 128)?;
    let attempts = app
        .sessions
        .record_attempt(&c.name, app.login_window)
        .await?;
    if attempts > app.max_failed_logins {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            "too many failed logins for this name; try again later",
        ));
    }
    let user = app.store.user_by_name(&c.name).await?;
    let stored = user.as_ref().map(|u| u.password_hash.as_str());
    let ok = app.passwords.verify(&c.password, stored).await?;
    let user = match user {
        Some(u) if ok => u,
        _ => return Err(ApiError::unauthorized("invalid name or password")),
    };
    app.sessions.clear_attempts(&c.name).await?;
    let token = new_token();
    let session = SessionRecord {
        user_id: user.id,
        name: user.name,
        expires_at_ms: now_ms() + app.session_ttl.as_millis() as u64,
    };
    app.sessions.create(&token_hash(&token), &session).await?;
    Ok(LoggedIn {
        token,
        expires_in_s: app.session_ttl.as_secs(),
    })
}

//! `blacklist.*`: insert, update, delete, search and the cached `query` (PROTOCOL §3).
//!
//! Writes fence the key in the cache, write the store, then release the fence with an
//! invalidation; only then is the write acknowledged, so no node's cache serves a
//! value older than it, even when this node loses Redis in between (see
//! [`crate::cache::write`] and docs/stores.md for why).

use super::{validate, App};
use crate::framework::Access;
use crate::node::Routes;
use crate::protocol::ApiError;
use crate::store::{Entry, SearchFilter};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

/// Body of `blacklist.insert` and `blacklist.update`.
#[derive(Debug, Deserialize)]
pub struct Listing {
    /// Identity card number.
    pub id_card: String,
    /// The person's name.
    pub name: String,
}

/// Body of `blacklist.delete` and `blacklist.query`.
#[derive(Debug, Deserialize)]
pub struct IdCard {
    /// Identity card number.
    pub id_card: String,
}

/// Body of `blacklist.search`.
#[derive(Debug, Deserialize)]
pub struct Search {
    /// Names starting with this, literally.
    pub name_prefix: Option<String>,
    /// Exactly this id_card.
    pub id_card: Option<String>,
    /// At most this many (default 50, max 500).
    pub limit: Option<u32>,
}

/// View of `blacklist.insert`.
#[derive(Debug, Serialize)]
pub struct Inserted {
    /// The entry's id.
    pub id: u64,
}

/// View of `blacklist.search`.
#[derive(Debug, Serialize)]
pub struct Found {
    /// Matching entries, ordered by id_card.
    pub entries: Vec<Entry>,
}

/// The cache key of an id_card's answer.
pub fn cache_key(id_card: &str) -> String {
    format!("bl:{id_card}")
}

/// Registers the five `blacklist.*` operations.
pub fn register(routes: &mut Routes<'_>, app: &Arc<App>) {
    routes.route_with(
        "blacklist.insert",
        Access::Authenticated,
        app,
        |app, _ctx, b: Listing| async move {
            validate::id_card(&b.id_card)?;
            validate::person_name(&b.name)?;
            let write = app.store.blacklist_insert(&b.id_card, &b.name);
            let id = app.cache.write(&cache_key(&b.id_card), write).await?;
            Ok(Inserted { id })
        },
    );
    routes.route_with(
        "blacklist.update",
        Access::Authenticated,
        app,
        |app, _ctx, b: Listing| async move {
            validate::id_card(&b.id_card)?;
            validate::person_name(&b.name)?;
            let write = app.store.blacklist_update(&b.id_card, &b.name);
            app.cache.write(&cache_key(&b.id_card), write).await?;
            Ok(json!({}))
        },
    );
    routes.route_with(
        "blacklist.delete",
        Access::Authenticated,
        app,
        |app, _ctx, b: IdCard| async move {
            validate::id_card(&b.id_card)?;
            let write = app.store.blacklist_delete(&b.id_card);
            app.cache.write(&cache_key(&b.id_card), write).await?;
            Ok(json!({}))
        },
    );
    routes.route_with(
        "blacklist.search",
        Access::Authenticated,
        app,
        |app, _ctx, b: Search| async move {
            if let Some(p) = &b.name_prefix {
                crate::framework::validate::length("name_prefix", p, 1, 64)?;
            }
            if let Some(id) = &b.id_card {
                validate::id_card(id)?;
            }
            let filter = SearchFilter {
                name_prefix: b.name_prefix,
                id_card: b.id_card,
                limit: validate::limit(b.limit)?,
            };
            let entries = app.store.blacklist_search(&filter).await?;
            Ok(Found { entries })
        },
    );
    // A read that does not depend on who asks: it runs beside the session check, so
    // that both cache reads leave in one batch (PROTOCOL §3 is unchanged: the answer
    // is released only after the check passes).
    routes.route_with(
        "blacklist.query",
        Access::AuthenticatedRead,
        app,
        |app, _ctx, b: IdCard| async move {
            validate::id_card(&b.id_card)?;
            query(&app, &b.id_card).await
        },
    );
}

/// `blacklist.query` through the cache. Cached form: `+name` when listed, `-` when not.
async fn query(app: &App, id_card: &str) -> Result<Value, ApiError> {
    let cached = app
        .cache
        .get_or_load(&cache_key(id_card), || async {
            Ok(match app.store.blacklist_get(id_card).await? {
                Some(name) => (format!("+{name}"), app.cache.ttl()),
                None => ("-".to_owned(), app.cache.negative_ttl()),
            })
        })
        .await?;
    Ok(match cached.strip_prefix('+') {
        Some(name) => json!({ "listed": true, "name": name }),
        None => json!({ "listed": false }),
    })
}

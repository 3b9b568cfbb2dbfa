//! `collector.report`: an information collector's sighting, recorded with who
//! reported it, when and from which source, then checked against the blacklist.

use super::{validate, App};
use crate::framework::Access;
use crate::node::Routes;
use crate::store::NewReport;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Body of `collector.report`.
#[derive(Debug, Deserialize)]
pub struct Report {
    /// The sighted id_card.
    pub id_card: String,
    /// The sighted name.
    pub name: String,
    /// Where it was seen (free text), if known.
    pub source: Option<String>,
}

/// View of `collector.report`.
#[derive(Debug, Serialize)]
pub struct Reported {
    /// Whether the id_card is listed.
    pub listed: bool,
    /// The recorded report's id.
    pub report_id: u64,
}

/// Registers `collector.report`.
pub fn register(routes: &mut Routes<'_>, app: &Arc<App>) {
    routes.route_with(
        "collector.report",
        Access::Authenticated,
        app,
        |app, ctx, b: Report| {
            async move {
                validate::id_card(&b.id_card)?;
                validate::person_name(&b.name)?;
                if let Some(s) = &b.source {
                    validate::source(s)?;
                }
                let report = NewReport {
                    reporter: ctx.user()?.user_id,
                    id_card: b.id_card,
                    name: b.name,
                    source: b.source,
                };
                // One transaction records the sighting and reads the listing, so the
                // answer is the store's own, consistent with the recorded row.
                let outcome = app.store.report(&report).await?;
                Ok(Reported {
                    listed: outcome.listed,
                    report_id: outcome.report_id,
                })
            }
        },
    );
}

//! Search (`/search/v1/<index>`) over the exposed schemas' tables: indexes
//! declared through `/admin/v1/search/indexes` (`admin.rs`) or the config
//! file, kept in `basalt.search_indexes` and cached on every replica (this
//! module's [`Registry`], reloaded on `NOTIFY basalt_search`); searches
//! decided by the policy engine and run by the index's backend (`query.rs`):
//! PostgreSQL full-text search on the table itself (`postgres.rs`), or a
//! Meilisearch index (`meili.rs`) kept in step with the change feed by the
//! sync worker (`sync.rs`).

mod admin;
pub mod meili;
mod postgres;
mod query;
pub mod sync;

use crate::error::HttpError;
use crate::http::resource;
use crate::state::AppState;
use actix_web::web;
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::search::pg::Setup;
use basalt_core::search::IndexDef;
use deadpool_postgres::Pool;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// The channel a change to any index is announced on.
pub const CHANNEL: &str = "basalt_search";

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/search/v1/{index}")
                .route(web::get().to(query::get))
                .route(web::post().to(query::post)),
        )
        .configure(admin::routes);
}

/// One index as every replica caches it.
#[derive(Debug, Clone)]
pub struct Index {
    pub def: IndexDef,
    pub declared: bool,
    pub setup: Setup,
    /// Whether its documents table (`basalt_search.<name>`) exists.
    pub documents: bool,
}

/// The indexes, swapped whole on reload.
#[derive(Default)]
pub struct Registry {
    current: RwLock<Arc<BTreeMap<String, Index>>>,
}

impl Registry {
    pub async fn load(pool: &Pool) -> anyhow::Result<Self> {
        let registry = Registry::default();
        registry.reload(pool).await?;
        Ok(registry)
    }

    pub fn get(&self, name: &str) -> Option<Index> {
        self.all().get(name).cloned()
    }

    pub fn all(&self) -> Arc<BTreeMap<String, Index>> {
        self.current.read().expect("search registry lock").clone()
    }

    pub async fn reload(&self, pool: &Pool) -> anyhow::Result<()> {
        let client = pool.get().await?;
        let rows = client
            .query(
                "SELECT definition, declared, text_config, trgm_schema, documents FROM basalt.search_indexes",
                &[],
            )
            .await?;
        let mut indexes = BTreeMap::new();
        for row in rows {
            let def: IndexDef = serde_json::from_value(row.get(0))?;
            indexes.insert(
                def.name.clone(),
                Index {
                    def,
                    declared: row.get(1),
                    setup: Setup {
                        config: row.get(2),
                        trgm_schema: row.get(3),
                    },
                    documents: row.get(4),
                },
            );
        }
        *self.current.write().expect("search registry lock") = Arc::new(indexes);
        Ok(())
    }
}

/// Reloads the registry whenever any replica announces a change.
pub async fn follow_changes(
    state: AppState,
    pg: tokio_postgres::Config,
    tls: crate::db::pool::Tls,
) {
    let wake = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(crate::db::listen::listen(pg, tls, CHANNEL, wake.clone()));
    loop {
        wake.notified().await;
        if let Err(error) = state.search().reload(&state.pool).await {
            tracing::warn!("search indexes: cannot reload: {error:#}");
        }
    }
}

/// The index named `name`, or `404 search_index_not_found`.
pub fn index(state: &AppState, name: &str) -> Result<Index, HttpError> {
    state.search().get(name).ok_or_else(|| {
        ApiError::new(ErrorCode::SearchIndexNotFound)
            .with_details(format!("no index `{name}`"))
            .into()
    })
}

/// The index's table as the schema cache knows it, and the key columns
/// that identify its rows (the declared ones, else the table's).
pub async fn table_and_key(
    state: &AppState,
    index: &Index,
) -> Result<(basalt_core::rest::Table, Vec<String>), HttpError> {
    let (schema, name) = index.def.table_name(&state.config.rest.schema);
    let (_, table) = crate::rest::table_of(state, schema, name, false).await?;
    let key = index.def.key(&table.primary_key);
    Ok((table, key))
}

/// Creates or updates the indexes the config file declares, and marks them
/// declared (the API refuses to change them).
pub async fn reconcile(state: &AppState) -> anyhow::Result<()> {
    for def in &state.config.search.indexes {
        admin::apply_declared(state, def).await.map_err(|error| {
            let error = &error.error;
            anyhow::anyhow!(
                "search.indexes: `{}`: {} {}",
                def.name,
                error.details.as_deref().unwrap_or(&error.message),
                error.hint.as_deref().unwrap_or_default()
            )
        })?;
    }
    state.search().reload(&state.pool).await
}

impl crate::state::AppState {
    /// The search indexes (reloaded when any replica changes one).
    pub fn search(&self) -> &Arc<Registry> {
        self.services.get()
    }
}

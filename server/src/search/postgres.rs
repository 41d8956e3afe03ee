//! The PostgreSQL backend's objects: the text search configuration an index
//! reads with (a built-in one, or Basalt's copy of it that folds accents
//! through `unaccent`), `pg_trgm` for typo tolerance, and the GIN indexes
//! over the weighted document expression. Made on Basalt's own pool, inside
//! the transaction that records the index.

use crate::error::HttpError;
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::rest::quote;
use basalt_core::rest::Table;
use basalt_core::search::pg::{self, Setup, SCHEMA};
use basalt_core::search::IndexDef;
use deadpool_postgres::Transaction;

fn refused(field: &str, problem: String, hint: &str) -> HttpError {
    ApiError::new(ErrorCode::InvalidSearchIndex)
        .with_details(format!("{field}: {problem}"))
        .with_hint(hint)
        .into()
}

/// The schema an extension lives in, creating it in `basalt_search` first.
async fn extension(tx: &Transaction<'_>, name: &str) -> Result<String, HttpError> {
    if let Err(error) = tx
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS {name} SCHEMA {SCHEMA}"
        ))
        .await
    {
        return Err(refused(
            if name == "unaccent" {
                "unaccent"
            } else {
                "typo_tolerance"
            },
            format!("cannot enable the {name} extension: {error}"),
            "It ships with PostgreSQL's contrib; a superuser can run CREATE EXTENSION for Basalt, or leave this option off.",
        ));
    }
    Ok(tx
        .query_one(
            "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = $1",
            &[&name],
        )
        .await?
        .get(0))
}

/// Makes what `def` reads with and returns it: its configuration and, for
/// typo tolerance, `pg_trgm`'s schema. Serialized by an advisory lock, so
/// replicas creating indexes at once make each object once.
pub async fn prepare(tx: &Transaction<'_>, def: &IndexDef) -> Result<Setup, HttpError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('basalt_search'))",
        &[],
    )
    .await?;
    let builtin = tx
        .query_opt(
            "SELECT 1 FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace WHERE n.nspname = 'pg_catalog' AND c.cfgname = $1",
            &[&def.language],
        )
        .await?
        .is_some();
    if !builtin {
        let known: Vec<String> = tx
            .query(
                "SELECT c.cfgname::text FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace WHERE n.nspname = 'pg_catalog' ORDER BY 1",
                &[],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        return Err(refused(
            "language",
            format!(
                "PostgreSQL has no text search configuration `{}`",
                def.language
            ),
            &format!("Use one of: {}.", known.join(", ")),
        ));
    }
    let mut config = format!("pg_catalog.{}", def.language);
    // Meilisearch folds accents itself; only a PostgreSQL index needs the copy.
    if def.unaccent && !def.is_meilisearch() {
        let unaccent = extension(tx, "unaccent").await?;
        let name = format!("{}_unaccent", def.language);
        let exists = tx
            .query_opt(
                "SELECT 1 FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace WHERE n.nspname = $1 AND c.cfgname = $2",
                &[&SCHEMA, &name],
            )
            .await?
            .is_some();
        if !exists {
            // The language's own dictionaries for words, after unaccent.
            let dictionaries: String = tx
                .query_one(
                    "SELECT string_agg(quote_ident(dn.nspname) || '.' || quote_ident(d.dictname), ', ' ORDER BY m.mapseqno)
                     FROM pg_ts_config_map m JOIN pg_ts_dict d ON d.oid = m.mapdict
                     JOIN pg_namespace dn ON dn.oid = d.dictnamespace
                     WHERE m.mapcfg = $1::text::regconfig
                       AND m.maptokentype = (SELECT tokid FROM ts_token_type('default') WHERE alias = 'word')",
                    &[&config],
                )
                .await?
                .get(0);
            tx.batch_execute(&format!(
                "CREATE TEXT SEARCH CONFIGURATION {SCHEMA}.{name} (COPY = {config});
                 ALTER TEXT SEARCH CONFIGURATION {SCHEMA}.{name} ALTER MAPPING FOR hword, hword_part, word WITH {}.unaccent, {dictionaries}",
                quote(&unaccent)
            ))
            .await?;
        }
        config = format!("{SCHEMA}.{name}");
    }
    let trgm_schema = if def.typo_tolerance && !def.is_meilisearch() {
        Some(extension(tx, "pg_trgm").await?)
    } else {
        None
    };
    Ok(Setup {
        config,
        trgm_schema,
    })
}

/// Whether `schema.table` is a view (which takes neither indexes nor capture).
pub async fn is_view(tx: &Transaction<'_>, schema: &str, table: &str) -> Result<bool, HttpError> {
    let qualified = format!("{}.{}", quote(schema), quote(table));
    Ok(tx
        .query_one(
            "SELECT relkind IN ('v', 'm') FROM pg_class WHERE oid = $1::text::regclass",
            &[&qualified],
        )
        .await?
        .get(0))
}

/// The documents table, its triggers and the trigram index of a
/// PostgreSQL index on a table (a view is searched without them), readable
/// by the API roles.
pub async fn build(
    tx: &Transaction<'_>,
    config: &basalt_core::config::Config,
    def: &IndexDef,
    setup: &Setup,
    table: &Table,
) -> Result<(), HttpError> {
    let key: Vec<(String, String)> = def
        .key(&table.primary_key)
        .into_iter()
        .map(|k| {
            let type_name = table
                .columns
                .iter()
                .find(|(c, _)| *c == k)
                .map(|(_, t)| t.clone())
                .unwrap_or_else(|| "text".into());
            (k, type_name)
        })
        .collect();
    let readers = [
        config.authz.db_role_anon.as_str(),
        config.authz.db_role_authenticated.as_str(),
        config.authz.db_role_service.as_str(),
    ];
    for statement in pg::index_ddl(def, setup, table, &key, &readers) {
        tx.batch_execute(&statement).await?;
    }
    Ok(())
}

pub async fn remove(tx: &Transaction<'_>, def: &IndexDef, schema: &str) -> Result<(), HttpError> {
    for statement in pg::drop_ddl(def, schema) {
        tx.batch_execute(&statement).await?;
    }
    Ok(())
}

/// Rows in the table: counted when the planner estimates fewer than
/// 100,000 (a bounded cost), else the estimate; and whether it was counted.
pub async fn documents(
    client: &deadpool_postgres::Object,
    schema: &str,
    table: &str,
) -> Result<(i64, bool), HttpError> {
    let qualified = format!("{}.{}", quote(schema), quote(table));
    let estimate: i64 = client
        .query_one(
            "SELECT GREATEST(reltuples, 0)::bigint FROM pg_class WHERE oid = $1::text::regclass",
            &[&qualified],
        )
        .await?
        .get(0);
    if estimate >= 100_000 {
        return Ok((estimate, false));
    }
    let count: i64 = client
        .query_one(&format!("SELECT count(*) FROM {qualified}"), &[])
        .await?
        .get(0);
    Ok((count, true))
}

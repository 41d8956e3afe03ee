//! Basalt's own schema migrations: SQL files in the top-level `migrations/`,
//! embedded in the binary, applied under a PostgreSQL advisory lock so replicas
//! starting together migrate exactly once.

use anyhow::Context;
use refinery::Migration;
use tokio_postgres::Client;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// The advisory lock key every Basalt replica takes while migrating.
const MIGRATION_LOCK: i64 = 0x6261_7361_6c74_0001; // "basalt" + 1
const HISTORY_TABLE: &str = "basalt.schema_migrations";

/// One migration's name as the files spell it: `V1__basalt_schema`.
pub fn label(migration: &Migration) -> String {
    format!("V{}__{}", migration.version(), migration.name())
}

fn runner() -> refinery::Runner {
    let mut runner = embedded::migrations::runner();
    runner.set_migration_table_name(HISTORY_TABLE);
    runner.set_grouped(true).set_abort_divergent(true)
}

/// Applies every pending migration, in one transaction, under the lock.
/// Returns the labels of the migrations this call applied.
pub async fn apply(client: &mut Client) -> anyhow::Result<Vec<String>> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context("cannot take the migration lock")?;
    let result = apply_locked(client).await;
    // The lock belongs to the session: release it even when migrating failed.
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .context("cannot release the migration lock")?;
    result
}

async fn apply_locked(client: &mut Client) -> anyhow::Result<Vec<String>> {
    client
        .batch_execute("CREATE SCHEMA IF NOT EXISTS basalt")
        .await
        .context("cannot create the basalt schema")?;
    let report = runner()
        .run_async(client)
        .await
        .context("migration failed")?;
    Ok(report.applied_migrations().iter().map(label).collect())
}

/// The migrations this binary has that the database has not applied.
pub async fn pending(client: &mut Client) -> anyhow::Result<Vec<String>> {
    let applied = applied(client).await?;
    // In version order (V10 after V9), as they will be applied.
    let mut migrations = runner().get_migrations().clone();
    migrations.sort_by_key(|migration| migration.version());
    Ok(migrations
        .iter()
        .map(label)
        .filter(|name| !applied.contains(name))
        .collect())
}

/// The migrations recorded in the database, oldest first.
pub async fn applied(client: &mut Client) -> anyhow::Result<Vec<String>> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])
        .await?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let migrations = runner().get_applied_migrations_async(client).await?;
    Ok(migrations.iter().map(label).collect())
}

/// Writes the app's schema history (`basalt.app_migrations`, the changes made
/// through `/admin/v1/tables`) into `directory` as `V<n>__<name>.sql` files,
/// oldest first; returns the files written.
pub async fn export_app(
    client: &Client,
    directory: &std::path::Path,
) -> anyhow::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(directory)
        .with_context(|| format!("cannot create {}", directory.display()))?;
    let rows = client
        .query(
            "SELECT version, name, statements, applied_at::text, applied_by
             FROM basalt.app_migrations ORDER BY version",
            &[],
        )
        .await?;
    let mut written = Vec::new();
    for row in rows {
        let version: i32 = row.get(0);
        let name: String = row.get(1);
        // A file name from the change's name: letters, digits and `_` only.
        let slug: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let file = directory.join(format!("V{version}__{slug}.sql"));
        let text = format!(
            "-- {name}\n-- applied {} by {}\n{}",
            row.get::<_, String>(3),
            row.get::<_, String>(4),
            row.get::<_, String>(2)
        );
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
        written.push(file);
    }
    Ok(written)
}

//! The change feed (`basalt.changes`, migration V9): inserts, updates and
//! deletes of the tables enabled for capture, numbered in commit order with
//! no gaps. Readers page by position; positions pruned by retention are
//! reported as a gap rather than skipped. Named consumers keep a persisted
//! cursor. `NOTIFY basalt_changes` at each commit wakes every replica.

use basalt_core::rest::quote;
use deadpool_postgres::Pool;
use serde::Serialize;
use serde_json::Value;

/// The channel every capturing commit notifies.
pub const CHANNEL: &str = "basalt_changes";

/// The trigger that captures a table's changes.
const TRIGGER: &str = "basalt_capture";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    pub position: i64,
    pub schema: String,
    pub table: String,
    pub operation: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
    pub committed_at: String,
}

/// A page of the feed, or the news that the changes after a position were
/// pruned (the reader must refetch its state).
#[derive(Debug, Clone, PartialEq)]
pub enum Page {
    Changes(Vec<Change>),
    Gap { pruned_through: i64 },
}

/// Up to `limit` committed changes after `after`, in order.
pub async fn read_after(
    client: &tokio_postgres::Client,
    after: i64,
    limit: i64,
) -> Result<Page, tokio_postgres::Error> {
    // One statement, one snapshot: a prune committing meanwhile cannot make
    // changes vanish between the gap check and the read.
    let rows = client
        .query(
            "SELECT s.pruned_through, c.position, c.schema_name, c.table_name, c.operation,
                    c.old_row, c.new_row, to_jsonb(c.committed_at) #>> '{}'
             FROM basalt.feed_state s
             LEFT JOIN LATERAL (
                SELECT * FROM basalt.changes WHERE position > $1 ORDER BY position LIMIT $2
             ) c ON true
             ORDER BY c.position",
            &[&after, &limit],
        )
        .await?;
    let pruned_through: i64 = rows.first().map_or(0, |row| row.get(0));
    if after < pruned_through {
        return Ok(Page::Gap { pruned_through });
    }
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|row| row.get::<_, Option<i64>>(1).is_some())
        .collect();
    Ok(Page::Changes(
        rows.iter()
            .map(|row| Change {
                position: row.get(1),
                schema: row.get(2),
                table: row.get(3),
                operation: row.get(4),
                old: row.get(5),
                new: row.get(6),
                committed_at: row.get(7),
            })
            .collect(),
    ))
}

/// The newest committed position (0 when the feed is empty).
pub async fn head(client: &tokio_postgres::Client) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT greatest(coalesce(max(position), 0), (SELECT pruned_through FROM basalt.feed_state))
             FROM basalt.changes",
            &[],
        )
        .await?
        .get(0))
}

/// Deletes changes committed longer than `retention_secs` ago and records
/// the highest position removed.
pub async fn prune(pool: &Pool, retention_secs: u64) -> anyhow::Result<u64> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "WITH gone AS (
                DELETE FROM basalt.changes
                 WHERE position IS NOT NULL
                   AND committed_at < now() - make_interval(secs => $1)
                 RETURNING position
             ), moved AS (
                UPDATE basalt.feed_state
                   SET pruned_through = greatest(pruned_through, (SELECT max(position) FROM gone))
                 WHERE EXISTS (SELECT 1 FROM gone)
             )
             SELECT count(*) FROM gone",
            &[&(retention_secs as f64)],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// A named consumer's persisted cursor.
pub struct Consumer {
    pub name: String,
}

impl Consumer {
    pub fn new(name: &str) -> Self {
        Consumer {
            name: name.to_owned(),
        }
    }

    /// Where the consumer stands (created at the feed's head the first time).
    /// Followers ask often: a consumer that exists is read, not written.
    pub async fn position(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<i64, tokio_postgres::Error> {
        if let Some(row) = client
            .query_opt(
                "SELECT position FROM basalt.feed_consumers WHERE name = $1",
                &[&self.name],
            )
            .await?
        {
            return Ok(row.get(0));
        }
        let start = head(client).await?;
        Ok(client
            .query_one(
                "INSERT INTO basalt.feed_consumers (name, position) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
                 RETURNING position",
                &[&self.name, &start],
            )
            .await?
            .get(0))
    }

    /// Records that everything up to `position` was handled (a cursor never
    /// moves back this way).
    pub async fn advance(
        &self,
        client: &tokio_postgres::Client,
        position: i64,
    ) -> Result<(), tokio_postgres::Error> {
        self.store(
            client,
            position,
            "greatest(basalt.feed_consumers.position, EXCLUDED.position)",
        )
        .await
    }

    /// Moves the cursor to exactly `position` (a rebuild that replays from there).
    pub async fn reset(
        &self,
        client: &tokio_postgres::Client,
        position: i64,
    ) -> Result<(), tokio_postgres::Error> {
        self.store(client, position, "EXCLUDED.position").await
    }

    async fn store(
        &self,
        client: &tokio_postgres::Client,
        position: i64,
        kept: &str,
    ) -> Result<(), tokio_postgres::Error> {
        client
            .execute(
                &format!(
                    "INSERT INTO basalt.feed_consumers (name, position) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET position = {kept}, updated_at = now()"
                ),
                &[&self.name, &position],
            )
            .await?;
        Ok(())
    }
}

/// `CREATE OR REPLACE TRIGGER` capturing `schema.table`'s changes.
pub fn enable_sql(schema: &str, table: &str) -> String {
    format!(
        "CREATE OR REPLACE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON {}.{} FOR EACH ROW EXECUTE FUNCTION basalt.capture_change()",
        quote(schema),
        quote(table)
    )
}

pub fn disable_sql(schema: &str, table: &str) -> String {
    format!(
        "DROP TRIGGER IF EXISTS {TRIGGER} ON {}.{}",
        quote(schema),
        quote(table)
    )
}

/// The tables whose changes are captured, as `(schema, table)`.
pub async fn enabled_tables(
    client: &tokio_postgres::Client,
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_trigger t
             JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE t.tgname = $1 ORDER BY 1, 2",
            &[&TRIGGER],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// Enables capture for the tables the config file declares (idempotent).
pub async fn reconcile(pool: &Pool, default_schema: &str, tables: &[String]) -> anyhow::Result<()> {
    if tables.is_empty() {
        return Ok(());
    }
    let client = pool.get().await?;
    for declared in tables {
        let (schema, table) = declared
            .split_once('.')
            .unwrap_or((default_schema, declared.as_str()));
        client
            .batch_execute(&enable_sql(schema, table))
            .await
            .map_err(|error| {
                anyhow::anyhow!("realtime.tables: cannot capture changes of {declared}: {error}")
            })?;
    }
    Ok(())
}

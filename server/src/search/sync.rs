//! The sync worker of Meilisearch indexes. One replica at a time leads (a
//! session advisory lock on a connection of its own; a replica that dies
//! loses it with its connection). For each index the leader either
//! rebuilds it or follows the change feed from the index's consumer cursor:
//!
//! - **Follow**: read the next changes, turn those of the index's table into
//!   upserts and deletes in commit order (consecutive ones of a kind in one
//!   batch), send them, wait for every task, and only then advance the
//!   cursor. A failure leaves the cursor where it was: the same changes are
//!   sent again (upserts and deletes by id are idempotent), so nothing is
//!   lost after an outage of any length within the feed's retention.
//! - **Rebuild** (new or changed index, `reindex`, or a cursor whose changes
//!   were pruned): note the feed's head, copy every row into a shadow index
//!   with the declared settings, swap it with the serving index (searches go
//!   on meanwhile), and set the cursor to the noted head, so changes made
//!   during the copy are replayed on top of it.

use super::admin::consumer;
use super::meili::{finish, settings, Client};
use super::Index;
use crate::feed::{self, Consumer, Page};
use crate::state::AppState;
use basalt_core::search::meili::{document, document_id};
use futures_util::{pin_mut, TryStreamExt};
use meilisearch_sdk::client::SwapIndexes;
use meilisearch_sdk::tasks::Task;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The advisory lock key of the sync worker's leadership.
const LEADER_LOCK: i64 = 0x6261_7361_6c74_5331; // "basaltS1"

/// The shadow index a rebuild fills before the swap.
pub fn shadow(name: &str) -> String {
    format!("{name}__rebuild")
}

/// Runs for the server's lifetime (when Meilisearch is configured).
pub async fn run(state: AppState, pg: tokio_postgres::Config, tls: crate::db::pool::Tls) {
    if state.meili().client.is_none() {
        return;
    }
    let wake = Arc::new(Notify::new());
    tokio::spawn(crate::db::listen::listen(
        pg.clone(),
        tls.clone(),
        feed::CHANNEL,
        wake.clone(),
    ));
    tokio::spawn(crate::db::listen::listen(
        pg.clone(),
        tls.clone(),
        super::CHANNEL,
        wake.clone(),
    ));
    loop {
        lead(&state, &pg, &tls, &wake).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Takes the lead when it can and syncs until the lock's connection is lost.
async fn lead(
    state: &AppState,
    pg: &tokio_postgres::Config,
    tls: &crate::db::pool::Tls,
    wake: &Notify,
) {
    let Ok((lock, connection)) = pg.connect(tls.clone()).await else {
        return;
    };
    let driver = tokio::spawn(connection);
    loop {
        match lock
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
            .await
        {
            Ok(row) if row.get::<_, bool>(0) => break,
            Ok(_) => tokio::time::sleep(Duration::from_secs(2)).await,
            Err(_) => {
                driver.abort();
                return;
            }
        }
    }
    tracing::info!("search: this replica syncs the Meilisearch indexes");
    let mut worker = Worker::default();
    while !lock.is_closed() && !driver.is_finished() {
        let (mut worked, mut waiting, mut failed) = (false, false, false);
        for index in state.search().all().values() {
            if !index.def.is_meilisearch() {
                continue;
            }
            match worker.step(state, index).await {
                Ok(Progress::Worked) => worked = true,
                Ok(Progress::Waiting) => waiting = true,
                Ok(Progress::Idle) => {}
                Err(error) => {
                    failed = true;
                    tracing::warn!(index = %index.def.name, "search sync: {error}");
                    record_error(state, &index.def.name, &error).await;
                }
            }
        }
        if failed {
            tokio::time::sleep(Duration::from_secs(1)).await;
        } else if !worked {
            // Batches being indexed are checked often; otherwise the feed
            // (or an index change) wakes the worker.
            let pause = if waiting { 20 } else { 500 };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
            }
        }
    }
    driver.abort();
}

async fn record_error(state: &AppState, name: &str, error: &str) {
    if let Ok(client) = state.pool.get().await {
        let _ = client
            .execute(
                "UPDATE basalt.search_indexes SET last_error = $2 WHERE name = $1",
                &[&name, &error],
            )
            .await;
    }
}

async fn clear_error(db: &tokio_postgres::Client, name: &str) -> Result<(), String> {
    db.execute(
        "UPDATE basalt.search_indexes SET last_error = NULL WHERE name = $1 AND last_error IS NOT NULL",
        &[&name],
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Batches sent to one index and not yet confirmed, at most.
const MAX_IN_FLIGHT: usize = 8;

#[derive(Default)]
struct Worker {
    /// The settings last applied to each serving index.
    applied: HashMap<String, Value>,
    /// Per index, the batches sent and not yet confirmed, oldest first:
    /// Meilisearch runs an index's tasks in order (and merges queued
    /// document tasks), so the next batch goes out while one is indexed.
    in_flight: HashMap<String, VecDeque<InFlight>>,
}

struct InFlight {
    /// The feed position the batch's changes reach.
    through: i64,
    tasks: Vec<meilisearch_sdk::task_info::TaskInfo>,
    sent: Instant,
}

/// What one step did.
#[derive(PartialEq)]
enum Progress {
    Idle,
    /// Batches are out, being indexed.
    Waiting,
    Worked,
}

/// Upserts or deletes of consecutive changes.
enum Batch {
    Upsert(Vec<Value>),
    Delete(Vec<String>),
}

/// Changes (of the index's table, in commit order) as batches: consecutive
/// upserts together, consecutive deletes together; an update that changed
/// the key deletes the old id first.
fn batches<'a>(
    changes: impl Iterator<Item = &'a feed::Change>,
    key: &[String],
) -> Result<Vec<Batch>, String> {
    let mut batches: Vec<Batch> = Vec::new();
    for change in changes {
        let old_id = change.old.as_ref().map(|row| id_of(row, key)).transpose()?;
        let new_doc = match &change.new {
            Some(Value::Object(row)) if change.operation != "DELETE" => Some(document(row, key)?),
            _ => None,
        };
        let new_id = new_doc.as_ref().and_then(|d| {
            d[basalt_core::search::meili::ID]
                .as_str()
                .map(str::to_owned)
        });
        if let Some(old_id) = old_id.filter(|old| Some(old) != new_id.as_ref()) {
            match batches.last_mut() {
                Some(Batch::Delete(ids)) => ids.push(old_id),
                _ => batches.push(Batch::Delete(vec![old_id])),
            }
        }
        if let Some(doc) = new_doc {
            match batches.last_mut() {
                Some(Batch::Upsert(docs)) => docs.push(doc),
                _ => batches.push(Batch::Upsert(vec![doc])),
            }
        }
    }
    Ok(batches)
}

impl Worker {
    /// One step for one index: confirm the batches Meilisearch finished
    /// (moving the cursor past them, in order), then send what follows.
    async fn step(&mut self, state: &AppState, index: &Index) -> Result<Progress, String> {
        let name = &index.def.name;
        let result = self.follow(state, index).await;
        if result.is_err() {
            // Resent from the cursor: upserts and deletes by id are idempotent.
            self.in_flight.remove(name);
        }
        result
    }

    async fn follow(&mut self, state: &AppState, index: &Index) -> Result<Progress, String> {
        let client = state.meili().client.as_ref().expect("checked at start");
        let timeout = state.meili().task_timeout;
        let db = state.pool.get().await.map_err(|e| e.to_string())?;
        let name = &index.def.name;
        let Some(row) = db
            .query_opt(
                "SELECT state, updated_at FROM basalt.search_indexes WHERE name = $1",
                &[name],
            )
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(Progress::Idle);
        };
        let index_state: String = row.get(0);
        if index_state == "building" {
            self.in_flight.remove(name);
            let requested: chrono::DateTime<chrono::Utc> = row.get(1);
            self.rebuild(state, client, index, requested).await?;
            return Ok(Progress::Worked);
        }
        let wanted = settings(state, &index.def)?;
        let wanted_json = serde_json::to_value(&wanted).map_err(|e| e.to_string())?;
        if self.applied.get(name) != Some(&wanted_json) {
            let task = client
                .index(name)
                .set_settings(&wanted)
                .await
                .map_err(|e| format!("Meilisearch: {e}"))?;
            finish(client, task, timeout).await?;
            self.applied.insert(name.clone(), wanted_json);
        }
        let cursor = Consumer::new(&consumer(name));
        let confirmed = cursor.position(&db).await.map_err(|e| e.to_string())?;
        let queue = self.in_flight.entry(name.clone()).or_default();
        let mut worked = false;
        // Confirm, oldest first; the cursor moves only past finished batches.
        while let Some(front) = queue.front() {
            let mut finished = true;
            for uid in &front.tasks {
                match client
                    .get_task(uid)
                    .await
                    .map_err(|e| format!("Meilisearch: {e}"))?
                {
                    Task::Succeeded { .. } => {}
                    task @ Task::Failed { .. } => {
                        let error = task.unwrap_failure();
                        return Err(format!(
                            "Meilisearch task failed: {} ({:?})",
                            error.error_message, error.error_code
                        ));
                    }
                    _ => {
                        finished = false;
                        break;
                    }
                }
            }
            if !finished {
                if front.sent.elapsed() > timeout {
                    return Err(format!(
                        "Meilisearch: a task did not succeed in time (search.task_timeout_secs = {})",
                        timeout.as_secs()
                    ));
                }
                break;
            }
            if !worked {
                // Cleared before the cursor moves: a status that shows the
                // index caught up never shows an error already overcome.
                clear_error(&db, name).await?;
            }
            cursor
                .advance(&db, front.through)
                .await
                .map_err(|e| e.to_string())?;
            queue.pop_front();
            worked = true;
        }
        if queue.len() >= MAX_IN_FLIGHT {
            return Ok(Progress::Waiting);
        }
        let after = queue.back().map_or(confirmed, |b| b.through.max(confirmed));
        let batch_size = state.config.search.batch_size as i64;
        let changes = match feed::read_after(&db, after, batch_size)
            .await
            .map_err(|e| e.to_string())?
        {
            Page::Gap { pruned_through } => {
                queue.clear();
                db.execute(
                    "UPDATE basalt.search_indexes SET state = 'building', rebuild_reason = $2, updated_at = now() WHERE name = $1",
                    &[name, &format!("feed_gap: the changes after position {after} were pruned (through {pruned_through}); rebuilt from the table")],
                )
                .await
                .map_err(|e| e.to_string())?;
                return Ok(Progress::Worked);
            }
            Page::Changes(changes) => changes,
        };
        let Some(through) = changes.last().map(|c| c.position) else {
            if !queue.is_empty() {
                return Ok(Progress::Waiting);
            }
            // Caught up: an error from an earlier step (say, applying the
            // settings) is over.
            clear_error(&db, name).await?;
            return Ok(if worked {
                Progress::Worked
            } else {
                Progress::Idle
            });
        };
        let (schema, table) = index.def.table_name(&state.config.rest.schema);
        let (_, key) = super::table_and_key(state, index)
            .await
            .map_err(|e| e.to_string())?;
        let batches = batches(
            changes
                .iter()
                .filter(|c| c.schema == schema && c.table == table),
            &key,
        )?;
        let meili_index = client.index(name);
        let mut tasks = Vec::new();
        for batch in &batches {
            let task = match batch {
                Batch::Upsert(docs) => {
                    meili_index
                        .add_or_replace(docs, Some(basalt_core::search::meili::ID))
                        .await
                }
                Batch::Delete(ids) => meili_index.delete_documents(ids).await,
            }
            .map_err(|e| format!("Meilisearch: {e}"))?;
            tasks.push(task);
        }
        let queue = self.in_flight.entry(name.clone()).or_default();
        queue.push_back(InFlight {
            through,
            tasks,
            sent: Instant::now(),
        });
        Ok(Progress::Worked)
    }

    /// Copies the table into a shadow index and swaps it in.
    async fn rebuild(
        &mut self,
        state: &AppState,
        client: &Client,
        index: &Index,
        requested: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), String> {
        let timeout = state.meili().task_timeout;
        let name = &index.def.name;
        let shadow = shadow(name);
        let meili = |e: meilisearch_sdk::errors::Error| format!("Meilisearch: {e}");
        let db = state.pool.get().await.map_err(|e| e.to_string())?;
        // Changes after this position are replayed on top of the copy.
        let start = feed::head(&db).await.map_err(|e| e.to_string())?;
        let (table, key) = super::table_and_key(state, index)
            .await
            .map_err(|e| e.to_string())?;
        let wanted = settings(state, &index.def)?;
        if let Ok(task) = client.delete_index(&shadow).await {
            let _ = finish(client, task, timeout).await;
        }
        let task = client
            .create_index(&shadow, Some(basalt_core::search::meili::ID))
            .await
            .map_err(meili)?;
        finish(client, task, timeout).await?;
        let task = client
            .index(&shadow)
            .set_settings(&wanted)
            .await
            .map_err(meili)?;
        finish(client, task, timeout).await?;
        let sql = format!("SELECT to_jsonb(t) FROM {} t", table.qualified());
        let rows = db
            .query_raw(&sql, Vec::<String>::new())
            .await
            .map_err(|e| e.to_string())?;
        pin_mut!(rows);
        let batch_size = state.config.search.batch_size as usize;
        let mut batch: Vec<Value> = Vec::with_capacity(batch_size);
        let shadow_index = client.index(&shadow);
        let mut copied = 0usize;
        loop {
            let next = rows.try_next().await.map_err(|e| e.to_string())?;
            if let Some(row) = &next {
                if let Value::Object(row) = row.get::<_, Value>(0) {
                    batch.push(document(&row, &key)?);
                }
            }
            if batch.len() >= batch_size || (next.is_none() && !batch.is_empty()) {
                let task = shadow_index
                    .add_or_replace(&batch, Some(basalt_core::search::meili::ID))
                    .await
                    .map_err(meili)?;
                finish(client, task, timeout).await?;
                copied += batch.len();
                batch.clear();
            }
            if next.is_none() {
                break;
            }
        }
        // The serving index must exist for the swap.
        if client.get_index(name).await.is_err() {
            let task = client
                .create_index(name, Some(basalt_core::search::meili::ID))
                .await
                .map_err(meili)?;
            finish(client, task, timeout).await?;
        }
        let task = client
            .swap_indexes([&SwapIndexes {
                indexes: (name.clone(), shadow.clone()),
                rename: None,
            }])
            .await
            .map_err(meili)?;
        finish(client, task, timeout).await?;
        let task = client.delete_index(&shadow).await.map_err(meili)?;
        finish(client, task, timeout).await?;
        self.applied.insert(
            name.clone(),
            serde_json::to_value(&wanted).map_err(|e| e.to_string())?,
        );
        let cursor = Consumer::new(&consumer(name));
        cursor.reset(&db, start).await.map_err(|e| e.to_string())?;
        // Ready, unless another rebuild was asked for meanwhile.
        db.execute(
            "UPDATE basalt.search_indexes SET state = 'ready', rebuilt_at = now(), last_error = NULL
             WHERE name = $1 AND updated_at = $2",
            &[name, &requested],
        )
        .await
        .map_err(|e| e.to_string())?;
        tracing::info!(index = %name, documents = copied, "search: rebuilt from the table");
        Ok(())
    }
}

fn id_of(row: &Value, key: &[String]) -> Result<String, String> {
    let values: Vec<Value> = key
        .iter()
        .map(|k| row.get(k).cloned().unwrap_or(Value::Null))
        .collect();
    document_id(&values)
}

//! The durable job queue: jobs are rows in `basalt.jobs`, enqueued in the same
//! transaction as the change that needs them, claimed by workers with
//! `FOR UPDATE SKIP LOCKED`, retried with exponential backoff and marked failed
//! after `jobs.max_attempts`. A handler per queue does the work.

use crate::db::pool::Tls;
use basalt_core::config::JobsConfig;
use deadpool_postgres::{GenericClient, Pool};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Why a job did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// Worth another attempt later (a server down, a timeout).
    Retry(String),
    /// Will never succeed (a refused recipient, a malformed payload).
    Permanent(String),
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::Retry(error.to_string())
    }
}

/// Work for one queue: `Ok` marks the job done; a failure retries the job or ends it.
pub type Handler =
    Arc<dyn Fn(Value) -> Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>> + Send + Sync>;

/// What enqueuers need: the retry budget and a way to wake this replica's workers.
#[derive(Clone)]
pub struct Queue {
    max_attempts: i32,
    wake: Arc<Notify>,
}

impl Queue {
    pub fn new(config: &JobsConfig) -> Self {
        Queue {
            max_attempts: config.max_attempts as i32,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Adds a job; call inside the transaction whose commit should make it
    /// real. Its NOTIFY is delivered at commit, to the workers of every replica
    /// (this one included), so no worker looks before the job is visible.
    pub async fn enqueue(
        &self,
        client: &impl GenericClient,
        queue: &str,
        payload: &Value,
    ) -> Result<(), tokio_postgres::Error> {
        client
            .execute(
                "WITH job AS (INSERT INTO basalt.jobs (queue, payload, max_attempts) VALUES ($1, $2, $3) RETURNING id)
                 SELECT pg_notify('basalt_jobs', $1) FROM job",
                &[&queue, payload, &self.max_attempts],
            )
            .await?;
        Ok(())
    }
}

/// Runs the worker until `stop` turns true; it claims one due job at a time,
/// woken by the listener or, failing that, every `jobs.poll_interval_ms`.
pub async fn run(
    pool: Pool,
    queue: Queue,
    config: JobsConfig,
    handlers: HashMap<&'static str, Handler>,
    (pg, tls): (tokio_postgres::Config, Tls),
    mut stop: watch::Receiver<bool>,
) {
    if handlers.is_empty() {
        return;
    }
    // Any replica's commit of a job wakes this worker at once.
    let listener = tokio::spawn(crate::db::listen::listen(
        pg,
        tls,
        "basalt_jobs",
        queue.wake.clone(),
    ));
    let names: Vec<String> = handlers.keys().map(|name| name.to_string()).collect();
    let poll = Duration::from_millis(config.poll_interval_ms);
    while !*stop.borrow() {
        match claim(&pool, &names).await {
            Ok(Some(job)) => {
                let handler = handlers[job.queue.as_str()].clone();
                let outcome = handler(job.payload).await;
                let recorded = finish(
                    &pool,
                    job.id,
                    job.attempts,
                    job.max_attempts,
                    &config,
                    outcome,
                )
                .await;
                if let Err(error) = recorded {
                    tracing::warn!(job = job.id, "could not record a job's outcome: {error}");
                }
                continue;
            }
            Ok(None) => {}
            Err(error) => tracing::warn!("cannot claim jobs: {error}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = queue.wake.notified() => {}
            _ = stop.changed() => {}
        }
    }
    listener.abort();
}

struct Job {
    id: i64,
    queue: String,
    payload: Value,
    attempts: i32,
    max_attempts: i32,
}

async fn claim(pool: &Pool, queues: &[String]) -> Result<Option<Job>, String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    // A job whose worker vanished after its last attempt is over.
    client
        .execute(
            "UPDATE basalt.jobs SET status = 'failed', payload = '{}', locked_until = NULL, updated_at = now(),
                    last_error = coalesce(last_error || '; ', '') || 'the worker was lost during the last attempt'
             WHERE status = 'running' AND locked_until < now() AND attempts >= max_attempts AND queue = ANY($1)",
            &[&queues],
        )
        .await
        .map_err(|e| e.to_string())?;
    let row = client
        .query_opt(
            "UPDATE basalt.jobs SET status = 'running', attempts = attempts + 1,
                    locked_until = now() + interval '5 minutes', updated_at = now()
             WHERE id = (
                 SELECT id FROM basalt.jobs
                 WHERE queue = ANY($1)
                   AND ((status = 'pending' AND run_at <= now()) OR (status = 'running' AND locked_until < now()))
                 ORDER BY run_at, id
                 FOR UPDATE SKIP LOCKED
                 LIMIT 1)
             RETURNING id, queue, payload, attempts, max_attempts",
            &[&queues],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.map(|row| Job {
        id: row.get(0),
        queue: row.get(1),
        payload: row.get(2),
        attempts: row.get(3),
        max_attempts: row.get(4),
    }))
}

/// Records the outcome, only if this worker still holds the job (its lease
/// may have passed and another worker claimed it). Payloads may hold personal
/// data, so a job that is over, done or failed, keeps none.
async fn finish(
    pool: &Pool,
    id: i64,
    attempts: i32,
    max_attempts: i32,
    config: &JobsConfig,
    outcome: Result<(), Failure>,
) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let (error, permanent) = match outcome {
        Ok(()) => {
            client
                .execute(
                    "UPDATE basalt.jobs SET status = 'done', payload = '{}', locked_until = NULL, last_error = NULL, updated_at = now()
                     WHERE id = $1 AND status = 'running' AND attempts = $2",
                    &[&id, &attempts],
                )
                .await
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
        Err(Failure::Permanent(error)) => (error, true),
        Err(Failure::Retry(error)) => (error, false),
    };
    if permanent || attempts >= max_attempts {
        tracing::error!(job = id, attempts, "job failed for good: {error}");
        client
            .execute(
                "UPDATE basalt.jobs SET status = 'failed', payload = '{}', locked_until = NULL, last_error = $2, updated_at = now()
                 WHERE id = $1 AND status = 'running' AND attempts = $3",
                &[&id, &error, &attempts],
            )
            .await
            .map_err(|e| e.to_string())?;
    } else {
        let delay = backoff_ms(config, attempts);
        tracing::warn!(
            job = id,
            attempts,
            retry_in_ms = delay,
            "job failed: {error}"
        );
        client
            .execute(
                "UPDATE basalt.jobs SET status = 'pending', locked_until = NULL, last_error = $2,
                        run_at = now() + make_interval(secs => $3::float8 / 1000), updated_at = now()
                 WHERE id = $1 AND status = 'running' AND attempts = $4",
                &[&id, &error, &(delay as f64), &attempts],
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `retry_base_ms * 2^(attempts - 1)`, at most `retry_max_ms`.
pub fn backoff_ms(config: &JobsConfig, attempts: i32) -> u64 {
    let exponent = attempts.saturating_sub(1).clamp(0, 30) as u32;
    config
        .retry_base_ms
        .saturating_mul(1u64 << exponent)
        .min(config.retry_max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = JobsConfig {
            retry_base_ms: 100,
            retry_max_ms: 1000,
            ..JobsConfig::default()
        };
        let delays: Vec<u64> = (1..=6)
            .map(|attempt| backoff_ms(&config, attempt))
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
    }
}

//! Revoked sessions, in memory on every replica: an access token whose
//! session was revoked (sign-out, ban, password change, admin action, user
//! deleted) is refused at once, without a query per request.
//!
//! Revocations are recorded in `auth.revoked_sessions` by a trigger
//! (migration V13) that also sends `NOTIFY basalt_revoked`; each replica
//! listens and reads what is new, and polls every few seconds in case a
//! notification was lost. Only revocations younger than the longest access
//! token lifetime matter (older tokens have expired anyway): the memory and
//! the table are pruned past that window.

use crate::db;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long after a poll a revocation may still be committed and be read by
/// the next one (rows carry their transaction's start time).
const OVERLAP: Duration = Duration::from_secs(60);
/// The poll behind the notifications.
const POLL: Duration = Duration::from_secs(3);

pub struct Revoked {
    window: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Session → when it may be forgotten.
    sessions: HashMap<Uuid, Instant>,
    /// The newest `revoked_at` read so far.
    newest: Option<DateTime<Utc>>,
}

impl Revoked {
    /// `window`: the longest an access token stays valid (lifetime + skew).
    pub fn new(window: Duration) -> Self {
        Revoked {
            window,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn contains(&self, session: &Uuid) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .sessions
            .contains_key(session)
    }

    /// Reads revocations newer than the last read (with an overlap for late
    /// commits), and forgets those past the window.
    pub async fn refresh(&self, pool: &Pool) -> anyhow::Result<()> {
        let newest = self.lock().newest;
        let window = self.window.as_secs_f64();
        let overlap = OVERLAP.as_secs_f64();
        let client = pool.get().await?;
        let rows = client
            .query(
                "SELECT session_id, revoked_at, extract(epoch FROM now() - revoked_at)::float8
                 FROM auth.revoked_sessions
                 WHERE revoked_at > now() - make_interval(secs => $1)
                   AND ($2::timestamptz IS NULL OR revoked_at > $2 - make_interval(secs => $3))",
                &[&window, &newest, &overlap],
            )
            .await?;
        let now = Instant::now();
        let mut inner = self.lock();
        for row in rows {
            let session: Uuid = row.get(0);
            let at: DateTime<Utc> = row.get(1);
            let age = Duration::from_secs_f64(row.get::<_, f64>(2).max(0.0));
            let forget = now + self.window.saturating_sub(age);
            inner.sessions.insert(session, forget);
            inner.newest = inner.newest.max(Some(at));
        }
        inner.sessions.retain(|_, forget| *forget > now);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Keeps `revoked` current: on every `NOTIFY basalt_revoked`, and every few
/// seconds.
pub async fn follow(
    revoked: Arc<Revoked>,
    pool: Pool,
    pg: tokio_postgres::Config,
    tls: db::pool::Tls,
) {
    db::listen::on_notify(pg, tls, "basalt_revoked", Some(POLL), || {
        revoked.refresh(&pool)
    })
    .await
}

/// Deletes records past the window (run periodically).
pub async fn prune(pool: &Pool, window: Duration) -> anyhow::Result<u64> {
    let client = pool.get().await?;
    Ok(client
        .execute(
            "DELETE FROM auth.revoked_sessions WHERE revoked_at < now() - make_interval(secs => $1)",
            &[&window.as_secs_f64()],
        )
        .await?)
}

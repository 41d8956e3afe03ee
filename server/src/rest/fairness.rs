//! Fairness between callers: each caller (a signed-in user, or an anonymous
//! client's IP address) may have at most `rest.max_concurrent_per_caller`
//! data API requests holding or waiting for a database connection; one more
//! is answered `429` with `Retry-After`, so one caller's parallel heavy
//! queries cannot take the whole pool from everyone else. The service_role
//! key is not limited. A statement timeout per transaction
//! (`rest.statement_timeout_ms`) bounds each of them in the database too.

use crate::error::HttpError;
use crate::identity::Caller;
use basalt_core::errors::ErrorCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Fairness {
    running: Mutex<HashMap<String, usize>>,
}

/// A caller's place among the running requests, given back when dropped.
pub struct Slot {
    fairness: Arc<Fairness>,
    key: String,
}

impl Fairness {
    pub fn acquire(
        self: &Arc<Self>,
        caller: &Caller,
        limit: u64,
    ) -> Result<Option<Slot>, HttpError> {
        if limit == 0 || super::is_service_key(caller) {
            return Ok(None);
        }
        let key = match (caller.user, caller.ip) {
            (Some((user, _)), _) => format!("user:{user}"),
            (None, Some(ip)) => format!("ip:{ip}"),
            (None, None) => "anon".to_owned(),
        };
        let mut running = self.lock();
        let count = running.entry(key.clone()).or_default();
        if *count as u64 >= limit {
            return Err(HttpError::from(ErrorCode::TooManyConcurrentQueries).retry_after(1));
        }
        *count += 1;
        Ok(Some(Slot {
            fairness: self.clone(),
            key,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.fairness.lock();
        if let Some(count) = running.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.key);
            }
        }
    }
}

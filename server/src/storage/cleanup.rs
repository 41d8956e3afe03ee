//! The cleanup task: removes blobs no object refers to (left by a crash or a
//! failed delete between blob and metadata), what interrupted writes left in
//! the backend, expired resumable uploads with their parts, and spent upload
//! tokens past their expiry. Runs every `storage.cleanup_interval_secs` on
//! every replica (each step is idempotent) and on demand through
//! `POST /admin/v1/storage/cleanup`.

use crate::state::AppState;
use serde::Serialize;
use std::collections::HashSet;
use std::time::{Duration, SystemTime};
use uuid::Uuid;

#[derive(Debug, Default, Serialize)]
pub struct Swept {
    pub orphaned_blobs: u64,
    pub incomplete_writes: u64,
    pub expired_uploads: u64,
    pub spent_tokens: u64,
}

pub async fn sweep(state: &AppState) -> anyhow::Result<Swept> {
    let backend = &state.storage().backend;
    let grace = Duration::from_secs(state.config.storage.orphan_grace_secs);
    let before = SystemTime::now() - grace;
    let mut swept = Swept::default();

    let client = state.pool.get().await?;
    let expired = client
        .query(
            "DELETE FROM storage.resumable_uploads WHERE expires_at < now() RETURNING part_keys",
            &[],
        )
        .await?;
    swept.expired_uploads = expired.len() as u64;
    swept.spent_tokens = client
        .execute(
            "DELETE FROM storage.spent_upload_tokens WHERE expires_at < now() - interval '1 hour'",
            &[],
        )
        .await?;
    drop(client);
    for upload in &expired {
        for part in upload.get::<_, Vec<String>>(0) {
            forget(backend.delete(&part).await);
        }
    }

    swept.incomplete_writes = backend.sweep_incomplete(before).await?;

    // Parts of uploads that no longer exist (expired, finished or terminated).
    let parts = backend.list("uploads/").await?;
    let live: HashSet<Uuid> = {
        let client = state.pool.get().await?;
        client
            .query("SELECT id FROM storage.resumable_uploads", &[])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect()
    };
    for part in parts {
        let upload = part
            .key
            .split('/')
            .nth(1)
            .and_then(|id| id.parse::<Uuid>().ok());
        let orphan = part.modified < before && upload.is_none_or(|id| !live.contains(&id));
        if orphan && forget(backend.delete(&part.key).await) {
            swept.orphaned_blobs += 1;
        }
    }

    // Object blobs old enough that their upload has committed (or never will).
    let candidates: Vec<String> = backend
        .list("objects/")
        .await?
        .into_iter()
        .filter(|blob| blob.modified < before)
        .map(|blob| blob.key)
        .collect();
    for batch in candidates.chunks(1000) {
        let client = state.pool.get().await?;
        let referenced: HashSet<String> = client
            .query(
                "SELECT blob FROM storage.objects WHERE blob = ANY($1)",
                &[&batch],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        drop(client);
        for key in batch.iter().filter(|key| !referenced.contains(*key)) {
            if forget(backend.delete(key).await) {
                swept.orphaned_blobs += 1;
            }
        }
    }
    Ok(swept)
}

/// One failed delete is logged and left for the next sweep; the others go on.
fn forget(result: anyhow::Result<()>) -> bool {
    match result {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!("storage cleanup: {error:#}");
            false
        }
    }
}

/// Runs [`sweep`] every `storage.cleanup_interval_secs` until shutdown.
pub async fn run(state: AppState) {
    let every = Duration::from_secs(state.config.storage.cleanup_interval_secs);
    loop {
        tokio::time::sleep(every).await;
        if state.lifecycle.shutting_down() {
            continue;
        }
        match sweep(&state).await {
            Ok(swept) => {
                if swept.orphaned_blobs + swept.incomplete_writes + swept.expired_uploads > 0 {
                    tracing::info!(?swept, "storage cleanup");
                }
            }
            Err(error) => tracing::warn!("storage cleanup failed: {error:#}"),
        }
    }
}

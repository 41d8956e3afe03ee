//! `/storage/v1/`: buckets and objects on local disk or an S3-compatible
//! store. Object metadata lives in PostgreSQL (`storage.objects`, migration
//! V11), blobs in the backend under keys Basalt makes. Every write streams the
//! blob first and commits its metadata after, so a crash leaves at worst an
//! unreferenced blob, which the cleanup task removes (`cleanup.rs`).
//! Access is decided by the policy engine on `bucket:<id>/<path>` objects
//! (`read`, `write`, `delete`; `manage` for buckets), with row conditions on
//! the object's metadata.

pub mod backend;
mod buckets;
pub mod cleanup;
mod objects;
pub mod s3;
mod tus;

pub use buckets::reconcile as reconcile_buckets;

use crate::authz::engine::Decision;
use crate::error::HttpError;
use crate::identity::Caller;
use crate::state::AppState;
use actix_web::web;
use backend::Backend;
use basalt_core::config::Config;
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::filter::eval::matches;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::sync::Arc;
use uuid::Uuid;

/// The storage engine every handler reaches through `AppState`.
pub struct Storage {
    pub backend: Arc<dyn Backend>,
    /// Signs URLs (`basalt_core::storage::sign_token`).
    token_key: Vec<u8>,
}

impl Storage {
    /// Opens the configured backend; an S3 bucket that cannot be reached stops start-up.
    pub async fn open(config: &Config, token_key: &[u8]) -> anyhow::Result<Storage> {
        let backend: Arc<dyn Backend> = match config.storage.backend.as_str() {
            "s3" => {
                let s3 = s3::S3::new(&config.s3);
                s3.check().await.map_err(|error| {
                    anyhow::anyhow!(
                        "the S3 bucket `{}` cannot be reached: {error}",
                        config.s3.bucket
                    )
                })?;
                Arc::new(s3)
            }
            _ => Arc::new(
                backend::Local::open(std::path::Path::new(&config.data_dir).join("storage"))
                    .await?,
            ),
        };
        Ok(Storage {
            backend,
            token_key: token_key.to_vec(),
        })
    }
}

pub fn routes(config: &mut web::ServiceConfig) {
    buckets::routes(config);
    tus::routes(config);
    objects::routes(config);
}

/// The limits of requests that carry objects (uploads, downloads, signed
/// and resumable transfers): storage's (`storage.max_file_size_bytes`, with
/// room for a multipart form's envelope, and `storage.transfer_timeout_secs`),
/// not the server's. The JSON routes (list, info, move, copy) keep the
/// server's. Storage enforces each bucket's own limit again while streaming.
pub const TRANSFER_LIMITS: crate::http::Limits = crate::http::Limits {
    body_bytes: |config| config.storage.max_file_size_bytes + 64 * 1024,
    time: |config| std::time::Duration::from_secs(config.storage.transfer_timeout_secs),
};

#[derive(Debug, Clone)]
pub struct Bucket {
    pub id: String,
    pub public: bool,
    pub file_size_limit: Option<i64>,
    pub allowed_mime_types: Vec<String>,
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const BUCKET_COLUMNS: &str =
    "id, public, file_size_limit, allowed_mime_types, source, created_at, updated_at";

impl Bucket {
    fn from_row(row: &tokio_postgres::Row) -> Bucket {
        Bucket {
            id: row.get(0),
            public: row.get(1),
            file_size_limit: row.get(2),
            allowed_mime_types: row.get(3),
            source: row.get(4),
            created_at: row.get(5),
            updated_at: row.get(6),
        }
    }

    fn json(&self) -> Value {
        json!({
            "id": self.id, "name": self.id, "owner": "", "public": self.public,
            "file_size_limit": self.file_size_limit,
            "allowed_mime_types": if self.allowed_mime_types.is_empty() { Value::Null } else { json!(self.allowed_mime_types) },
            "source": self.source,
            "created_at": self.created_at, "updated_at": self.updated_at,
        })
    }

    /// The largest object this bucket takes.
    fn size_limit(&self, config: &Config) -> u64 {
        let server = config.storage.max_file_size_bytes;
        self.file_size_limit
            .map_or(server, |limit| (limit as u64).min(server))
    }
}

async fn find_bucket(state: &AppState, id: &str) -> Result<Bucket, HttpError> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {BUCKET_COLUMNS} FROM storage.buckets WHERE id = $1"),
            &[&id],
        )
        .await?;
    row.map(|row| Bucket::from_row(&row)).ok_or_else(|| {
        ApiError::new(ErrorCode::BucketNotFound)
            .with_details(id.to_owned())
            .into()
    })
}

/// One object's metadata.
#[derive(Debug, Clone)]
pub struct Object {
    pub id: Uuid,
    pub bucket_id: String,
    pub name: String,
    pub owner: Option<Uuid>,
    pub blob: String,
    pub size: i64,
    pub content_type: String,
    pub cache_control: String,
    pub checksum: String,
    pub version: i32,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const OBJECT_COLUMNS: &str = "id, bucket_id, name, owner, blob, size, content_type, cache_control, checksum, version, metadata, created_at, updated_at";

impl Object {
    fn from_row(row: &tokio_postgres::Row) -> Object {
        Object {
            id: row.get(0),
            bucket_id: row.get(1),
            name: row.get(2),
            owner: row.get(3),
            blob: row.get(4),
            size: row.get(5),
            content_type: row.get(6),
            cache_control: row.get(7),
            checksum: row.get(8),
            version: row.get(9),
            metadata: row.get(10),
            created_at: row.get(11),
            updated_at: row.get(12),
        }
    }

    fn etag(&self) -> String {
        format!("\"{}\"", self.checksum)
    }

    /// The object as `/object/info` shows it.
    fn info(&self) -> Value {
        json!({
            "id": self.id, "bucket_id": self.bucket_id, "name": self.name,
            "owner": self.owner, "size": self.size, "content_type": self.content_type,
            "cache_control": self.cache_control, "etag": self.etag(), "version": self.version,
            "metadata": self.metadata, "created_at": self.created_at, "updated_at": self.updated_at,
        })
    }

    /// What policy conditions see of it.
    fn policy_row(&self) -> Value {
        policy_row(
            &self.bucket_id,
            &self.name,
            self.owner,
            Some(self.size),
            Some(&self.content_type),
        )
    }
}

/// The columns a storage policy condition may use: `bucket_id`, `name`,
/// `owner`, `folder` (the first segment of the path), `size`, `content_type`.
fn policy_row(
    bucket: &str,
    name: &str,
    owner: Option<Uuid>,
    size: Option<i64>,
    content_type: Option<&str>,
) -> Value {
    let mut row = json!({
        "bucket_id": bucket,
        "name": name,
        "owner": owner,
        "folder": name.split_once('/').map(|(first, _)| first),
    });
    if let Some(size) = size {
        row["size"] = json!(size);
    }
    if let Some(content_type) = content_type {
        row["content_type"] = json!(content_type);
    }
    row
}

/// `read`, `write` or `delete` on `bucket:<id>/<path>` (a path prefix for listings).
fn decide(state: &AppState, caller: &Caller, bucket: &str, path: &str, action: &str) -> Decision {
    state.authz().authorize(
        &crate::authz::routes::subject_of(state, caller),
        &format!("bucket:{bucket}/{path}"),
        action,
    )
}

/// Whether a decision's row condition holds for `row`. A condition that
/// cannot be judged (a column the row lacks) answers `None`.
fn row_allowed(decision: &Decision, row: &Value, caller: &Caller) -> Option<bool> {
    if !decision.allowed {
        return Some(false);
    }
    let Some(condition) = &decision.condition else {
        return Some(true);
    };
    let uid = caller.user.map(|(user, _)| user.to_string());
    matches(condition, row, &crate::rest::variables(caller, &uid))
}

fn denied(action: &str) -> HttpError {
    ApiError::new(ErrorCode::Forbidden)
        .with_message(format!(
            "Your policies do not allow `{action}` on this object."
        ))
        .with_hint("Add a policy on bucket:<bucket>/<path> for this action (see docs/storage.md).")
        .into()
}

/// `400 validation_failed` with what is wrong.
fn invalid(details: impl Into<String>) -> HttpError {
    ApiError::new(ErrorCode::ValidationFailed)
        .with_details(details)
        .into()
}

/// A backend failure: logged, answered 503 (the store may be down).
fn backend_failed(error: anyhow::Error) -> HttpError {
    tracing::error!("storage backend: {error:#}");
    HttpError::from(ErrorCode::StorageUnavailable).retry_after(1)
}

impl crate::state::AppState {
    /// Storage's backend and URL signing key.
    pub fn storage(&self) -> &std::sync::Arc<Storage> {
        self.services.get()
    }
}

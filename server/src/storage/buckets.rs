//! `/storage/v1/bucket`: list, create, get, update, delete and empty buckets,
//! and the buckets declared in the config file. Managing a bucket takes the
//! service_role key or `manage` on `bucket:<id>`; a bucket is visible to
//! those who may manage it or `read` in it, and to everyone when public.

use super::{decide, find_bucket, invalid, Bucket, BUCKET_COLUMNS};
use crate::error::HttpError;
use crate::http::resource;
use crate::identity::Caller;
use crate::state::AppState;
use actix_web::web::{self, Data, Json, Path};
use actix_web::HttpResponse;
use basalt_core::config::BucketDecl;
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::storage::{check_bucket_id, valid_mime_pattern};
use deadpool_postgres::Pool;
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/storage/v1/bucket")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(resource("/storage/v1/bucket/{id}/empty").route(web::post().to(empty)))
        .service(
            resource("/storage/v1/bucket/{id}")
                .route(web::get().to(get))
                .route(web::put().to(update))
                .route(web::delete().to(delete)),
        );
}

fn may_manage(state: &AppState, caller: &Caller, id: &str) -> bool {
    state
        .authz()
        .authorize(
            &crate::authz::routes::subject_of(state, caller),
            &format!("bucket:{id}"),
            "manage",
        )
        .allowed
}

fn visible(state: &AppState, caller: &Caller, bucket: &Bucket) -> bool {
    bucket.public
        || may_manage(state, caller, &bucket.id)
        || decide(state, caller, &bucket.id, "", "read").allowed
}

fn check_manage(state: &AppState, caller: &Caller, id: &str) -> Result<(), HttpError> {
    if may_manage(state, caller, id) {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::Forbidden)
            .with_message(
                "Managing this bucket needs the service_role key or `manage` on bucket:<id>.",
            )
            .into())
    }
}

async fn list(state: Data<AppState>, caller: Caller) -> Result<HttpResponse, HttpError> {
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!("SELECT {BUCKET_COLUMNS} FROM storage.buckets ORDER BY id"),
            &[],
        )
        .await?;
    let buckets: Vec<Value> = rows
        .iter()
        .map(Bucket::from_row)
        .filter(|bucket| visible(&state, &caller, bucket))
        .map(|bucket| bucket.json())
        .collect();
    Ok(HttpResponse::Ok().json(buckets))
}

async fn get(
    state: Data<AppState>,
    caller: Caller,
    id: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let bucket = find_bucket(&state, &id).await?;
    if !visible(&state, &caller, &bucket) {
        return Err(ApiError::new(ErrorCode::BucketNotFound)
            .with_details(id.into_inner())
            .into());
    }
    Ok(HttpResponse::Ok().json(bucket.json()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    id: Option<String>,
    name: Option<String>,
    public: Option<bool>,
    /// Bytes; `null` for the server's limit.
    #[serde(default, with = "double_option")]
    file_size_limit: Option<Option<i64>>,
    #[serde(default, with = "double_option")]
    allowed_mime_types: Option<Option<Vec<String>>>,
}

/// Tells a field sent as `null` from one not sent.
mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

fn validate(settings: &Settings) -> Result<(), HttpError> {
    if let Some(Some(limit)) = settings.file_size_limit {
        if limit <= 0 {
            return Err(invalid(
                "file_size_limit must be a positive number of bytes",
            ));
        }
    }
    if let Some(Some(types)) = &settings.allowed_mime_types {
        if let Some(bad) = types.iter().find(|t| !valid_mime_pattern(t)) {
            return Err(invalid(format!(
                "allowed_mime_types: `{bad}` is not a MIME type or pattern such as image/*"
            )));
        }
    }
    Ok(())
}

async fn create(
    state: Data<AppState>,
    caller: Caller,
    body: Json<Settings>,
) -> Result<HttpResponse, HttpError> {
    let settings = body.into_inner();
    let id = settings
        .id
        .clone()
        .or_else(|| settings.name.clone())
        .ok_or_else(|| invalid("send the bucket's `id` (or `name`)"))?;
    check_bucket_id(&id)?;
    validate(&settings)?;
    check_manage(&state, &caller, &id)?;
    let client = state.pool.get().await?;
    let types = settings.allowed_mime_types.flatten().unwrap_or_default();
    let inserted = client
        .execute(
            "INSERT INTO storage.buckets (id, public, file_size_limit, allowed_mime_types)
             VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
            &[
                &id,
                &settings.public.unwrap_or(false),
                &settings.file_size_limit.flatten(),
                &types,
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(ApiError::new(ErrorCode::AlreadyExists)
            .with_details(format!("bucket `{id}`"))
            .into());
    }
    Ok(HttpResponse::Ok().json(json!({ "name": id })))
}

fn not_declared(bucket: &Bucket) -> Result<(), HttpError> {
    if bucket.source == "config" {
        Err(ApiError::new(ErrorCode::DeclaredInConfig)
            .with_hint("Change it in [[storage.buckets]] of the config file and restart.")
            .into())
    } else {
        Ok(())
    }
}

async fn update(
    state: Data<AppState>,
    caller: Caller,
    id: Path<String>,
    body: Json<Settings>,
) -> Result<HttpResponse, HttpError> {
    let settings = body.into_inner();
    validate(&settings)?;
    check_manage(&state, &caller, &id)?;
    let bucket = find_bucket(&state, &id).await?;
    not_declared(&bucket)?;
    let client = state.pool.get().await?;
    client
        .execute(
            "UPDATE storage.buckets SET public = $2, file_size_limit = $3,
                 allowed_mime_types = $4, updated_at = now() WHERE id = $1",
            &[
                &bucket.id,
                &settings.public.unwrap_or(bucket.public),
                &settings.file_size_limit.unwrap_or(bucket.file_size_limit),
                &settings
                    .allowed_mime_types
                    .map(Option::unwrap_or_default)
                    .unwrap_or(bucket.allowed_mime_types),
            ],
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "message": "Successfully updated" })))
}

async fn delete(
    state: Data<AppState>,
    caller: Caller,
    id: Path<String>,
) -> Result<HttpResponse, HttpError> {
    check_manage(&state, &caller, &id)?;
    let bucket = find_bucket(&state, &id).await?;
    not_declared(&bucket)?;
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    // Locks the bucket against uploads committing meanwhile.
    transaction
        .execute(
            "SELECT 1 FROM storage.buckets WHERE id = $1 FOR UPDATE",
            &[&bucket.id],
        )
        .await?;
    let objects: i64 = transaction
        .query_one(
            "SELECT count(*) FROM storage.objects WHERE bucket_id = $1",
            &[&bucket.id],
        )
        .await?
        .get(0);
    if objects > 0 {
        return Err(ApiError::new(ErrorCode::BucketNotEmpty)
            .with_details(format!("{objects} objects"))
            .into());
    }
    transaction
        .execute("DELETE FROM storage.buckets WHERE id = $1", &[&bucket.id])
        .await?;
    transaction.commit().await?;
    Ok(HttpResponse::Ok().json(json!({ "message": "Successfully deleted" })))
}

/// Deletes every object of the bucket (metadata in batches, then their blobs).
async fn empty(
    state: Data<AppState>,
    caller: Caller,
    id: Path<String>,
) -> Result<HttpResponse, HttpError> {
    check_manage(&state, &caller, &id)?;
    let bucket = find_bucket(&state, &id).await?;
    let mut deleted = 0u64;
    loop {
        let client = state.pool.get().await?;
        let blobs: Vec<String> = client
            .query(
                "DELETE FROM storage.objects WHERE id IN (
                     SELECT id FROM storage.objects WHERE bucket_id = $1 LIMIT 1000)
                 RETURNING blob",
                &[&bucket.id],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        drop(client);
        if blobs.is_empty() {
            break;
        }
        deleted += blobs.len() as u64;
        // A blob not removed here is an orphan the cleanup task removes.
        for blob in blobs {
            if let Err(error) = state.storage().backend.delete(&blob).await {
                tracing::warn!("emptying bucket: {error:#}");
            }
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "message": "Successfully emptied", "deleted": deleted })))
}

/// Creates or updates the buckets the config file declares (marked
/// `source = 'config'`); buckets once declared and now absent become
/// ordinary buckets again.
pub async fn reconcile(pool: &Pool, declared: &[BucketDecl]) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    let names: Vec<String> = declared.iter().map(|b| b.name.clone()).collect();
    transaction
        .execute(
            "UPDATE storage.buckets SET source = 'api' WHERE source = 'config' AND id <> ALL($1)",
            &[&names],
        )
        .await?;
    for bucket in declared {
        let limit = bucket.file_size_limit.map(|limit| limit as i64);
        transaction
            .execute(
                "INSERT INTO storage.buckets (id, public, file_size_limit, allowed_mime_types, source)
                 VALUES ($1, $2, $3, $4, 'config')
                 ON CONFLICT (id) DO UPDATE SET public = $2, file_size_limit = $3,
                     allowed_mime_types = $4, source = 'config', updated_at = now()",
                &[&bucket.name, &bucket.public, &limit, &bucket.allowed_mime_types],
            )
            .await?;
    }
    transaction.commit().await?;
    Ok(())
}

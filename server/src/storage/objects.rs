//! `/storage/v1/object/…`: uploads (raw or multipart, streamed with limits),
//! downloads (ranges, conditional requests, safe dispositions), info,
//! listing, move, copy, delete and signed URLs.

use super::backend::{new_object_key, BlobWriter};
use super::TRANSFER_LIMITS;
use super::{
    backend_failed, decide, denied, find_bucket, invalid, invalid_bucket, invalid_name, policy_row,
    row_allowed, Bucket, Object, OBJECT_COLUMNS,
};
use crate::authz::engine::Decision;
use crate::error::HttpError;
use crate::http::{limited_resource, resource};
use crate::identity::Caller;
use crate::state::AppState;
use actix_web::http::header::{self, HeaderValue, HttpDate};
use actix_web::http::{Method, StatusCode};
use actix_web::web::{self, Data, Json, Payload, Query};
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::filter::sql::{self, Column, Columns, Param};
use basalt_core::filter::FilterError;
use basalt_core::storage::{
    self as rules, check_bucket_id, check_name, name_from_url, ByteRange, SignedToken, TokenError,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::pin::Pin;
use std::time::SystemTime;
use uuid::Uuid;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(resource("/storage/v1/object/list/{bucket}").route(web::post().to(list)))
        .service(resource("/storage/v1/object/move").route(web::post().to(move_object)))
        .service(resource("/storage/v1/object/copy").route(web::post().to(copy_object)))
        .service(
            limited_resource("/storage/v1/object/sign/{bucket}", TRANSFER_LIMITS)
                .route(web::post().to(sign_many)),
        )
        .service(
            limited_resource(
                "/storage/v1/object/sign/{bucket}/{name:.*}",
                TRANSFER_LIMITS,
            )
            .route(web::post().to(sign))
            .route(web::get().to(signed_download))
            .route(web::head().to(signed_download)),
        )
        .service(
            limited_resource(
                "/storage/v1/object/upload/sign/{bucket}/{name:.*}",
                TRANSFER_LIMITS,
            )
            .route(web::post().to(sign_upload))
            .route(web::put().to(signed_upload)),
        )
        .service(resource("/storage/v1/object/info/{bucket}/{name:.*}").route(web::get().to(info)))
        .service(
            limited_resource(
                "/storage/v1/object/public/{bucket}/{name:.*}",
                TRANSFER_LIMITS,
            )
            .route(web::get().to(public_download))
            .route(web::head().to(public_download)),
        )
        .service(
            limited_resource(
                "/storage/v1/object/authenticated/{bucket}/{name:.*}",
                TRANSFER_LIMITS,
            )
            .route(web::get().to(download))
            .route(web::head().to(download)),
        )
        .service(
            limited_resource("/storage/v1/object/{bucket}", TRANSFER_LIMITS)
                .route(web::delete().to(delete_many)),
        )
        .service(
            limited_resource("/storage/v1/object/{bucket}/{name:.*}", TRANSFER_LIMITS)
                .route(web::post().to(upload_create))
                .route(web::put().to(upload_replace))
                .route(web::get().to(download))
                .route(web::head().to(download))
                .route(web::delete().to(delete_one)),
        );
}

/// The `{bucket}` of a route without an object path.
fn bucket_param(request: &HttpRequest) -> Result<String, HttpError> {
    let bucket = request.match_info().get("bucket").unwrap_or_default();
    check_bucket_id(bucket).map_err(invalid_bucket)?;
    Ok(bucket.to_owned())
}

/// The bucket and object name of a request, from the raw (still
/// percent-encoded) path after `prefix`, so each is decoded exactly once.
fn target(request: &HttpRequest, prefix: &str) -> Result<(String, String), HttpError> {
    let path = request.uri().path();
    let rest = path.strip_prefix(prefix).unwrap_or_default();
    let (bucket, name) = rest.split_once('/').unwrap_or((rest, ""));
    check_bucket_id(bucket).map_err(invalid_bucket)?;
    let name = name_from_url(name).map_err(invalid_name)?;
    Ok((bucket.to_owned(), name))
}

pub(super) async fn object_row(
    state: &AppState,
    bucket: &str,
    name: &str,
) -> Result<Option<Object>, HttpError> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT {OBJECT_COLUMNS} FROM storage.objects WHERE bucket_id = $1 AND name = $2"
            ),
            &[&bucket, &name],
        )
        .await?;
    Ok(row.map(|row| Object::from_row(&row)))
}

async fn find_object(state: &AppState, bucket: &str, name: &str) -> Result<Object, HttpError> {
    object_row(state, bucket, name)
        .await?
        .ok_or_else(|| not_found(bucket, name))
}

fn not_found(bucket: &str, name: &str) -> HttpError {
    ApiError::new(ErrorCode::ObjectNotFound)
        .with_details(format!("{bucket}/{name}"))
        .into()
}

/// The bucket, once the caller may `action` in it at `path`: decided before
/// the bucket is looked up, so a caller without any policy gets 403 whether
/// the bucket exists or not. A public bucket's objects may be read by anyone.
async fn permitted_bucket(
    state: &AppState,
    caller: &Caller,
    id: &str,
    path: &str,
    action: &str,
) -> Result<(Bucket, Decision), HttpError> {
    let decision = decide(state, caller, id, path, action);
    if decision.allowed {
        return Ok((find_bucket(state, id).await?, decision));
    }
    match find_bucket(state, id).await {
        Ok(bucket) if action == "read" && bucket.public => Ok((bucket, decision)),
        _ => Err(denied(action)),
    }
}

/// The object if the caller may `action` it: no policy at all is 403; a
/// policy whose condition excludes the object answers as if it were absent.
async fn authorized_object(
    state: &AppState,
    caller: &Caller,
    bucket: &str,
    name: &str,
    action: &str,
) -> Result<(Bucket, Object), HttpError> {
    let (bucket, decision) = permitted_bucket(state, caller, bucket, name, action).await?;
    let object = find_object(state, &bucket.id, name).await?;
    if !may(&bucket, &decision, &object, caller, action) {
        return Err(not_found(&bucket.id, name));
    }
    Ok((bucket, object))
}

/// Whether `decision` lets the caller `action` this object: its row
/// condition holds, or it is a read in a public bucket.
fn may(
    bucket: &Bucket,
    decision: &Decision,
    object: &Object,
    caller: &Caller,
    action: &str,
) -> bool {
    (action == "read" && bucket.public)
        || row_allowed(decision, &object.policy_row(), caller) == Some(true)
}

// ---------------------------------------------------------------- uploads

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// POST: fails if the path exists.
    Create,
    /// PUT: fails if it does not.
    Replace,
    /// POST with `x-upsert: true`: either.
    Upsert,
}

impl Mode {
    /// POST's mode: create, or create-or-replace with `x-upsert`.
    pub(super) fn creating(upsert: bool) -> Mode {
        if upsert {
            Mode::Upsert
        } else {
            Mode::Create
        }
    }
}

/// Who is writing, and what allows it.
pub(super) enum Writer<'a> {
    Caller(&'a Caller, Decision),
    /// A signed upload URL: its signer was authorized when signing.
    Token(&'a SignedToken),
}

impl Writer<'_> {
    fn owner(&self) -> Option<Uuid> {
        match self {
            Writer::Caller(caller, _) => caller.user.map(|(user, _)| user),
            Writer::Token(token) => token.owner.as_deref().and_then(|o| o.parse().ok()),
        }
    }

    /// Whether the writer may write `row` (the new object's metadata).
    fn allows(&self, row: &Value) -> Option<bool> {
        match self {
            Writer::Caller(caller, decision) => row_allowed(decision, row, caller),
            Writer::Token(_) => Some(true),
        }
    }

    /// Whether the writer may replace `old`: a token signed by a user
    /// replaces only that user's objects.
    fn may_replace(&self, old: &Object) -> bool {
        match self {
            Writer::Caller(caller, decision) => {
                row_allowed(decision, &old.policy_row(), caller) == Some(true)
            }
            Writer::Token(token) => {
                token.service || (old.owner.is_some() && old.owner == self.owner())
            }
        }
    }
}

/// What an upload stores besides its bytes.
pub(super) struct Content {
    pub content_type: String,
    pub cache_control: String,
    pub metadata: Value,
}

type Body<'a> = Pin<Box<dyn Stream<Item = Result<Bytes, HttpError>> + 'a>>;

pub(super) fn payload_error(error: actix_web::error::PayloadError, limit: u64) -> HttpError {
    match error {
        actix_web::error::PayloadError::Overflow => too_large(limit),
        other => ApiError::new(ErrorCode::InvalidRequest)
            .with_message("The request body could not be read to its end.")
            .with_details(other.to_string())
            .into(),
    }
}

pub(super) fn too_large(limit: u64) -> HttpError {
    ApiError::new(ErrorCode::PayloadTooLarge)
        .with_details(format!("limit: {limit} bytes"))
        .with_hint("Send a smaller object; the limit is the bucket's file_size_limit or storage.max_file_size_bytes.")
        .into()
}

pub(super) fn header_text<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn upsert_header(request: &HttpRequest) -> bool {
    header_text(request, "x-upsert").is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

pub(super) fn check_type(bucket: &Bucket, content_type: &str) -> Result<(), HttpError> {
    if rules::mime_allowed(&bucket.allowed_mime_types, content_type) {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::MimeTypeNotAllowed)
            .with_details(format!(
                "`{}` is not one of {}",
                rules::essence(content_type),
                bucket.allowed_mime_types.join(", ")
            ))
            .into())
    }
}

/// Streams `body` into a new blob, counting and hashing; anything wrong
/// drops the writer, which removes what was written.
async fn receive(
    state: &AppState,
    mut body: Body<'_>,
    limit: u64,
) -> Result<(String, i64, String), HttpError> {
    let key = new_object_key();
    let mut writer: Box<dyn BlobWriter> = state
        .storage()
        .backend
        .writer(&key)
        .await
        .map_err(backend_failed)?;
    let mut size: u64 = 0;
    let mut hasher = Sha256::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(too_large(limit));
        }
        hasher.update(&chunk);
        writer.write(chunk).await.map_err(backend_failed)?;
    }
    writer.finish().await.map_err(backend_failed)?;
    Ok((key, size as i64, hex::encode(hasher.finalize())))
}

/// The shared upload path of POST, PUT, signed uploads.
async fn upload(
    state: &AppState,
    request: &HttpRequest,
    payload: Payload,
    bucket: &Bucket,
    name: &str,
    mode: Mode,
    writer: Writer<'_>,
) -> Result<HttpResponse, HttpError> {
    let limit = bucket.size_limit(&state.config);
    let declared = header_text(request, "content-length").and_then(|v| v.parse::<u64>().ok());
    let multipart = header_text(request, "content-type")
        .is_some_and(|t| rules::essence(t) == "multipart/form-data");
    // The multipart envelope is a few hundred bytes over the file.
    if declared.is_some_and(|length| length > limit + if multipart { 64 * 1024 } else { 0 }) {
        return Err(too_large(limit));
    }
    let owner = writer.owner();
    let prospective = policy_row(&bucket.id, name, owner, None, None);
    if writer.allows(&prospective) == Some(false) {
        return Err(denied("write"));
    }
    // Fail fast on a conflict the commit would refuse anyway.
    let exists = object_row(state, &bucket.id, name).await?.is_some();
    match (mode, exists) {
        (Mode::Create, true) => return Err(exists_error(&bucket.id, name)),
        (Mode::Replace, false) => return Err(not_found(&bucket.id, name)),
        _ => {}
    }

    let (key, size, checksum, content) = if multipart {
        let mut form = actix_multipart::Multipart::new(request.headers(), payload);
        let mut cache_control = header_text(request, "cache-control")
            .map(cache_control_value)
            .transpose()?;
        let mut content_type = None;
        let mut metadata = Value::Null;
        loop {
            let Some(field) = form.next().await else {
                return Err(invalid("the form has no file field"));
            };
            let mut field = field.map_err(form_error)?;
            let field_name = field.name().unwrap_or_default().to_owned();
            let is_file = field
                .content_disposition()
                .and_then(|d| d.get_filename())
                .is_some()
                || field_name.is_empty()
                || field_name == "file";
            if is_file {
                let content_type = stored_type(
                    content_type
                        .or_else(|| field.content_type().map(|m| m.to_string()))
                        .as_deref(),
                )?;
                check_type(bucket, &content_type)?;
                let body: Body = Box::pin(field.map(|chunk| chunk.map_err(form_error)));
                let (key, size, checksum) = receive(state, body, limit).await?;
                let content = Content {
                    content_type,
                    cache_control: cache_control.unwrap_or_else(default_cache_control),
                    metadata,
                };
                break (key, size, checksum, content);
            }
            let mut text = Vec::new();
            while let Some(chunk) = field.next().await {
                text.extend_from_slice(&chunk.map_err(form_error)?);
                if text.len() > 64 * 1024 {
                    return Err(invalid(format!(
                        "the form field `{field_name}` is over 64 KiB"
                    )));
                }
            }
            let text = String::from_utf8_lossy(&text).into_owned();
            match field_name.as_str() {
                "cacheControl" => cache_control = Some(cache_control_value(&text)?),
                "contentType" => content_type = Some(text),
                "metadata" => {
                    metadata = serde_json::from_str(&text)
                        .map_err(|e| invalid(format!("metadata is not JSON: {e}")))?
                }
                _ => {}
            }
        }
    } else {
        // Everything that can refuse the request is checked before the
        // body is read: after `receive`, only the commit may fail.
        let content_type = stored_type(header_text(request, "content-type"))?;
        check_type(bucket, &content_type)?;
        let content = Content {
            content_type,
            cache_control: header_text(request, "cache-control")
                .map(cache_control_value)
                .transpose()?
                .unwrap_or_else(default_cache_control),
            metadata: match header_text(request, "x-metadata") {
                None => Value::Null,
                Some(text) => serde_json::from_str(text)
                    .map_err(|e| invalid(format!("x-metadata is not JSON: {e}")))?,
            },
        };
        let body: Body =
            Box::pin(payload.map(move |chunk| chunk.map_err(|e| payload_error(e, limit))));
        let (key, size, checksum) = receive(state, body, limit).await?;
        (key, size, checksum, content)
    };

    let blob = NewBlob {
        key,
        size,
        checksum,
    };
    let object = commit(state, bucket, name, mode, &writer, blob, &content).await?;
    Ok(HttpResponse::Ok().json(json!({
        "Id": object.id, "Key": format!("{}/{}", object.bucket_id, object.name),
        "size": object.size, "etag": object.etag(), "version": object.version,
    })))
}

pub(super) fn default_cache_control() -> String {
    "max-age=3600".into()
}

pub(super) fn cache_control_value(text: &str) -> Result<String, HttpError> {
    rules::cache_control(text).map_err(invalid)
}

/// The content type to store, checked to be one media type.
pub(super) fn stored_type(text: Option<&str>) -> Result<String, HttpError> {
    rules::content_type(text.unwrap_or("application/octet-stream")).map_err(invalid)
}

fn form_error(error: actix_multipart::MultipartError) -> HttpError {
    if let actix_multipart::MultipartError::Payload(actix_web::error::PayloadError::Overflow) =
        error
    {
        return ApiError::new(ErrorCode::PayloadTooLarge).into();
    }
    ApiError::new(ErrorCode::InvalidRequest)
        .with_message("The multipart form could not be read.")
        .with_details(error.to_string())
        .into()
}

fn exists_error(bucket: &str, name: &str) -> HttpError {
    ApiError::new(ErrorCode::ObjectExists)
        .with_details(format!("{bucket}/{name}"))
        .into()
}

/// After a failed commit: removes the new blob unless a row refers to it
/// (a COMMIT whose answer was lost may have committed). When that cannot be
/// told, the blob stays for the cleanup task.
async fn discard_unreferenced(state: &AppState, key: &str) {
    let Ok(client) = state.pool.get().await else {
        return;
    };
    if let Ok(None) = client
        .query_opt("SELECT 1 FROM storage.objects WHERE blob = $1", &[&key])
        .await
    {
        drop(client);
        discard(state, key).await;
    }
}

/// Removes a blob no committed row refers to (best effort: the cleanup task
/// removes what this misses).
pub(super) async fn discard(state: &AppState, key: &str) {
    if let Err(error) = state.storage().backend.delete(key).await {
        tracing::warn!("removing blob {key}: {error:#}");
    }
}

pub(super) struct NewBlob {
    pub key: String,
    pub size: i64,
    pub checksum: String,
}

/// Commits a stored blob as the object `bucket/name` and answers it. After
/// the commit the blob it replaced is removed; when the commit fails, the
/// new blob is (unless a row refers to it after all).
pub(super) async fn commit(
    state: &AppState,
    bucket: &Bucket,
    name: &str,
    mode: Mode,
    writer: &Writer<'_>,
    blob: NewBlob,
    content: &Content,
) -> Result<Object, HttpError> {
    let key = blob.key.clone();
    match commit_metadata(state, bucket, name, mode, writer, blob, content).await {
        Ok((object, replaced)) => {
            if let Some(old) = replaced {
                discard(state, &old).await;
            }
            Ok(object)
        }
        Err(error) => {
            discard_unreferenced(state, &key).await;
            Err(error)
        }
    }
}

/// In one transaction: the existing row locked and checked against the mode
/// and the writer's condition, the new row checked, a signed upload's token
/// spent. Answers the object and the blob it replaced.
async fn commit_metadata(
    state: &AppState,
    bucket: &Bucket,
    name: &str,
    mode: Mode,
    writer: &Writer<'_>,
    blob: NewBlob,
    content: &Content,
) -> Result<(Object, Option<String>), HttpError> {
    let owner = writer.owner();
    let row = policy_row(
        &bucket.id,
        name,
        owner,
        Some(blob.size),
        Some(&content.content_type),
    );
    if writer.allows(&row) != Some(true) {
        return Err(denied("write"));
    }
    let metadata = if content.metadata.is_null() {
        json!({})
    } else {
        content.metadata.clone()
    };
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let existing = transaction
        .query_opt(
            &format!("SELECT {OBJECT_COLUMNS} FROM storage.objects WHERE bucket_id = $1 AND name = $2 FOR UPDATE"),
            &[&bucket.id, &name],
        )
        .await
        ?
        .map(|row| Object::from_row(&row));
    if let Writer::Token(token) = writer {
        let spent = transaction
            .execute(
                "INSERT INTO storage.spent_upload_tokens (id, expires_at)
                 VALUES ($1, to_timestamp($2)) ON CONFLICT DO NOTHING",
                &[&token.id, &(token.exp as f64)],
            )
            .await?;
        if spent == 0 {
            return Err(ErrorCode::SignedUploadUsed.into());
        }
    }
    let saved = match (existing, mode) {
        (Some(_), Mode::Create) => return Err(exists_error(&bucket.id, name)),
        (None, Mode::Replace) => return Err(not_found(&bucket.id, name)),
        (Some(old), _) => {
            if !writer.may_replace(&old) {
                return Err(denied("write"));
            }
            let row = transaction
                .query_one(
                    &format!(
                        "UPDATE storage.objects SET blob = $2, size = $3, content_type = $4,
                             cache_control = $5, checksum = $6, metadata = $7,
                             version = version + 1, updated_at = now()
                         WHERE id = $1 RETURNING {OBJECT_COLUMNS}"
                    ),
                    &[
                        &old.id,
                        &blob.key,
                        &blob.size,
                        &content.content_type,
                        &content.cache_control,
                        &blob.checksum,
                        &metadata,
                    ],
                )
                .await?;
            (Object::from_row(&row), Some(old.blob))
        }
        (None, _) => {
            let row = transaction
                .query_opt(
                    &format!(
                        "INSERT INTO storage.objects (id, bucket_id, name, owner, blob, size,
                             content_type, cache_control, checksum, metadata)
                         SELECT $1, id, $3, $4, $5, $6, $7, $8, $9, $10
                         FROM storage.buckets WHERE id = $2 FOR SHARE
                         RETURNING {OBJECT_COLUMNS}"
                    ),
                    &[
                        &Uuid::new_v4(),
                        &bucket.id,
                        &name,
                        &owner,
                        &blob.key,
                        &blob.size,
                        &content.content_type,
                        &content.cache_control,
                        &blob.checksum,
                        &metadata,
                    ],
                )
                .await?
                .ok_or_else(|| {
                    HttpError::from(
                        ApiError::new(ErrorCode::BucketNotFound).with_details(bucket.id.clone()),
                    )
                })?;
            (Object::from_row(&row), None)
        }
    };
    transaction.commit().await?;
    Ok(saved)
}

async fn upload_create(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
    payload: Payload,
) -> Result<HttpResponse, HttpError> {
    let mode = Mode::creating(upsert_header(&request));
    upload_as_caller(&state, &request, &caller, payload, mode).await
}

async fn upload_replace(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
    payload: Payload,
) -> Result<HttpResponse, HttpError> {
    upload_as_caller(&state, &request, &caller, payload, Mode::Replace).await
}

async fn upload_as_caller(
    state: &AppState,
    request: &HttpRequest,
    caller: &Caller,
    payload: Payload,
    mode: Mode,
) -> Result<HttpResponse, HttpError> {
    let (bucket, name) = target(request, "/storage/v1/object/")?;
    let (bucket, decision) = permitted_bucket(state, caller, &bucket, &name, "write").await?;
    let writer = Writer::Caller(caller, decision);
    upload(state, request, payload, &bucket, &name, mode, writer).await
}

// -------------------------------------------------------------- downloads

#[derive(Deserialize)]
struct DownloadQuery {
    download: Option<String>,
}

async fn download(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
    query: Query<DownloadQuery>,
) -> Result<HttpResponse, HttpError> {
    let prefix = if request
        .path()
        .starts_with("/storage/v1/object/authenticated/")
    {
        "/storage/v1/object/authenticated/"
    } else {
        "/storage/v1/object/"
    };
    let (bucket, name) = target(&request, prefix)?;
    let (_, object) = authorized_object(&state, &caller, &bucket, &name, "read").await?;
    send(&state, &request, &object, query.download.as_deref(), false).await
}

/// Public buckets: no API key needed.
async fn public_download(
    state: Data<AppState>,
    request: HttpRequest,
    query: Query<DownloadQuery>,
) -> Result<HttpResponse, HttpError> {
    let (bucket, name) = target(&request, "/storage/v1/object/public/")?;
    let bucket = find_bucket(&state, &bucket).await?;
    if !bucket.public {
        // Private and missing buckets look the same here.
        return Err(ApiError::new(ErrorCode::BucketNotFound)
            .with_details(bucket.id)
            .into());
    }
    let object = find_object(&state, &bucket.id, &name).await?;
    send(&state, &request, &object, query.download.as_deref(), true).await
}

fn if_none_match(request: &HttpRequest, etag: &str) -> Option<bool> {
    let header = header_text(request, "if-none-match")?;
    Some(
        header
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag == etag || tag.strip_prefix("W/") == Some(etag)),
    )
}

/// Sends an object: 304 when the client's copy is current, 206 for a range,
/// 416 for a range past the end, else 200; HEAD gets the headers only.
/// Only public downloads (`shared`) may be kept by shared caches.
async fn send(
    state: &AppState,
    request: &HttpRequest,
    object: &Object,
    download: Option<&str>,
    shared: bool,
) -> Result<HttpResponse, HttpError> {
    let etag = object.etag();
    let modified = SystemTime::from(object.updated_at);
    let last_modified = HttpDate::from(modified);
    let not_modified = match if_none_match(request, &etag) {
        Some(matched) => matched,
        None => header_text(request, "if-modified-since")
            .and_then(|text| text.parse::<HttpDate>().ok())
            .is_some_and(|since| {
                // HTTP dates have whole seconds.
                object.updated_at.timestamp()
                    <= chrono::DateTime::<chrono::Utc>::from(SystemTime::from(since)).timestamp()
            }),
    };
    let mut response = HttpResponse::build(StatusCode::OK);
    response
        .insert_header((header::ETAG, etag.clone()))
        .insert_header((header::LAST_MODIFIED, last_modified.to_string()))
        .insert_header((
            header::CACHE_CONTROL,
            if shared {
                object.cache_control.clone()
            } else {
                rules::private_cache_control(&object.cache_control)
            },
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        // Stored bytes go out as stored: never recompressed, so ranges and
        // lengths stay true.
        .insert_header((header::CONTENT_ENCODING, "identity"));
    if not_modified {
        response.status(StatusCode::NOT_MODIFIED);
        return Ok(response.finish());
    }
    let active = !rules::inline_safe(&object.content_type);
    let filename = match download {
        Some(given) if !given.is_empty() => given.to_owned(),
        _ => object
            .name
            .rsplit('/')
            .next()
            .unwrap_or(&object.name)
            .to_owned(),
    };
    response.insert_header((
        header::CONTENT_DISPOSITION,
        rules::content_disposition(download.is_some() || active, &filename),
    ));
    if active {
        response.insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox",
        ));
    }
    response.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_str(&object.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    ));
    let size = object.size as u64;
    // A range of a representation the client no longer has would splice two versions.
    let range_header = match header_text(request, "if-range") {
        Some(validator) if validator != etag => None,
        _ => header_text(request, "range"),
    };
    let range = match rules::parse_range(range_header, size) {
        ByteRange::Full => None,
        ByteRange::Part { start, end } => Some((start, end)),
        ByteRange::Unsatisfiable => {
            let error = HttpError::from(
                ApiError::new(ErrorCode::RangeNotSatisfiable)
                    .with_message("The requested range starts past the end of the object.")
                    .with_details(format!("bytes */{size}")),
            );
            let mut response = actix_web::ResponseError::error_response(&error);
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("ASCII"),
            );
            return Ok(response);
        }
    };
    let length = match range {
        Some((start, end)) => {
            response
                .status(StatusCode::PARTIAL_CONTENT)
                .insert_header((header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}")));
            end - start + 1
        }
        None => size,
    };
    if request.method() == Method::HEAD || length == 0 {
        return Ok(response
            .no_chunking(length)
            .streaming(futures_util::stream::empty::<Result<Bytes, std::io::Error>>()));
    }
    let stream = state
        .storage()
        .backend
        .read(&object.blob, range)
        .await
        .map_err(backend_failed)?;
    Ok(response.no_chunking(length).streaming(stream))
}

async fn info(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
) -> Result<HttpResponse, HttpError> {
    let (bucket, name) = target(&request, "/storage/v1/object/info/")?;
    let (_, object) = authorized_object(&state, &caller, &bucket, &name, "read").await?;
    Ok(HttpResponse::Ok().json(object.info()))
}

// ---------------------------------------------------------------- listing

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListRequest {
    #[serde(default)]
    prefix: String,
    limit: Option<i64>,
    offset: Option<i64>,
    #[serde(rename = "sortBy")]
    sort_by: Option<SortBy>,
    #[serde(default)]
    search: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SortBy {
    column: String,
    #[serde(default)]
    order: Option<String>,
}

/// The columns of `storage.objects` a listing's policy condition may use.
struct ObjectColumns;

impl Columns for ObjectColumns {
    fn resolve(&self, name: &str, _: &mut Vec<Param>) -> Result<Column, FilterError> {
        let (sql, type_name) = match name {
            "bucket_id" => ("o.bucket_id", "text"),
            "name" => ("o.name", "text"),
            "owner" => ("o.owner", "uuid"),
            "folder" => ("NULLIF(split_part(o.name, '/', 1), o.name)", "text"),
            "size" => ("o.size", "bigint"),
            "content_type" => ("o.content_type", "text"),
            other => {
                return Err(FilterError::new(format!(
                    "storage policies cannot use the column `{other}`"
                )))
            }
        };
        Ok(Column {
            sql: sql.into(),
            type_name: type_name.into(),
        })
    }
}

/// Folders and files directly under `prefix`, the way Supabase lists them:
/// folders carry only a name. Only objects the caller may `read` count.
async fn list(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
    body: Json<ListRequest>,
) -> Result<HttpResponse, HttpError> {
    let bucket = bucket_param(&request)?;
    let body = body.into_inner();
    let prefix = rules::list_prefix(&body.prefix).map_err(invalid_name)?;
    let limit = body.limit.unwrap_or(100);
    let offset = body.offset.unwrap_or(0);
    if !(1..=1000).contains(&limit) || offset < 0 {
        return Err(invalid("limit is 1 to 1000 and offset at least 0"));
    }
    let (sort, order) = match &body.sort_by {
        None => ("entry", "ASC"),
        Some(sort) => {
            let column = match sort.column.as_str() {
                "name" => "entry",
                "created_at" => "created_at",
                "updated_at" => "updated_at",
                other => {
                    return Err(invalid(format!(
                        "sortBy.column `{other}`: use name, created_at or updated_at"
                    )))
                }
            };
            let order = match sort
                .order
                .as_deref()
                .unwrap_or("asc")
                .to_ascii_lowercase()
                .as_str()
            {
                "asc" => "ASC",
                "desc" => "DESC",
                other => return Err(invalid(format!("sortBy.order `{other}`: use asc or desc"))),
            };
            (column, order)
        }
    };
    let decision = decide(&state, &caller, &bucket, &prefix, "read");
    if !decision.allowed {
        return Err(denied("read"));
    }
    let bucket = find_bucket(&state, &bucket).await?;
    let mut params = vec![
        Param::Text(Some(bucket.id.clone())),
        Param::Text(Some(prefix.clone())),
        Param::Text(Some(body.search.clone())),
        Param::Text(Some(limit.to_string())),
        Param::Text(Some(offset.to_string())),
        // `LIKE 'prefix%'` can use the (bucket_id, name text_pattern_ops) index.
        Param::Text(Some(format!(
            "{}%",
            prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        ))),
    ];
    let condition = match &decision.condition {
        None => "TRUE".to_owned(),
        Some(expr) => {
            let uid = caller.user.map(|(user, _)| user.to_string());
            sql::to_sql(
                expr,
                &ObjectColumns,
                &crate::rest::variables(&caller, &uid),
                &mut params,
            )
            .map_err(|e| {
                HttpError::from(ApiError::new(ErrorCode::InvalidRequest).with_details(e.message))
            })?
        }
    };
    let statement = format!(
        "WITH visible AS (
             SELECT o.*, substr(o.name, char_length($2::text) + 1) AS rest
             FROM storage.objects o
             WHERE o.bucket_id = $1::text AND o.name LIKE $6::text AND ({condition})
         ), entries AS (
             SELECT split_part(rest, '/', 1) AS entry, true AS folder, NULL::uuid AS id,
                    NULL::timestamptz AS created_at, NULL::timestamptz AS updated_at,
                    NULL::bigint AS size, NULL::text AS content_type,
                    NULL::text AS cache_control, NULL::text AS checksum
             FROM visible WHERE strpos(rest, '/') > 0 GROUP BY 1
             UNION ALL
             SELECT rest, false, id, created_at, updated_at, size, content_type, cache_control, checksum
             FROM visible WHERE strpos(rest, '/') = 0
         )
         SELECT entry, folder, id, created_at, updated_at, size, content_type, cache_control, checksum
         FROM entries
         WHERE $3::text = '' OR strpos(lower(entry), lower($3::text)) > 0
         ORDER BY {sort} {order} NULLS LAST, entry
         LIMIT $4::text::bigint OFFSET $5::text::bigint"
    );
    let values = crate::rest::boxed(params);
    let client = state.pool.get().await?;
    let rows = client
        .query(&statement, &crate::rest::references(&values))
        .await?;
    let entries: Vec<Value> = rows
        .iter()
        .map(|row| {
            let folder: bool = row.get(1);
            if folder {
                json!({"name": row.get::<_, String>(0), "id": null, "created_at": null, "updated_at": null, "metadata": null})
            } else {
                let updated: chrono::DateTime<chrono::Utc> = row.get(4);
                json!({
                    "name": row.get::<_, String>(0), "id": row.get::<_, Uuid>(2),
                    "created_at": row.get::<_, chrono::DateTime<chrono::Utc>>(3), "updated_at": updated,
                    "metadata": {
                        "size": row.get::<_, i64>(5), "mimetype": row.get::<_, String>(6),
                        "cacheControl": row.get::<_, String>(7),
                        "eTag": format!("\"{}\"", row.get::<_, String>(8)),
                        "lastModified": updated, "contentLength": row.get::<_, i64>(5),
                    },
                })
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(entries))
}

// ------------------------------------------------------- move, copy, delete

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Transfer {
    #[serde(rename = "bucketId")]
    bucket_id: String,
    #[serde(rename = "sourceKey")]
    source_key: String,
    #[serde(rename = "destinationKey")]
    destination_key: String,
    #[serde(rename = "destinationBucket")]
    destination_bucket: Option<String>,
}

struct Endpoints {
    source: Object,
    destination: Bucket,
    name: String,
    decision: Decision,
}

/// Checks both ends of a move or copy: `source_action` on the source object,
/// `write` on the destination, and the destination bucket's limits.
async fn endpoints(
    state: &AppState,
    caller: &Caller,
    transfer: &Transfer,
    source_action: &str,
) -> Result<Endpoints, HttpError> {
    check_bucket_id(&transfer.bucket_id).map_err(invalid_bucket)?;
    let to_bucket = transfer
        .destination_bucket
        .clone()
        .unwrap_or_else(|| transfer.bucket_id.clone());
    check_bucket_id(&to_bucket).map_err(invalid_bucket)?;
    check_name(&transfer.source_key).map_err(invalid_name)?;
    check_name(&transfer.destination_key).map_err(invalid_name)?;
    let (_, source) = authorized_object(
        state,
        caller,
        &transfer.bucket_id,
        &transfer.source_key,
        source_action,
    )
    .await?;
    let (destination, decision) = permitted_bucket(
        state,
        caller,
        &to_bucket,
        &transfer.destination_key,
        "write",
    )
    .await?;
    // A copy belongs to its maker; a moved object keeps its owner.
    let owner = if source_action == "read" {
        caller.user.map(|(user, _)| user)
    } else {
        source.owner
    };
    let row = policy_row(
        &destination.id,
        &transfer.destination_key,
        owner,
        Some(source.size),
        Some(&source.content_type),
    );
    if row_allowed(&decision, &row, caller) != Some(true) {
        return Err(denied("write"));
    }
    if source.size as u64 > destination.size_limit(&state.config) {
        return Err(too_large(destination.size_limit(&state.config)));
    }
    check_type(&destination, &source.content_type)?;
    Ok(Endpoints {
        source,
        destination,
        name: transfer.destination_key.clone(),
        decision,
    })
}

/// Renames an object (metadata only; the blob stays). Needs `delete` on the
/// source, as its path is emptied, and `write` on the destination.
async fn move_object(
    state: Data<AppState>,
    caller: Caller,
    body: Json<Transfer>,
) -> Result<HttpResponse, HttpError> {
    let ends = endpoints(&state, &caller, &body, "delete").await?;
    let client = state.pool.get().await?;
    let moved = client
        .execute(
            "UPDATE storage.objects SET bucket_id = $2, name = $3, updated_at = now()
             WHERE id = $1 AND NOT EXISTS (
                 SELECT 1 FROM storage.objects WHERE bucket_id = $2 AND name = $3)",
            &[&ends.source.id, &ends.destination.id, &ends.name],
        )
        .await
        .map_err(|error| match error.code() {
            Some(code) if *code == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
                exists_error(&ends.destination.id, &ends.name)
            }
            _ => HttpError::from(error),
        })?;
    if moved == 0 {
        return Err(exists_error(&ends.destination.id, &ends.name));
    }
    Ok(HttpResponse::Ok().json(json!({ "message": "Successfully moved" })))
}

/// Copies an object's blob to a new one (the copy is owned by the caller).
async fn copy_object(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
    body: Json<Transfer>,
) -> Result<HttpResponse, HttpError> {
    let ends = endpoints(&state, &caller, &body, "read").await?;
    let mode = Mode::creating(upsert_header(&request));
    if mode == Mode::Create
        && object_row(&state, &ends.destination.id, &ends.name)
            .await?
            .is_some()
    {
        return Err(exists_error(&ends.destination.id, &ends.name));
    }
    let key = new_object_key();
    state
        .storage()
        .backend
        .copy(&ends.source.blob, &key)
        .await
        .map_err(backend_failed)?;
    let content = Content {
        content_type: ends.source.content_type.clone(),
        cache_control: ends.source.cache_control.clone(),
        metadata: ends.source.metadata.clone(),
    };
    let writer = Writer::Caller(&caller, ends.decision);
    let blob = NewBlob {
        key,
        size: ends.source.size,
        checksum: ends.source.checksum.clone(),
    };
    let object = commit(
        &state,
        &ends.destination,
        &ends.name,
        mode,
        &writer,
        blob,
        &content,
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({
        "Id": object.id, "Key": format!("{}/{}", object.bucket_id, object.name),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteMany {
    prefixes: Vec<String>,
}

/// Deletes the named objects the caller may delete; others (and missing
/// ones) are left out of the answer, which lists what was deleted.
async fn delete_many(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
    body: Json<DeleteMany>,
) -> Result<HttpResponse, HttpError> {
    let bucket = bucket_param(&request)?;
    let names = body.into_inner().prefixes;
    if names.is_empty() || names.len() > 1000 {
        return Err(invalid("prefixes: send 1 to 1000 object paths"));
    }
    for name in &names {
        check_name(name).map_err(invalid_name)?;
    }
    if !names
        .iter()
        .any(|name| decide(&state, &caller, &bucket, name, "delete").allowed)
    {
        return Err(denied("delete"));
    }
    let bucket = find_bucket(&state, &bucket).await?;
    let deleted = delete_objects(&state, &caller, &bucket, &names).await?;
    Ok(HttpResponse::Ok().json(deleted.iter().map(Object::info).collect::<Vec<_>>()))
}

async fn delete_one(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
) -> Result<HttpResponse, HttpError> {
    let (bucket, name) = target(&request, "/storage/v1/object/")?;
    let (bucket, _) = permitted_bucket(&state, &caller, &bucket, &name, "delete").await?;
    let deleted = delete_objects(&state, &caller, &bucket, std::slice::from_ref(&name)).await?;
    if deleted.is_empty() {
        return Err(not_found(&bucket.id, &name));
    }
    Ok(HttpResponse::Ok().json(json!({ "message": "Successfully deleted" })))
}

async fn delete_objects(
    state: &AppState,
    caller: &Caller,
    bucket: &Bucket,
    names: &[String],
) -> Result<Vec<Object>, HttpError> {
    let decisions: HashMap<&str, Decision> = names
        .iter()
        .map(|name| {
            (
                name.as_str(),
                decide(state, caller, &bucket.id, name, "delete"),
            )
        })
        .collect();
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let rows = transaction
        .query(
            &format!("SELECT {OBJECT_COLUMNS} FROM storage.objects WHERE bucket_id = $1 AND name = ANY($2) FOR UPDATE"),
            &[&bucket.id, &names],
        )
        .await
        ?;
    let allowed: Vec<Object> = rows
        .iter()
        .map(Object::from_row)
        .filter(|object| {
            decisions.get(object.name.as_str()).is_some_and(|decision| {
                row_allowed(decision, &object.policy_row(), caller) == Some(true)
            })
        })
        .collect();
    let ids: Vec<Uuid> = allowed.iter().map(|object| object.id).collect();
    transaction
        .execute("DELETE FROM storage.objects WHERE id = ANY($1)", &[&ids])
        .await?;
    transaction.commit().await?;
    drop(client);
    for object in &allowed {
        discard(state, &object.blob).await;
    }
    Ok(allowed)
}

// ------------------------------------------------------------ signed URLs

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignRequest {
    #[serde(rename = "expiresIn")]
    expires_in: i64,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn new_token_id() -> String {
    Uuid::new_v4().simple().to_string()
}

fn encode_path(bucket: &str, name: &str) -> String {
    let encoded: Vec<String> = name
        .split('/')
        .map(|segment| {
            url::form_urlencoded::byte_serialize(segment.as_bytes())
                .collect::<String>()
                .replace('+', "%20")
        })
        .collect();
    format!("{bucket}/{}", encoded.join("/"))
}

/// A download URL for an object the caller may read, valid `expiresIn` seconds.
async fn sign(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
    body: Json<SignRequest>,
) -> Result<HttpResponse, HttpError> {
    let (bucket, name) = target(&request, "/storage/v1/object/sign/")?;
    check_expiry(&state, body.expires_in)?;
    authorized_object(&state, &caller, &bucket, &name, "read").await?;
    let (url, expires_at) = download_url(&state, &bucket, &name, body.expires_in);
    Ok(HttpResponse::Ok().json(json!({ "signedURL": url, "expiresAt": expires_at })))
}

fn check_expiry(state: &AppState, expires_in: i64) -> Result<(), HttpError> {
    let max = state.config.storage.signed_url_max_expiry_secs as i64;
    if (1..=max).contains(&expires_in) {
        Ok(())
    } else {
        Err(invalid(format!("expiresIn is 1 to {max} seconds")))
    }
}

/// A signed download URL (relative to `/storage/v1`) and its expiry.
fn download_url(state: &AppState, bucket: &str, name: &str, expires_in: i64) -> (String, i64) {
    let token = SignedToken {
        kind: "download".into(),
        bucket: bucket.to_owned(),
        name: name.to_owned(),
        exp: now() + expires_in,
        id: new_token_id(),
        owner: None,
        upsert: false,
        service: false,
    };
    let signed = rules::sign_token(&state.storage().token_key, &token);
    let url = format!("/object/sign/{}?token={signed}", encode_path(bucket, name));
    (url, token.exp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignMany {
    #[serde(rename = "expiresIn")]
    expires_in: i64,
    paths: Vec<String>,
}

const NOT_READABLE: &str = "Either the object does not exist or you do not have access to it";

/// Signed URLs for several objects: one entry per path, with `error` set
/// (and no URL) for a path that is invalid, missing or not readable.
async fn sign_many(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
    body: Json<SignMany>,
) -> Result<HttpResponse, HttpError> {
    let bucket = bucket_param(&request)?;
    check_expiry(&state, body.expires_in)?;
    if body.paths.is_empty() || body.paths.len() > 1000 {
        return Err(invalid("paths: send 1 to 1000 object paths"));
    }
    // One bucket lookup and one query for all the paths; each is decided in memory.
    let bucket = find_bucket(&state, &bucket).await.ok();
    let mut objects: HashMap<String, Object> = HashMap::new();
    if let Some(bucket) = &bucket {
        let client = state.pool.get().await?;
        for row in client
            .query(
                &format!("SELECT {OBJECT_COLUMNS} FROM storage.objects WHERE bucket_id = $1 AND name = ANY($2)"),
                &[&bucket.id, &body.paths],
            )
            .await
            ?
        {
            let object = Object::from_row(&row);
            objects.insert(object.name.clone(), object);
        }
    }
    let mut signed = Vec::with_capacity(body.paths.len());
    for path in &body.paths {
        let readable = match (check_name(path), &bucket, objects.get(path)) {
            (Err(problem), _, _) => Err(problem),
            (Ok(()), Some(bucket), Some(object)) => {
                let decision = decide(&state, &caller, &bucket.id, path, "read");
                if may(bucket, &decision, object, &caller, "read") {
                    Ok(&bucket.id)
                } else {
                    Err(NOT_READABLE.to_owned())
                }
            }
            _ => Err(NOT_READABLE.to_owned()),
        };
        signed.push(match readable {
            Ok(bucket) => {
                let (url, _) = download_url(&state, bucket, path, body.expires_in);
                json!({ "path": path, "signedURL": url, "error": null })
            }
            Err(error) => json!({ "path": path, "signedURL": null, "error": error }),
        });
    }
    Ok(HttpResponse::Ok().json(signed))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
    download: Option<String>,
}

fn verify(
    state: &AppState,
    text: Option<&str>,
    kind: &str,
    bucket: &str,
    name: &str,
) -> Result<SignedToken, HttpError> {
    let text = text.ok_or_else(|| {
        HttpError::from(ApiError::new(ErrorCode::InvalidSignature).with_details("no token"))
    })?;
    let token =
        rules::verify_token(&state.storage().token_key, text, now()).map_err(
            |error| match error {
                TokenError::Expired => HttpError::from(ErrorCode::SignedUrlExpired),
                TokenError::Invalid => HttpError::from(ErrorCode::InvalidSignature),
            },
        )?;
    if token.kind != kind || token.bucket != bucket || token.name != name {
        return Err(ErrorCode::InvalidSignature.into());
    }
    Ok(token)
}

async fn signed_download(
    state: Data<AppState>,
    request: HttpRequest,
    query: Query<TokenQuery>,
) -> Result<HttpResponse, HttpError> {
    let (bucket, name) = target(&request, "/storage/v1/object/sign/")?;
    verify(&state, query.token.as_deref(), "download", &bucket, &name)?;
    let object = find_object(&state, &bucket, &name).await?;
    send(&state, &request, &object, query.download.as_deref(), false).await
}

/// A URL that uploads one object once, without an API key, within two hours.
async fn sign_upload(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
) -> Result<HttpResponse, HttpError> {
    let (bucket, name) = target(&request, "/storage/v1/object/upload/sign/")?;
    let (bucket, decision) = permitted_bucket(&state, &caller, &bucket, &name, "write").await?;
    let owner = caller.user.map(|(user, _)| user);
    // The token carries no conditions: they must hold already, on what is
    // known before the upload (path and owner).
    if row_allowed(
        &decision,
        &policy_row(&bucket.id, &name, owner, None, None),
        &caller,
    ) != Some(true)
    {
        return Err(denied("write"));
    }
    let token = SignedToken {
        kind: "upload".into(),
        bucket: bucket.id.clone(),
        name: name.clone(),
        exp: now() + 7200,
        id: new_token_id(),
        owner: owner.map(|o| o.to_string()),
        upsert: upsert_header(&request),
        service: caller.role == crate::identity::jwt::SERVICE_ROLE,
    };
    let signed = rules::sign_token(&state.storage().token_key, &token);
    Ok(HttpResponse::Ok().json(json!({
        "url": format!("/object/upload/sign/{}?token={signed}", encode_path(&bucket.id, &name)),
        "token": signed,
        "expiresAt": token.exp,
    })))
}

async fn signed_upload(
    state: Data<AppState>,
    request: HttpRequest,
    query: Query<TokenQuery>,
    payload: Payload,
) -> Result<HttpResponse, HttpError> {
    let (bucket, name) = target(&request, "/storage/v1/object/upload/sign/")?;
    let token = verify(&state, query.token.as_deref(), "upload", &bucket, &name)?;
    {
        let client = state.pool.get().await?;
        let spent = client
            .query_opt(
                "SELECT 1 FROM storage.spent_upload_tokens WHERE id = $1",
                &[&token.id],
            )
            .await?;
        if spent.is_some() {
            return Err(ErrorCode::SignedUploadUsed.into());
        }
    }
    let bucket = find_bucket(&state, &bucket).await?;
    let mode = Mode::creating(token.upsert);
    upload(
        &state,
        &request,
        payload,
        &bucket,
        &name,
        mode,
        Writer::Token(&token),
    )
    .await
}

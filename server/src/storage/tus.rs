//! Resumable uploads with the TUS 1.0.0 protocol (core, `creation`,
//! `termination`, `expiration`) at `/storage/v1/upload/resumable`. Each
//! `PATCH` is streamed into one part blob and the offset moves only once the
//! part is stored, so an interrupted `PATCH` leaves the offset where it was
//! and the client resumes from `HEAD`'s `Upload-Offset`. Parts have unique
//! keys, recorded by the statement that moves the offset, so of two
//! concurrent `PATCH`es at one offset only one counts. The `PATCH` that
//! reaches `Upload-Length` assembles the parts into the object, commits it
//! like any upload and removes the parts.

use super::backend::{new_object_key, BlobWriter};
use super::objects::{
    cache_control_value, check_type, commit, default_cache_control, discard, header_text,
    object_row, payload_error, stored_type, too_large, upsert_header, Content, Mode, NewBlob,
    Writer,
};
use super::TRANSFER_LIMITS;
use super::{backend_failed, decide, denied, find_bucket, invalid, policy_row, row_allowed};
use crate::error::HttpError;
use crate::http::limited_resource;
use crate::identity::Caller;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Path, Payload};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::storage::{self as rules, check_bucket_id, check_name};
use futures_util::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            limited_resource("/storage/v1/upload/resumable", TRANSFER_LIMITS)
                .route(web::post().to(create))
                .route(web::method(actix_web::http::Method::OPTIONS).to(options)),
        )
        .service(
            limited_resource("/storage/v1/upload/resumable/{id}", TRANSFER_LIMITS)
                .route(web::head().to(head))
                .route(web::patch().to(patch))
                .route(web::delete().to(terminate))
                .route(web::method(actix_web::http::Method::OPTIONS).to(options)),
        );
}

const VERSION: &str = "1.0.0";

/// Parts one upload may have (each `PATCH` is one).
const MAX_PARTS: usize = 10_000;

fn tus(status: StatusCode) -> HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    response
        .insert_header(("Tus-Resumable", VERSION))
        .insert_header(("Cache-Control", "no-store"));
    response
}

fn check_version(request: &HttpRequest) -> Result<(), HttpError> {
    match header_text(request, "tus-resumable") {
        Some(VERSION) => Ok(()),
        other => Err(ApiError::new(ErrorCode::TusVersionUnsupported)
            .with_details(format!("Tus-Resumable: {}", other.unwrap_or("(none)")))
            .into()),
    }
}

async fn options(state: Data<AppState>) -> HttpResponse {
    tus(StatusCode::NO_CONTENT)
        .insert_header(("Tus-Version", VERSION))
        .insert_header(("Tus-Extension", "creation,termination,expiration"))
        .insert_header((
            "Tus-Max-Size",
            state.config.storage.max_file_size_bytes.to_string(),
        ))
        .finish()
}

/// `POST`: `Upload-Length` and `Upload-Metadata` (`bucketName`,
/// `objectName`, optional `contentType`, `cacheControl`) → 201 with the
/// upload's `Location`.
async fn create(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
) -> Result<HttpResponse, HttpError> {
    check_version(&request)?;
    // An upload is continued by whoever created it: a user, or the service_role key.
    if caller.user.is_none() && caller.role != crate::identity::jwt::SERVICE_ROLE {
        return Err(ErrorCode::LoginRequired.into());
    }
    let length: u64 = header_text(&request, "upload-length")
        .ok_or_else(|| invalid("send Upload-Length (Upload-Defer-Length is not supported)"))?
        .parse()
        .map_err(|_| invalid("Upload-Length is not a number"))?;
    let metadata = rules::tus_metadata(header_text(&request, "upload-metadata").unwrap_or(""))?;
    let field = |key: &str| {
        metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let bucket = field("bucketName").ok_or_else(|| invalid("Upload-Metadata lacks bucketName"))?;
    let name = field("objectName").ok_or_else(|| invalid("Upload-Metadata lacks objectName"))?;
    check_bucket_id(&bucket)?;
    check_name(&name)?;
    let content_type = stored_type(field("contentType").as_deref())?;
    let cache_control = field("cacheControl")
        .map(|c| cache_control_value(&c))
        .transpose()?
        .unwrap_or_else(default_cache_control);
    let decision = decide(&state, &caller, &bucket, &name, "write");
    let owner = caller.user.map(|(user, _)| user);
    if !decision.allowed
        || row_allowed(
            &decision,
            &policy_row(&bucket, &name, owner, None, None),
            &caller,
        ) == Some(false)
    {
        return Err(denied("write"));
    }
    let bucket = find_bucket(&state, &bucket).await?;
    let limit = bucket.size_limit(&state.config);
    if length > limit {
        return Err(too_large(limit));
    }
    check_type(&bucket, &content_type)?;
    let upsert = upsert_header(&request);
    // Fail before any byte is sent, as a plain upload does (the final PATCH checks again).
    if !upsert && object_row(&state, &bucket.id, &name).await?.is_some() {
        return Err(ApiError::new(ErrorCode::ObjectExists)
            .with_details(format!("{}/{name}", bucket.id))
            .into());
    }
    let id = Uuid::new_v4();
    let client = state.pool.get().await?;
    let expires: chrono::DateTime<chrono::Utc> = client
        .query_one(
            "INSERT INTO storage.resumable_uploads (id, bucket_id, name, owner, upsert,
                 content_type, cache_control, length, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9))
             RETURNING expires_at",
            &[
                &id,
                &bucket.id,
                &name,
                &owner,
                &upsert,
                &content_type,
                &cache_control,
                &(length as i64),
                &(state.config.storage.resumable_ttl_secs as f64),
            ],
        )
        .await?
        .get(0);
    Ok(tus(StatusCode::CREATED)
        .insert_header((
            "Location",
            format!(
                "{}/storage/v1/upload/resumable/{id}",
                state.config.public_url()
            ),
        ))
        .insert_header((
            "Upload-Expires",
            actix_web::http::header::HttpDate::from(std::time::SystemTime::from(expires))
                .to_string(),
        ))
        .finish())
}

struct Upload {
    id: Uuid,
    bucket_id: String,
    name: String,
    upsert: bool,
    content_type: String,
    cache_control: String,
    length: i64,
    offset: i64,
    part_keys: Vec<String>,
}

/// The upload, if it exists, has not expired and belongs to the caller.
async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<Upload, HttpError> {
    let missing = || HttpError::from(ErrorCode::UploadNotFound);
    let id: Uuid = id.parse().map_err(|_| missing())?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT id, bucket_id, name, owner, upsert, content_type, cache_control, length,
                    \"offset\", part_keys
             FROM storage.resumable_uploads WHERE id = $1 AND expires_at > now()",
            &[&id],
        )
        .await?
        .ok_or_else(missing)?;
    let owner: Option<Uuid> = row.get(3);
    let creator = match owner {
        Some(_) => owner == caller.user.map(|(user, _)| user),
        None => caller.role == crate::identity::jwt::SERVICE_ROLE,
    };
    if !creator {
        return Err(missing());
    }
    Ok(Upload {
        id: row.get(0),
        bucket_id: row.get(1),
        name: row.get(2),
        upsert: row.get(4),
        content_type: row.get(5),
        cache_control: row.get(6),
        length: row.get(7),
        offset: row.get(8),
        part_keys: row.get(9),
    })
}

async fn head(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
    id: Path<String>,
) -> Result<HttpResponse, HttpError> {
    check_version(&request)?;
    let upload = find(&state, &caller, &id).await?;
    Ok(tus(StatusCode::OK)
        .insert_header(("Upload-Offset", upload.offset.to_string()))
        .insert_header(("Upload-Length", upload.length.to_string()))
        .finish())
}

/// `PATCH` with `Upload-Offset` equal to the upload's offset and a body of
/// `application/offset+octet-stream`.
async fn patch(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
    id: Path<String>,
    payload: Payload,
) -> Result<HttpResponse, HttpError> {
    check_version(&request)?;
    if header_text(&request, "content-type")
        .map(rules::essence)
        .as_deref()
        != Some("application/offset+octet-stream")
    {
        return Err(ApiError::new(ErrorCode::UnsupportedMediaType)
            .with_hint("Send Content-Type: application/offset+octet-stream.")
            .into());
    }
    let offset: i64 = header_text(&request, "upload-offset")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| invalid("send Upload-Offset"))?;
    let upload = find(&state, &caller, &id).await?;
    if offset != upload.offset {
        return Err(ApiError::new(ErrorCode::UploadOffsetMismatch)
            .with_details(format!("the upload is at offset {}", upload.offset))
            .into());
    }
    let remaining = (upload.length - upload.offset) as u64;
    if upload.part_keys.len() >= MAX_PARTS {
        return Err(invalid(format!(
            "an upload has at most {MAX_PARTS} parts; send larger chunks"
        )));
    }

    // Store the body as a new part; a cut-off body stores nothing.
    let key = format!("uploads/{}/{}", upload.id, Uuid::new_v4().simple());
    let mut writer: Box<dyn BlobWriter> = state
        .storage()
        .backend
        .writer(&key)
        .await
        .map_err(backend_failed)?;
    let mut received: u64 = 0;
    let mut body = payload;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| payload_error(e, remaining))?;
        received += chunk.len() as u64;
        if received > remaining {
            return Err(too_large(remaining));
        }
        writer.write(chunk).await.map_err(backend_failed)?;
    }
    writer.finish().await.map_err(backend_failed)?;
    let client = state.pool.get().await?;
    let moved = client
        .query_opt(
            "UPDATE storage.resumable_uploads
             SET \"offset\" = \"offset\" + $3, part_keys = array_append(part_keys, $4)
             WHERE id = $1 AND \"offset\" = $2 RETURNING \"offset\", part_keys",
            &[&upload.id, &upload.offset, &(received as i64), &key],
        )
        .await?;
    drop(client);
    let Some(moved) = moved else {
        // Another PATCH got there first: this part never counted.
        discard(&state, &key).await;
        return Err(ErrorCode::UploadOffsetMismatch.into());
    };
    let new_offset: i64 = moved.get(0);
    if new_offset == upload.length {
        finish(&state, &caller, &upload, &moved.get::<_, Vec<String>>(1)).await?;
    }
    Ok(tus(StatusCode::NO_CONTENT)
        .insert_header(("Upload-Offset", new_offset.to_string()))
        .finish())
}

/// Assembles the parts into the object and commits it.
async fn finish(
    state: &AppState,
    caller: &Caller,
    upload: &Upload,
    parts: &[String],
) -> Result<(), HttpError> {
    let bucket = find_bucket(state, &upload.bucket_id).await?;
    let decision = decide(state, caller, &bucket.id, &upload.name, "write");
    let key = new_object_key();
    let mut writer: Box<dyn BlobWriter> = state
        .storage()
        .backend
        .writer(&key)
        .await
        .map_err(backend_failed)?;
    let mut hasher = Sha256::new();
    let mut assembled: i64 = 0;
    for part in parts {
        let mut stream = state
            .storage()
            .backend
            .read(part, None)
            .await
            .map_err(backend_failed)?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| backend_failed(e.into()))?;
            assembled += chunk.len() as i64;
            hasher.update(&chunk);
            writer.write(chunk).await.map_err(backend_failed)?;
        }
    }
    if assembled != upload.length {
        return Err(backend_failed(anyhow::anyhow!(
            "upload {}: its parts hold {assembled} bytes, not {}",
            upload.id,
            upload.length
        )));
    }
    writer.finish().await.map_err(backend_failed)?;
    let mode = Mode::creating(upload.upsert);
    let content = Content {
        content_type: upload.content_type.clone(),
        cache_control: upload.cache_control.clone(),
        metadata: Value::Null,
    };
    let blob = NewBlob {
        key,
        size: upload.length,
        checksum: hex::encode(hasher.finalize()),
    };
    let writer = Writer::Caller(caller, decision);
    commit(state, &bucket, &upload.name, mode, &writer, blob, &content).await?;
    remove(state, upload.id).await
}

/// Deletes an upload's row and its parts (parts of `PATCH`es that never
/// counted are left to the cleanup task).
async fn remove(state: &AppState, id: Uuid) -> Result<(), HttpError> {
    let client = state.pool.get().await?;
    let parts: Vec<String> = client
        .query_opt(
            "DELETE FROM storage.resumable_uploads WHERE id = $1 RETURNING part_keys",
            &[&id],
        )
        .await?
        .map(|row| row.get(0))
        .unwrap_or_default();
    drop(client);
    for part in parts {
        discard(state, &part).await;
    }
    Ok(())
}

async fn terminate(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
    id: Path<String>,
) -> Result<HttpResponse, HttpError> {
    check_version(&request)?;
    let upload = find(&state, &caller, &id).await?;
    remove(&state, upload.id).await?;
    Ok(tus(StatusCode::NO_CONTENT).finish())
}

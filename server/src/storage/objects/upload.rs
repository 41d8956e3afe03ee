//! Uploads: raw and multipart bodies streamed into the backend under the bucket's limits, and the metadata commit (create, replace, upsert).

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::storage) enum Mode {
    /// POST: fails if the path exists.
    Create,
    /// PUT: fails if it does not.
    Replace,
    /// POST with `x-upsert: true`: either.
    Upsert,
}

impl Mode {
    /// POST's mode: create, or create-or-replace with `x-upsert`.
    pub(in crate::storage) fn creating(upsert: bool) -> Mode {
        if upsert {
            Mode::Upsert
        } else {
            Mode::Create
        }
    }
}

/// Who is writing, and what allows it.
pub(in crate::storage) enum Writer<'a> {
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
pub(in crate::storage) struct Content {
    pub content_type: String,
    pub cache_control: String,
    pub metadata: Value,
}

pub(in crate::storage) type Body<'a> = Pin<Box<dyn Stream<Item = Result<Bytes, HttpError>> + 'a>>;

pub(in crate::storage) fn payload_error(
    error: actix_web::error::PayloadError,
    limit: u64,
) -> HttpError {
    match error {
        actix_web::error::PayloadError::Overflow => too_large(limit),
        other => ApiError::new(ErrorCode::InvalidRequest)
            .with_message("The request body could not be read to its end.")
            .with_details(other.to_string())
            .into(),
    }
}

pub(in crate::storage) fn too_large(limit: u64) -> HttpError {
    ApiError::new(ErrorCode::PayloadTooLarge)
        .with_details(format!("limit: {limit} bytes"))
        .with_hint("Send a smaller object; the limit is the bucket's file_size_limit or storage.max_file_size_bytes.")
        .into()
}

pub(in crate::storage) fn header_text<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

pub(in crate::storage) fn upsert_header(request: &HttpRequest) -> bool {
    header_text(request, "x-upsert").is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

pub(in crate::storage) fn check_type(bucket: &Bucket, content_type: &str) -> Result<(), HttpError> {
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
pub(in crate::storage) async fn receive(
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
pub(in crate::storage) async fn upload(
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

pub(in crate::storage) fn default_cache_control() -> String {
    "max-age=3600".into()
}

pub(in crate::storage) fn cache_control_value(text: &str) -> Result<String, HttpError> {
    Ok(rules::cache_control(text)?)
}

/// The content type to store, checked to be one media type.
pub(in crate::storage) fn stored_type(text: Option<&str>) -> Result<String, HttpError> {
    Ok(rules::content_type(
        text.unwrap_or("application/octet-stream"),
    )?)
}

pub(in crate::storage) fn form_error(error: actix_multipart::MultipartError) -> HttpError {
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

pub(in crate::storage) fn exists_error(bucket: &str, name: &str) -> HttpError {
    ApiError::new(ErrorCode::ObjectExists)
        .with_details(format!("{bucket}/{name}"))
        .into()
}

/// After a failed commit: removes the new blob unless a row refers to it
/// (a COMMIT whose answer was lost may have committed). When that cannot be
/// told, the blob stays for the cleanup task.
pub(in crate::storage) async fn discard_unreferenced(state: &AppState, key: &str) {
    let Ok(client) = state.pool.get().await else {
        return;
    };
    if let Ok(false) = store::blob_referenced(&client, key).await {
        drop(client);
        discard(state, key).await;
    }
}

/// Removes a blob no committed row refers to (best effort: the cleanup task
/// removes what this misses).
pub(in crate::storage) async fn discard(state: &AppState, key: &str) {
    if let Err(error) = state.storage().backend.delete(key).await {
        tracing::warn!("removing blob {key}: {error:#}");
    }
}

pub(in crate::storage) struct NewBlob {
    pub key: String,
    pub size: i64,
    pub checksum: String,
}

/// Commits a stored blob as the object `bucket/name` and answers it. After
/// the commit the blob it replaced is removed; when the commit fails, the
/// new blob is (unless a row refers to it after all).
pub(in crate::storage) async fn commit(
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
pub(in crate::storage) async fn commit_metadata(
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
    let existing = store::object(&transaction, &bucket.id, name, true).await?;
    if let Writer::Token(token) = writer {
        if !store::spend_token(&transaction, &token.id, token.exp).await? {
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
            let object = store::replace(&transaction, old.id, &blob, content, &metadata).await?;
            (object, Some(old.blob))
        }
        (None, _) => {
            let object = store::insert(
                &transaction,
                &bucket.id,
                name,
                owner,
                &blob,
                content,
                &metadata,
            )
            .await?
            .ok_or_else(|| {
                HttpError::from(
                    ApiError::new(ErrorCode::BucketNotFound).with_details(bucket.id.clone()),
                )
            })?;
            (object, None)
        }
    };
    transaction.commit().await?;
    Ok(saved)
}

pub(in crate::storage) async fn upload_create(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
    payload: Payload,
) -> Result<HttpResponse, HttpError> {
    let mode = Mode::creating(upsert_header(&request));
    upload_as_caller(&state, &request, &caller, payload, mode).await
}

pub(in crate::storage) async fn upload_replace(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
    payload: Payload,
) -> Result<HttpResponse, HttpError> {
    upload_as_caller(&state, &request, &caller, payload, Mode::Replace).await
}

pub(in crate::storage) async fn upload_as_caller(
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

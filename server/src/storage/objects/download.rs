//! Downloads: authenticated and public, with ranges, conditional requests and safe dispositions; object info.

use super::*;

#[derive(Deserialize)]
pub(in crate::storage) struct DownloadQuery {
    download: Option<String>,
}

pub(in crate::storage) async fn download(
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
pub(in crate::storage) async fn public_download(
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

pub(in crate::storage) fn if_none_match(request: &HttpRequest, etag: &str) -> Option<bool> {
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
pub(in crate::storage) async fn send(
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

pub(in crate::storage) async fn info(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
) -> Result<HttpResponse, HttpError> {
    let (bucket, name) = target(&request, "/storage/v1/object/info/")?;
    let (_, object) = authorized_object(&state, &caller, &bucket, &name, "read").await?;
    Ok(HttpResponse::Ok().json(object.info()))
}

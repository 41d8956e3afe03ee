//! Signed download URLs and single-use signed upload URLs.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::storage) struct SignRequest {
    #[serde(rename = "expiresIn")]
    expires_in: i64,
}

pub(in crate::storage) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(in crate::storage) fn new_token_id() -> String {
    Uuid::new_v4().simple().to_string()
}

pub(in crate::storage) fn encode_path(bucket: &str, name: &str) -> String {
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
pub(in crate::storage) async fn sign(
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

pub(in crate::storage) fn check_expiry(state: &AppState, expires_in: i64) -> Result<(), HttpError> {
    let max = state.config.storage.signed_url_max_expiry_secs as i64;
    if (1..=max).contains(&expires_in) {
        Ok(())
    } else {
        Err(invalid(format!("expiresIn is 1 to {max} seconds")))
    }
}

/// A signed download URL (relative to `/storage/v1`) and its expiry.
pub(in crate::storage) fn download_url(
    state: &AppState,
    bucket: &str,
    name: &str,
    expires_in: i64,
) -> (String, i64) {
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
pub(in crate::storage) struct SignMany {
    #[serde(rename = "expiresIn")]
    expires_in: i64,
    paths: Vec<String>,
}

pub(in crate::storage) const NOT_READABLE: &str =
    "Either the object does not exist or you do not have access to it";

/// Signed URLs for several objects: one entry per path, with `error` set
/// (and no URL) for a path that is invalid, missing or not readable.
pub(in crate::storage) async fn sign_many(
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
        for object in
            store::objects(&state.pool.get().await?, &bucket.id, &body.paths, false).await?
        {
            objects.insert(object.name.clone(), object);
        }
    }
    let mut signed = Vec::with_capacity(body.paths.len());
    for path in &body.paths {
        let readable = match (check_name(path), &bucket, objects.get(path)) {
            (Err(problem), _, _) => Err(problem.to_string()),
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
pub(in crate::storage) struct TokenQuery {
    token: Option<String>,
    download: Option<String>,
}

pub(in crate::storage) fn verify(
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

pub(in crate::storage) async fn signed_download(
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
pub(in crate::storage) async fn sign_upload(
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

pub(in crate::storage) async fn signed_upload(
    state: Data<AppState>,
    request: HttpRequest,
    query: Query<TokenQuery>,
    payload: Payload,
) -> Result<HttpResponse, HttpError> {
    let (bucket, name) = target(&request, "/storage/v1/object/upload/sign/")?;
    let token = verify(&state, query.token.as_deref(), "upload", &bucket, &name)?;
    if store::token_spent(&state.pool.get().await?, &token.id).await? {
        return Err(ErrorCode::SignedUploadUsed.into());
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

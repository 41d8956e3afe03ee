//! `GET`/`PUT /auth/v1/user`: the signed-in user, and changing their password,
//! metadata or address; `GET /auth/v1/reauthenticate`: the code a password
//! change asks for under `auth.secure_password_change`.

use super::*;

/// The signed-in user; a revoked or ended session is refused even while its
/// access token has not expired.
pub(super) async fn get_user(
    user: SignedIn,
    state: Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let client = state.pool.get().await?;
    if !sessions::is_live(&state, &client, user.user_id, user.session_id).await? {
        return Err(ErrorCode::SessionExpired.into());
    }
    let json = users::by_id(&client, user.user_id)
        .await?
        .ok_or_else(|| HttpError::new(ErrorCode::SessionExpired))?;
    Ok(HttpResponse::Ok().json(json))
}

/// Unknown fields (supabase-js sends `code_challenge`, ...) are ignored.
#[derive(Deserialize)]
pub(super) struct UpdateUserBody {
    email: Option<String>,
    password: Option<String>,
    data: Option<serde_json::Map<String, Value>>,
    /// The code of `GET /auth/v1/reauthenticate`.
    nonce: Option<String>,
}

/// `DELETE /auth/v1/user/identities/{id}` (supabase-js `unlinkIdentity`): a
/// Basalt user's one identity is their email address, and a user keeps at
/// least one (as GoTrue), so this always refuses: `422` for that identity,
/// `404` for any other id.
pub(super) async fn unlink_identity(
    user: SignedIn,
    state: Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    let client = state.pool.get().await?;
    if !sessions::is_live(&state, &client, user.user_id, user.session_id).await? {
        return Err(ErrorCode::SessionExpired.into());
    }
    let has_email: bool = client
        .query_one(
            "SELECT NOT is_anonymous AND coalesce(email, '') <> '' FROM auth.users WHERE id = $1",
            &[&user.user_id],
        )
        .await?
        .get(0);
    if has_email && path.as_str() == user.user_id.to_string() {
        Err(ErrorCode::SingleIdentityNotDeletable.into())
    } else {
        Err(ErrorCode::IdentityNotFound.into())
    }
}

/// Emails the signed-in user a six-digit code (`templates.reauthentication`)
/// for `PUT /auth/v1/user`'s `nonce`; a new one replaces the last.
pub(super) async fn reauthenticate(
    user: SignedIn,
    state: Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    if !state.email_enabled {
        return Err(ErrorCode::EmailNotConfigured.into());
    }
    let client = state.pool.get().await?;
    if !sessions::is_live(&state, &client, user.user_id, user.session_id).await? {
        return Err(ErrorCode::SessionExpired.into());
    }
    let email: Option<String> = client
        .query_one(
            "SELECT email FROM auth.users WHERE id = $1",
            &[&user.user_id],
        )
        .await?
        .get(0);
    let Some(email) = email.filter(|email| !email.is_empty()) else {
        return Err(ApiError::new(ErrorCode::ReauthenticationNotValid)
            .with_details("reauthentication needs an email address")
            .into());
    };
    state
        .rate_limiter()
        .check_email("reauthentication", &email, Instant::now())?;
    let email_request = email::EmailRequest {
        kind: "reauthentication".into(),
        email,
        user_id: Some(user.user_id),
        new_email: None,
        redirect_to: None,
        create_user: false,
        data: None,
        ip: Some(request_ip(&request, &state.trusted_proxies)),
        code_challenge: None,
    };
    email::enqueue(&state, &client, &email_request).await?;
    Ok(HttpResponse::Ok().json(json!({})))
}

/// Under `auth.secure_password_change`, a session signed in longer ago
/// than `auth.reauthentication_window_secs` changes the password or the
/// email address only with the emailed `nonce`, which the attempt spends.
async fn check_reauthentication(
    state: &AppState,
    user: &SignedIn,
    password: bool,
    nonce: Option<&str>,
) -> Result<(), HttpError> {
    if !state.config.auth.secure_password_change {
        return Ok(());
    }
    let client = state.pool.get().await?;
    let row = client
        .query_one(
            "SELECT coalesce(bool_or(s.created_at > now() - make_interval(secs => $2::float8)), false),
                    coalesce(max(u.email), '') <> ''
             FROM auth.sessions s JOIN auth.users u ON u.id = s.user_id WHERE s.id = $1",
            &[
                &user.session_id,
                &(state.config.auth.reauthentication_window_secs as f64),
            ],
        )
        .await?;
    let (recent, has_email): (bool, bool) = (row.get(0), row.get(1));
    if recent && state.config.auth.reauthentication_window_secs > 0 || !password && !has_email {
        return Ok(());
    }
    let Some(nonce) = nonce else {
        return Err(ErrorCode::ReauthenticationNeeded.into());
    };
    if email::spend_code(state, &client, user.user_id, nonce).await? {
        Ok(())
    } else {
        Err(ErrorCode::ReauthenticationNotValid.into())
    }
}

/// Changes the password and/or merges `data` into user_metadata.
pub(super) async fn update_user(
    user: SignedIn,
    state: Data<AppState>,
    request: HttpRequest,
    body: Json<UpdateUserBody>,
) -> Result<HttpResponse, HttpError> {
    let new_email = body
        .email
        .as_deref()
        .map(users::validate_email)
        .transpose()?;
    let new_hash = users::hash_new_password(&state, body.password.as_ref()).await?;
    // The address too (a changed address can reset the password), unless
    // the user has none yet (an anonymous user adding one).
    if new_hash.is_some() || new_email.is_some() {
        let password = new_hash.is_some();
        check_reauthentication(&state, &user, password, body.nonce.as_deref()).await?;
    }
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    if !sessions::is_live(&state, &transaction, user.user_id, user.session_id).await? {
        return Err(ErrorCode::SessionExpired.into());
    }
    if let Some(new_email) = &new_email {
        change_email(&state, &transaction, user.user_id, new_email, &request).await?;
    }
    let data = body.data.clone().map(Value::Object);
    if let Some(data) = &data {
        users::validate_metadata("data", data)?;
    }
    transaction
        .execute(
            "UPDATE auth.users SET
                encrypted_password = coalesce($2, encrypted_password),
                raw_user_meta_data = raw_user_meta_data || coalesce($3, '{}'::jsonb),
                updated_at = now()
             WHERE id = $1",
            &[&user.user_id, &new_hash, &data],
        )
        .await?;
    if new_hash.is_some() {
        // A new password ends every other session: a stolen refresh token dies with it.
        transaction
            .execute(
                "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'password_changed'
                 WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL",
                &[&user.user_id, &user.session_id],
            )
            .await?;
        let actor = actor(&state, &request, Some(user.user_id), "authenticated");
        audit::audit(
            &transaction,
            "password_changed",
            actor,
            Some(user.user_id),
            json!({}),
        )
        .await?;
    }
    let json = users::by_id(&transaction, user.user_id).await?;
    transaction.commit().await?;
    Ok(HttpResponse::Ok().json(json))
}

/// With an SMTP server, the new address gets a link and the change waits for
/// it (a taken address gets no email, and the answer is the same); without
/// one, nothing can be confirmed and the address changes at once.
pub(super) async fn change_email(
    state: &AppState,
    client: &impl deadpool_postgres::GenericClient,
    user_id: uuid::Uuid,
    new_email: &str,
    request: &HttpRequest,
) -> Result<(), HttpError> {
    if state.email_enabled {
        let redirect_to = request.uri().query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "redirect_to")
                .map(|(_, v)| v.into_owned())
        });
        email::check_redirect(state, redirect_to.as_deref())?;
        state
            .rate_limiter()
            .check_email("email_change", new_email, Instant::now())?;
        client
            .execute(
                "UPDATE auth.users SET new_email = $2, email_change_sent_at = now() WHERE id = $1",
                &[&user_id, &new_email],
            )
            .await?;
        let email_request = email::EmailRequest {
            kind: "email_change".into(),
            email: new_email.to_owned(),
            user_id: Some(user_id),
            new_email: None,
            redirect_to,
            create_user: false,
            data: None,
            ip: Some(request_ip(request, &state.trusted_proxies)),
            code_challenge: None,
        };
        email::enqueue(state, client, &email_request).await
    } else {
        client
            .execute(
                "UPDATE auth.users SET email = $2, is_anonymous = false,
                        raw_app_meta_data = CASE WHEN is_anonymous
                            THEN raw_app_meta_data || '{\"provider\": \"email\", \"providers\": [\"email\"]}'
                            ELSE raw_app_meta_data END,
                        updated_at = now() WHERE id = $1",
                &[&user_id, &new_email],
            )
            .await
            .map_err(users::email_taken_or_failed)?;
        Ok(())
    }
}

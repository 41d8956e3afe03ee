//! `GET`/`PUT /auth/v1/user`: the signed-in user, and changing their password, metadata or address.

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

/// Unknown fields (supabase-js sends `nonce`, `code_challenge`, ...) are ignored.
#[derive(Deserialize)]
pub(super) struct UpdateUserBody {
    email: Option<String>,
    password: Option<String>,
    data: Option<serde_json::Map<String, Value>>,
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

//! `POST /auth/v1/signup`: a new account, or the same answer for a pending or confirmed address (nothing tells which).

use super::*;

#[derive(Deserialize)]
pub(super) struct SignupBody {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    /// A PKCE client's (supabase-js `flowType: 'pkce'`).
    #[serde(default)]
    code_challenge: Option<String>,
    #[serde(default)]
    code_challenge_method: Option<String>,
}

/// The user's own `data`: a JSON object (or nothing).
fn user_data(data: &Option<Value>) -> Result<Value, HttpError> {
    let metadata = match data {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(map)) => Value::Object(map.clone()),
        Some(_) => {
            return Err(ApiError::new(ErrorCode::ValidationFailed)
                .with_details("data: must be a JSON object")
                .into())
        }
    };
    users::validate_metadata("data", &metadata)?;
    Ok(metadata)
}

/// `POST /auth/v1/signup` with neither email nor password (supabase-js
/// `signInAnonymously`): a user without an address, `is_anonymous` in its
/// tokens, and a session at once. Adding an email later (`PUT
/// /auth/v1/user`, confirmed by its link when email is on) makes it a
/// permanent user. Off unless `auth.anonymous_sign_ins`.
async fn anonymous(
    caller: &Caller,
    state: &AppState,
    request: &HttpRequest,
    data: &Option<Value>,
) -> Result<HttpResponse, HttpError> {
    if !state.config.auth.anonymous_sign_ins {
        return Err(ErrorCode::AnonymousProviderDisabled.into());
    }
    let metadata = user_data(data)?;
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let user_id: uuid::Uuid = transaction
        .query_one(
            "INSERT INTO auth.users (email, is_anonymous, raw_user_meta_data, raw_app_meta_data)
             VALUES (NULL, true, $1, '{\"provider\": \"anonymous\", \"providers\": [\"anonymous\"]}')
             RETURNING id",
            &[&metadata],
        )
        .await?
        .get(0);
    let actor = actor(state, request, Some(user_id), &caller.role);
    audit::audit(
        &transaction,
        "anonymous_signup",
        actor,
        Some(user_id),
        json!({}),
    )
    .await?;
    let session = sessions::start(
        state,
        &transaction,
        user_id,
        "anonymous",
        actor,
        user_agent(request),
    )
    .await?;
    transaction.commit().await?;
    Ok(HttpResponse::Ok().json(session))
}

/// Creates a user with email and password. Without email confirmation the
/// answer is a session. With it, the answer is the user (no session) and the
/// address gets a confirmation email; an address that already has an
/// account gets a look-alike answer and no email, after the same work.
pub(super) async fn signup(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    query: Query<RedirectQuery>,
    body: Json<SignupBody>,
) -> Result<HttpResponse, HttpError> {
    let (email, password) = match (&body.email, &body.password) {
        (None, None) => return anonymous(&caller, &state, &request, &body.data).await,
        (Some(email), Some(password)) => (email, password),
        _ => {
            return Err(ApiError::new(ErrorCode::ValidationFailed)
                .with_details("email and password: send both (or neither, to sign in anonymously)")
                .into())
        }
    };
    let email = users::validate_email(email)?;
    users::check_password(&state.config.auth, password)?;
    email::check_redirect(&state, query.redirect_to.as_deref())?;
    state
        .rate_limiter()
        .check_email("signup", &email, Instant::now())?;
    let metadata = user_data(&body.data)?;
    let confirm = state.config.email_confirmation();
    let hash = state.passwords().hash(password.clone()).await?;
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    // A new address is inserted; an unconfirmed account (perhaps made by
    // someone else) takes the new password, data and spelling of the address,
    // as a fresh sign-up (its answer then matches a new one's and the
    // look-alike of a confirmed one: same casing, same timestamps).
    let row = transaction
        .query_opt(
            "INSERT INTO auth.users (email, encrypted_password, email_confirmed_at, raw_user_meta_data)
             VALUES ($1, $2, CASE WHEN $4 THEN NULL ELSE now() END, $3)
             ON CONFLICT (lower(email)) DO UPDATE SET
                email = EXCLUDED.email,
                encrypted_password = EXCLUDED.encrypted_password,
                raw_user_meta_data = EXCLUDED.raw_user_meta_data,
                created_at = now(),
                updated_at = now()
             WHERE auth.users.email_confirmed_at IS NULL AND $4
             RETURNING id",
            &[&email, &hash, &metadata, &confirm],
        )
        .await
        ?;
    if confirm {
        email::enqueue(
            &state,
            &transaction,
            &email::EmailRequest {
                kind: "signup".into(),
                email: email.clone(),
                user_id: None,
                new_email: None,
                redirect_to: query.redirect_to.clone(),
                create_user: false,
                data: None,
                ip: Some(request_ip(&request, &state.trusted_proxies)),
                code_challenge: email::Challenge::of(
                    body.code_challenge.as_deref(),
                    body.code_challenge_method.as_deref(),
                )?,
            },
        )
        .await?;
    }
    let Some(row) = row else {
        transaction.commit().await?;
        if !confirm {
            // A session is the answer to a new sign-up, so this cannot be hidden.
            return Err(ErrorCode::UserAlreadyExists.into());
        }
        return Ok(HttpResponse::Ok().json(look_alike_user(&state, &email, &metadata).await?));
    };
    let user_id: uuid::Uuid = row.get(0);
    let actor = actor(&state, &request, Some(user_id), &caller.role);
    audit::audit(&transaction, "signup", actor, Some(user_id), json!({})).await?;
    let answer = if confirm {
        // A pending account answers as a new one: no email sent yet (the
        // worker sends it), whatever was sent before.
        let mut user = users::by_id(&transaction, user_id)
            .await?
            .unwrap_or_default();
        user["confirmation_sent_at"] = Value::Null;
        user["recovery_sent_at"] = Value::Null;
        user
    } else {
        let agent = user_agent(&request);
        sessions::start(&state, &transaction, user_id, "password", actor, agent).await?
    };
    transaction.commit().await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// What a sign-up on a confirmed address answers: the shape and formats of a
/// new unconfirmed user, with an id that is stable for the address.
pub(super) async fn look_alike_user(
    state: &AppState,
    email: &str,
    metadata: &Value,
) -> Result<Value, HttpError> {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(state.refresh_key.as_bytes()).expect("any key");
    mac.update(b"basalt look-alike user\0");
    mac.update(email.to_lowercase().as_bytes());
    let digest = mac.finalize().into_bytes();
    let id =
        uuid::Builder::from_random_bytes(digest[..16].try_into().expect("16 bytes")).into_uuid();
    let client = state.pool.get().await?;
    let row = client
        .query_one(
            &format!(
                "SELECT {} FROM (SELECT $1::uuid AS id, 'authenticated' AS role, $2::text AS email,
                        NULL::timestamptz AS email_confirmed_at, NULL::timestamptz AS last_sign_in_at,
                        NULL::timestamptz AS banned_until, NULL::text AS new_email, NULL::timestamptz AS email_change_sent_at,
                        '{{\"provider\": \"email\", \"providers\": [\"email\"]}}'::jsonb AS raw_app_meta_data,
                        $3::jsonb AS raw_user_meta_data, now() AS created_at, now() AS updated_at,
                        false AS is_anonymous) u",
                users::USER_JSON
            ),
            &[&id, &email, metadata],
        )
        .await
        ?;
    Ok(row.get(0))
}

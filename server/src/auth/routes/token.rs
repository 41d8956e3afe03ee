//! `POST /auth/v1/token` (password and refresh-token grants) and `POST /auth/v1/logout`.

use super::*;

#[derive(Deserialize)]
pub(super) struct GrantQuery {
    grant_type: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct TokenBody {
    email: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
    /// `grant_type=pkce`: the code the link gave the app, and the client's verifier.
    auth_code: Option<String>,
    code_verifier: Option<String>,
}

pub(super) async fn token(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    query: Query<GrantQuery>,
    body: Json<TokenBody>,
) -> Result<HttpResponse, HttpError> {
    let ip = request_ip(&request, &state.trusted_proxies);
    match query.grant_type.as_deref() {
        Some("password") => password_grant(caller, state, request, body.into_inner()).await,
        Some("refresh_token") => {
            let token = body
                .refresh_token
                .as_deref()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    HttpError::from(
                        ApiError::new(ErrorCode::ValidationFailed)
                            .with_details("refresh_token: required"),
                    )
                })?;
            Ok(HttpResponse::Ok().json(sessions::refresh(&state, token, ip).await?))
        }
        Some("pkce") => pkce_grant(caller, state, request, body.into_inner()).await,
        _ => Err(ErrorCode::UnsupportedGrantType.into()),
    }
}

/// `grant_type=pkce` (supabase-js `exchangeCodeForSession`): the
/// authorization code an emailed link gave the app, with the verifier of
/// the client that asked for the link, for a session.
async fn pkce_grant(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    body: TokenBody,
) -> Result<HttpResponse, HttpError> {
    let (Some(code), Some(verifier)) = (body.auth_code, body.code_verifier) else {
        return Err(ApiError::new(ErrorCode::ValidationFailed)
            .with_details("auth_code and code_verifier: required")
            .into());
    };
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let (user_id, method) = email::exchange(&transaction, &code, &verifier).await?;
    let actor = actor(&state, &request, Some(user_id), &caller.role);
    audit::audit(
        &transaction,
        "pkce_exchanged",
        actor,
        Some(user_id),
        json!({}),
    )
    .await?;
    let agent = user_agent(&request);
    let session = sessions::start(&state, &transaction, user_id, method, actor, agent).await?;
    transaction.commit().await?;
    Ok(HttpResponse::Ok().json(session))
}

/// Unknown email and wrong password get the same answer, after the same work.
pub(super) async fn password_grant(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    body: TokenBody,
) -> Result<HttpResponse, HttpError> {
    let (Some(email), Some(password)) = (body.email, body.password) else {
        return Err(ApiError::new(ErrorCode::ValidationFailed)
            .with_details("email and password: required")
            .into());
    };
    state
        .rate_limiter()
        .check_email("token", &email, Instant::now())?;
    let mut client = state.pool.get().await?;
    // An address that cannot exist is looked up nowhere, but pays the same hash.
    let found = if basalt_core::auth_rules::valid_email(email.trim()) {
        client
            .query_opt(
                "SELECT id, encrypted_password, email_confirmed_at IS NOT NULL,
                        banned_until IS NOT NULL AND banned_until > now()
                 FROM auth.users WHERE lower(email) = lower($1)",
                &[&email.trim()],
            )
            .await?
    } else {
        None
    };
    let hash = found
        .as_ref()
        .and_then(|row| row.get::<_, Option<String>>(1));
    let matched = state.passwords().verify(password, hash).await;
    let user_id = found.as_ref().map(|row| row.get::<_, uuid::Uuid>(0));
    if !matched {
        let actor = actor(&state, &request, None, &caller.role);
        audit::audit(&client, "login_failed", actor, user_id, json!({})).await?;
        return Err(ErrorCode::InvalidCredentials.into());
    }
    let row = found.expect("a match means the user exists");
    let user_id: uuid::Uuid = row.get(0);
    let refusal = if !row.get::<_, bool>(2) {
        Some((ErrorCode::EmailNotConfirmed, "unconfirmed"))
    } else if row.get::<_, bool>(3) {
        Some((ErrorCode::UserBanned, "banned"))
    } else {
        None
    };
    if let Some((code, reason)) = refusal {
        let actor = actor(&state, &request, Some(user_id), &caller.role);
        audit::audit(
            &client,
            "login_refused",
            actor,
            Some(user_id),
            json!({"reason": reason}),
        )
        .await?;
        return Err(code.into());
    }
    let transaction = client.transaction().await?;
    let actor = actor(&state, &request, Some(user_id), &caller.role);
    audit::audit(&transaction, "login", actor, Some(user_id), json!({})).await?;
    let agent = user_agent(&request);
    let issued = sessions::start(&state, &transaction, user_id, "password", actor, agent).await?;
    transaction.commit().await?;
    Ok(HttpResponse::Ok().json(issued))
}

#[derive(Deserialize)]
pub(super) struct LogoutQuery {
    scope: Option<String>,
}

pub(super) async fn logout(
    user: SignedIn,
    state: Data<AppState>,
    request: HttpRequest,
    query: Query<LogoutQuery>,
) -> Result<HttpResponse, HttpError> {
    let scope = query.scope.as_deref().unwrap_or("global");
    let client = state.pool.get().await?;
    if !sessions::is_live(&state, &client, user.user_id, user.session_id).await? {
        return Err(ErrorCode::SessionExpired.into());
    }
    let ended = sessions::logout(&client, user.user_id, user.session_id, scope).await?;
    let actor = actor(&state, &request, Some(user.user_id), "authenticated");
    audit::audit(
        &client,
        "logout",
        actor,
        Some(user.user_id),
        json!({"scope": scope, "sessions": ended}),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

//! The `/auth/v1/` endpoints a client app calls (GoTrue's set and shapes).

use super::email;
use super::sessions;
use super::users;
use crate::audit::{self, Actor};
use crate::error::HttpError;
use crate::http::resource;
use crate::http::security::request_ip;
use crate::identity::{Caller, SignedIn};
use crate::state::AppState;
use actix_web::web::{self, Data, Json, Query};
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Instant;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(resource("/auth/v1/signup").route(web::post().to(signup)))
        .service(resource("/auth/v1/token").route(web::post().to(token)))
        .service(
            resource("/auth/v1/user")
                .route(web::get().to(get_user))
                .route(web::put().to(update_user)),
        )
        .service(resource("/auth/v1/logout").route(web::post().to(logout)))
        .service(resource("/auth/v1/recover").route(web::post().to(recover)))
        .service(resource("/auth/v1/otp").route(web::post().to(otp)))
        .service(
            resource("/auth/v1/verify")
                .route(web::post().to(verify_post))
                .route(web::get().to(verify_get)),
        )
        .service(resource("/auth/v1/settings").route(web::get().to(settings)))
        .service(resource("/auth/v1/.well-known/jwks.json").route(web::get().to(jwks)));
    super::admin::routes(config);
}

fn actor<'a>(
    state: &AppState,
    request: &HttpRequest,
    id: Option<uuid::Uuid>,
    role: &'a str,
) -> Actor<'a> {
    Actor {
        id,
        role,
        ip: request_ip(request, &state.trusted_proxies),
    }
}

fn user_agent(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
}

#[derive(Deserialize)]
struct SignupBody {
    email: String,
    password: String,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct RedirectQuery {
    redirect_to: Option<String>,
}

/// Creates a user with email and password. Without email confirmation the
/// answer is a session. With it, the answer is the user (no session) and the
/// address gets a confirmation email; an address that already has an
/// account gets a look-alike answer and no email, after the same work.
async fn signup(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    query: Query<RedirectQuery>,
    body: Json<SignupBody>,
) -> Result<HttpResponse, HttpError> {
    let email = users::validate_email(&body.email)?;
    users::check_password(&state.config.auth, &body.password)?;
    email::check_redirect(&state, query.redirect_to.as_deref())?;
    state
        .rate_limiter()
        .check_email("signup", &email, Instant::now())?;
    let metadata = match &body.data {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(map)) => Value::Object(map.clone()),
        Some(_) => {
            return Err(ApiError::new(ErrorCode::ValidationFailed)
                .with_details("data: must be a JSON object")
                .into())
        }
    };
    users::validate_metadata("data", &metadata)?;
    let confirm = state.config.email_confirmation();
    let hash = state.passwords().hash(body.password.clone()).await?;
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
        users::by_id(&transaction, user_id)
            .await?
            .unwrap_or_default()
    } else {
        sessions::start(&state, &transaction, user_id, actor, user_agent(&request)).await?
    };
    transaction.commit().await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// What a sign-up on a confirmed address answers: the shape and formats of a
/// new unconfirmed user, with an id that is stable for the address.
async fn look_alike_user(
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
                        $3::jsonb AS raw_user_meta_data, now() AS created_at, now() AS updated_at) u",
                users::USER_JSON
            ),
            &[&id, &email, metadata],
        )
        .await
        ?;
    Ok(row.get(0))
}
#[derive(Deserialize)]
struct GrantQuery {
    grant_type: Option<String>,
}

#[derive(Deserialize)]
struct TokenBody {
    email: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
}

async fn token(
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
        _ => Err(ErrorCode::UnsupportedGrantType.into()),
    }
}

/// Unknown email and wrong password get the same answer, after the same work.
async fn password_grant(
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
    let issued =
        sessions::start(&state, &transaction, user_id, actor, user_agent(&request)).await?;
    transaction.commit().await?;
    Ok(HttpResponse::Ok().json(issued))
}

/// The signed-in user; a revoked or ended session is refused even while its
/// access token has not expired.
async fn get_user(user: SignedIn, state: Data<AppState>) -> Result<HttpResponse, HttpError> {
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
struct UpdateUserBody {
    email: Option<String>,
    password: Option<String>,
    data: Option<serde_json::Map<String, Value>>,
}

/// Changes the password and/or merges `data` into user_metadata.
async fn update_user(
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
async fn change_email(
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
        };
        email::enqueue(state, client, &email_request).await
    } else {
        client
            .execute(
                "UPDATE auth.users SET email = $2, updated_at = now() WHERE id = $1",
                &[&user_id, &new_email],
            )
            .await
            .map_err(users::email_taken_or_failed)?;
        Ok(())
    }
}
#[derive(Deserialize)]
struct EmailBody {
    email: String,
    #[serde(default)]
    create_user: Option<bool>,
    #[serde(default)]
    data: Option<serde_json::Map<String, Value>>,
}

fn require_email(state: &AppState) -> Result<(), HttpError> {
    if state.email_enabled {
        Ok(())
    } else {
        Err(ErrorCode::EmailNotConfigured.into())
    }
}

/// Sends a password reset link. Known and unknown addresses get the same
/// answer after the same work (one queued job; the worker looks the address up).
async fn recover(
    _: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    query: Query<RedirectQuery>,
    body: Json<EmailBody>,
) -> Result<HttpResponse, HttpError> {
    queue_email(
        &state,
        &request,
        "recovery",
        &body,
        query.redirect_to.clone(),
    )
    .await
}

async fn queue_email(
    state: &AppState,
    request: &HttpRequest,
    kind: &str,
    body: &EmailBody,
    redirect_to: Option<String>,
) -> Result<HttpResponse, HttpError> {
    require_email(state)?;
    let email = users::validate_email(&body.email)?;
    email::check_redirect(state, redirect_to.as_deref())?;
    let data = body.data.clone().map(Value::Object);
    if let Some(data) = &data {
        users::validate_metadata("data", data)?;
    }
    let action = if kind == "recovery" {
        "recovery"
    } else {
        "magiclink"
    };
    state
        .rate_limiter()
        .check_email(action, &email, Instant::now())?;
    let client = state.pool.get().await?;
    let email_request = email::EmailRequest {
        kind: kind.into(),
        email,
        user_id: None,
        new_email: None,
        redirect_to,
        create_user: body.create_user.unwrap_or(true),
        data,
        ip: Some(request_ip(request, &state.trusted_proxies)),
    };
    email::enqueue(state, &client, &email_request).await?;
    Ok(HttpResponse::Ok().json(json!({})))
}

/// Sends a magic sign-in link, creating the user first unless
/// `create_user: false`. The answer never tells whether the address is known.
async fn otp(
    _: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    query: Query<RedirectQuery>,
    body: Json<EmailBody>,
) -> Result<HttpResponse, HttpError> {
    queue_email(
        &state,
        &request,
        "magiclink",
        &body,
        query.redirect_to.clone(),
    )
    .await
}
/// `token` or `token_hash` (supabase-js `verifyOtp({token_hash, type})`).
#[derive(Deserialize)]
struct VerifyBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(alias = "token_hash")]
    token: String,
}

/// `email` (GoTrue's name for a link sent to the address) covers sign-up
/// confirmations and magic links.
fn kinds_of(text: &str) -> Result<Vec<email::Kind>, HttpError> {
    if text == "email" {
        return Ok(vec![email::Kind::Signup, email::Kind::MagicLink]);
    }
    kind_of(text).map(|kind| vec![kind])
}

async fn verify_any(
    state: &AppState,
    kinds: &[email::Kind],
    token: &str,
    request: &HttpRequest,
) -> Result<email::Verified, HttpError> {
    let ip = request_ip(request, &state.trusted_proxies);
    let mut outcome = Err(HttpError::new(ErrorCode::OtpExpired));
    for kind in kinds {
        outcome = email::verify(state, *kind, token, ip, user_agent(request)).await;
        if !matches!(&outcome, Err(error) if error.error.kind == ErrorCode::OtpExpired) {
            break;
        }
    }
    outcome
}

fn kind_of(text: &str) -> Result<email::Kind, HttpError> {
    email::Kind::parse(text).ok_or_else(|| {
        ApiError::new(ErrorCode::ValidationFailed)
            .with_details("type: use signup, recovery, magiclink, email_change or email")
            .into()
    })
}

/// Spends an emailed token and answers with a session.
async fn verify_post(
    _: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    body: Json<VerifyBody>,
) -> Result<HttpResponse, HttpError> {
    let kinds = kinds_of(&body.kind)?;
    let verified = verify_any(&state, &kinds, &body.token, &request).await?;
    Ok(HttpResponse::Ok().json(verified.session))
}

#[derive(Deserialize)]
struct VerifyQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(alias = "token_hash")]
    token: Option<String>,
    redirect_to: Option<String>,
}

/// The link in the email: spends the token and redirects (303) to the app with
/// the session in the URL fragment, or with `error` and `error_code` on failure.
/// Needs no API key: a mail client opens it.
async fn verify_get(
    state: Data<AppState>,
    request: HttpRequest,
    query: Query<VerifyQuery>,
) -> HttpResponse {
    let requested = query
        .redirect_to
        .clone()
        .filter(|url| email::check_redirect(&state, Some(url)).is_ok());
    let kind = query.kind.clone().unwrap_or_default();
    let outcome = match (kinds_of(&kind), &query.token) {
        (Ok(kinds), Some(token)) => verify_any(&state, &kinds, token, &request).await,
        (Err(error), _) => Err(error),
        (_, None) => Err(ApiError::new(ErrorCode::ValidationFailed)
            .with_details("token: required")
            .into()),
    };
    let (base, fragment) = match outcome {
        Ok(verified) => {
            let session = &verified.session;
            let mut fragment = url::form_urlencoded::Serializer::new(String::new());
            for key in [
                "access_token",
                "refresh_token",
                "expires_in",
                "expires_at",
                "token_type",
            ] {
                let value = match &session[key] {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                fragment.append_pair(key, &value);
            }
            fragment.append_pair("type", &kind);
            let stored = verified
                .redirect_to
                .filter(|url| email::check_redirect(&state, Some(url)).is_ok());
            (requested.or(stored), fragment.finish())
        }
        Err(error) => {
            let fragment = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("error", "access_denied")
                .append_pair("error_code", error.error.code)
                .append_pair("error_description", &error.error.message)
                .finish();
            (requested, fragment)
        }
    };
    let base = base.unwrap_or_else(|| state.config.site_url.clone());
    let base = base.split('#').next().unwrap_or_default().to_owned();
    HttpResponse::SeeOther()
        .insert_header(("location", format!("{base}#{fragment}")))
        .insert_header(("cache-control", "no-store"))
        .finish()
}

#[derive(Deserialize)]
struct LogoutQuery {
    scope: Option<String>,
}

async fn logout(
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

/// The public keys that verify access tokens (empty while they are HS256).
async fn jwks(state: Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "public, max-age=600"))
        .json(state.jwt().jwks())
}

async fn settings(_: Caller, state: Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "external": {"email": true},
        "disable_signup": false,
        "mailer_autoconfirm": !state.config.email_confirmation(),
        "smtp_configured": state.email_enabled,
    }))
}

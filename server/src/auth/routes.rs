//! The `/auth/v1/` endpoints a client app calls (GoTrue's set and shapes).

use super::sessions;
use super::users::{self, Actor};
use super::{Caller, SignedIn};
use crate::db;
use crate::http::error::HttpError;
use crate::http::resource;
use crate::http::security::request_ip;
use crate::state::AppState;
use actix_web::web::{self, Data, Json, Query};
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode};
use serde::Deserialize;
use serde_json::{json, Value};

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
        .service(resource("/auth/v1/settings").route(web::get().to(settings)));
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

/// Creates a user with email and password and signs them in. Sign-ups are
/// confirmed at once: email confirmation arrives with SMTP support.
async fn signup(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    body: Json<SignupBody>,
) -> Result<HttpResponse, HttpError> {
    let email = users::validate_email(&body.email)?;
    users::check_password(&state.config.auth, &body.password)?;
    let metadata = match &body.data {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(map)) => Value::Object(map.clone()),
        Some(_) => {
            return Err(ApiError::new(ErrorCode::ValidationFailed)
                .with_details("data: must be a JSON object")
                .into())
        }
    };
    let hash = state.passwords.hash(body.password.clone()).await?;
    let mut client = state.pool.get().await.map_err(db::unavailable)?;
    let transaction = client.transaction().await.map_err(db::failed)?;
    let created = transaction
        .query_opt(
            "INSERT INTO auth.users (email, encrypted_password, email_confirmed_at, raw_user_meta_data)
             VALUES ($1, $2, now(), $3) ON CONFLICT DO NOTHING RETURNING id",
            &[&email, &hash, &metadata],
        )
        .await
        .map_err(db::failed)?;
    let Some(row) = created else {
        return Err(ErrorCode::UserAlreadyExists.into());
    };
    let user_id: uuid::Uuid = row.get(0);
    let actor = actor(&state, &request, Some(user_id), &caller.role);
    users::audit(&transaction, "signup", actor, Some(user_id), json!({})).await?;
    let issued =
        sessions::start(&state, &transaction, user_id, actor, user_agent(&request)).await?;
    transaction.commit().await.map_err(db::failed)?;
    Ok(HttpResponse::Ok().json(issued))
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
    let mut client = state.pool.get().await.map_err(db::unavailable)?;
    let found = client
        .query_opt(
            "SELECT id, encrypted_password, email_confirmed_at IS NOT NULL,
                    banned_until IS NOT NULL AND banned_until > now()
             FROM auth.users WHERE lower(email) = lower($1)",
            &[&email.trim()],
        )
        .await
        .map_err(db::failed)?;
    let hash = found
        .as_ref()
        .and_then(|row| row.get::<_, Option<String>>(1));
    let matched = state.passwords.verify(password, hash).await;
    let user_id = found.as_ref().map(|row| row.get::<_, uuid::Uuid>(0));
    if !matched {
        let actor = actor(&state, &request, None, &caller.role);
        users::audit(&client, "login_failed", actor, user_id, json!({})).await?;
        return Err(ErrorCode::InvalidCredentials.into());
    }
    let row = found.expect("a match means the user exists");
    let user_id: uuid::Uuid = row.get(0);
    if !row.get::<_, bool>(2) {
        return Err(ErrorCode::EmailNotConfirmed.into());
    }
    if row.get::<_, bool>(3) {
        return Err(ErrorCode::UserBanned.into());
    }
    let transaction = client.transaction().await.map_err(db::failed)?;
    let actor = actor(&state, &request, Some(user_id), &caller.role);
    users::audit(&transaction, "login", actor, Some(user_id), json!({})).await?;
    let issued =
        sessions::start(&state, &transaction, user_id, actor, user_agent(&request)).await?;
    transaction.commit().await.map_err(db::failed)?;
    Ok(HttpResponse::Ok().json(issued))
}

/// The signed-in user; a revoked or ended session is refused even while its
/// access token has not expired.
async fn get_user(user: SignedIn, state: Data<AppState>) -> Result<HttpResponse, HttpError> {
    let client = state.pool.get().await.map_err(db::unavailable)?;
    if !sessions::is_live(&client, user.session_id).await? {
        return Err(ErrorCode::SessionExpired.into());
    }
    let json = users::by_id(&client, user.user_id)
        .await?
        .ok_or_else(|| HttpError::new(ErrorCode::SessionExpired))?;
    Ok(HttpResponse::Ok().json(json))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
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
    if body.email.is_some() {
        return Err(ApiError::new(ErrorCode::ValidationFailed)
            .with_details(
                "email: changing the address needs email confirmation, which is not available yet",
            )
            .into());
    }
    let new_hash = match &body.password {
        Some(password) => {
            users::check_password(&state.config.auth, password)?;
            Some(state.passwords.hash(password.clone()).await?)
        }
        None => None,
    };
    let mut client = state.pool.get().await.map_err(db::unavailable)?;
    let transaction = client.transaction().await.map_err(db::failed)?;
    if !sessions::is_live(&transaction, user.session_id).await? {
        return Err(ErrorCode::SessionExpired.into());
    }
    let data = body.data.clone().map(Value::Object);
    transaction
        .execute(
            "UPDATE auth.users SET
                encrypted_password = coalesce($2, encrypted_password),
                raw_user_meta_data = raw_user_meta_data || coalesce($3, '{}'::jsonb),
                updated_at = now()
             WHERE id = $1",
            &[&user.user_id, &new_hash, &data],
        )
        .await
        .map_err(db::failed)?;
    if new_hash.is_some() {
        let actor = actor(&state, &request, Some(user.user_id), "authenticated");
        users::audit(
            &transaction,
            "password_changed",
            actor,
            Some(user.user_id),
            json!({}),
        )
        .await?;
    }
    let json = users::by_id(&transaction, user.user_id).await?;
    transaction.commit().await.map_err(db::failed)?;
    Ok(HttpResponse::Ok().json(json))
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
    let client = state.pool.get().await.map_err(db::unavailable)?;
    let ended = sessions::logout(&client, user.user_id, user.session_id, scope).await?;
    let actor = actor(&state, &request, Some(user.user_id), "authenticated");
    users::audit(
        &client,
        "logout",
        actor,
        Some(user.user_id),
        json!({"scope": scope, "sessions": ended}),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn settings(_: Caller) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "external": {"email": true},
        "disable_signup": false,
        "mailer_autoconfirm": true,
    }))
}

//! Links an admin makes for users (GoTrue's `/invite` and
//! `/admin/generate_link`, supabase-js's `auth.admin.inviteUserByEmail` and
//! `auth.admin.generateLink`): an invitation sent by email, or a sign-up,
//! invitation, magic link or recovery link handed to the admin to deliver
//! themselves. Both need the `users` admin area (the service_role key, or a
//! user a policy allows `write` on `admin:users`).

use super::email::{self, Kind};
use super::users::{self, USER_JSON};
use crate::audit::{self, Actor};
use crate::authz::{Admin, UsersWrite};
use crate::error::HttpError;
use crate::http::resource;
use crate::http::security::request_ip;
use crate::state::AppState;
use actix_web::web::{self, Data, Json};
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode};
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(resource("/auth/v1/invite").route(web::post().to(invite)))
        .service(resource("/auth/v1/admin/generate_link").route(web::post().to(generate_link)));
}

fn actor<'a>(state: &AppState, request: &HttpRequest, admin: &'a Admin<UsersWrite>) -> Actor<'a> {
    Actor {
        id: admin.caller.user.map(|(user, _)| user),
        role: &admin.caller.role,
        ip: request_ip(request, &state.trusted_proxies),
    }
}

/// The user with this address, created (unconfirmed, with `password` if
/// given) when there is none; whether it was created.
async fn user_for(
    state: &AppState,
    client: &impl GenericClient,
    email: &str,
    password: Option<&str>,
    data: &Value,
) -> Result<(Uuid, bool), HttpError> {
    let hash = match password {
        Some(password) => {
            users::check_password(&state.config.auth, password)?;
            Some(state.passwords().hash(password.to_owned()).await?)
        }
        None => None,
    };
    let created = client
        .query_opt(
            "INSERT INTO auth.users (email, encrypted_password, raw_user_meta_data)
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING id",
            &[&email, &hash, data],
        )
        .await?;
    if let Some(row) = created {
        return Ok((row.get(0), true));
    }
    let id = client
        .query_one(
            "SELECT id FROM auth.users WHERE lower(email) = lower($1)",
            &[&email],
        )
        .await?
        .get(0);
    Ok((id, false))
}

fn metadata(data: &Option<Map<String, Value>>) -> Result<Value, HttpError> {
    let data = Value::Object(data.clone().unwrap_or_default());
    users::validate_metadata("data", &data)?;
    Ok(data)
}

#[derive(Deserialize)]
struct InviteBody {
    email: String,
    #[serde(default)]
    data: Option<Map<String, Value>>,
    #[serde(default)]
    redirect_to: Option<String>,
}

/// `POST /auth/v1/invite`: creates the user (no password, unconfirmed) and
/// emails them a link that confirms the address and signs them in; they
/// then set a password with `PUT /auth/v1/user`. An address that already
/// has a confirmed account is `422 user_already_exists`.
async fn invite(
    admin: Admin<UsersWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    body: Json<InviteBody>,
) -> Result<HttpResponse, HttpError> {
    if !state.email_enabled {
        return Err(ErrorCode::EmailNotConfigured.into());
    }
    let email = users::validate_email(&body.email)?;
    email::check_redirect(&state, body.redirect_to.as_deref())?;
    let data = metadata(&body.data)?;
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let (id, _) = user_for(&state, &transaction, &email, None, &data).await?;
    refuse_confirmed(&transaction, id).await?;
    email::enqueue(
        &state,
        &transaction,
        &email::EmailRequest {
            kind: "signup".into(),
            email,
            user_id: Some(id),
            new_email: None,
            redirect_to: body.redirect_to.clone(),
            create_user: false,
            data: None,
            ip: Some(request_ip(&request, &state.trusted_proxies)),
            code_challenge: None,
        },
    )
    .await?;
    audit::audit(
        &transaction,
        "user_invited",
        actor(&state, &request, &admin),
        Some(id),
        json!({}),
    )
    .await?;
    let user = users::by_id(&transaction, id).await?;
    transaction.commit().await?;
    Ok(HttpResponse::Ok().json(user))
}

/// An invitation or sign-up link is for an address nobody has confirmed.
async fn refuse_confirmed(client: &impl GenericClient, id: Uuid) -> Result<(), HttpError> {
    let confirmed: bool = client
        .query_one(
            "SELECT email_confirmed_at IS NOT NULL FROM auth.users WHERE id = $1",
            &[&id],
        )
        .await?
        .get(0);
    if confirmed {
        Err(ErrorCode::UserAlreadyExists.into())
    } else {
        Ok(())
    }
}

#[derive(Deserialize)]
struct LinkBody {
    #[serde(rename = "type")]
    kind: String,
    email: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    data: Option<Map<String, Value>>,
    #[serde(default)]
    redirect_to: Option<String>,
    /// For `email_change_current` and `email_change_new`: the new address.
    #[serde(default)]
    new_email: Option<String>,
}

/// `POST /auth/v1/admin/generate_link`: the link an email would carry,
/// answered instead of sent (for an admin who delivers it another way):
/// `signup` (creates the user with `password`), `invite` (creates it with
/// none), `magiclink` and `recovery` (an existing user), and
/// `email_change_current`/`email_change_new` (an existing user's change to
/// `new_email`: Basalt confirms a change with one link, so both types
/// answer that link, which moves the account to the new address). The answer is the
/// user with GoTrue's `action_link`, `hashed_token` (what `POST
/// /auth/v1/verify` takes as `token_hash`), `email_otp` (always empty:
/// Basalt's links carry a token, not a code), `redirect_to` and
/// `verification_type`.
async fn generate_link(
    admin: Admin<UsersWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    body: Json<LinkBody>,
) -> Result<HttpResponse, HttpError> {
    let email = users::validate_email(&body.email)?;
    email::check_redirect(&state, body.redirect_to.as_deref())?;
    let data = metadata(&body.data)?;
    let kind = match body.kind.as_str() {
        "signup" | "invite" => Kind::Signup,
        "magiclink" => Kind::MagicLink,
        "recovery" => Kind::Recovery,
        "email_change_current" | "email_change_new" => Kind::EmailChange,
        other => {
            return Err(ApiError::new(ErrorCode::ValidationFailed)
                .with_details(format!(
                    "type: `{other}` is not signup, invite, magiclink, recovery, email_change_current or email_change_new"
                ))
                .into())
        }
    };
    let new_email = match (kind, body.new_email.as_deref()) {
        (Kind::EmailChange, Some(new_email)) => Some(users::validate_email(new_email)?),
        (Kind::EmailChange, None) => {
            return Err(ApiError::new(ErrorCode::ValidationFailed)
                .with_details("new_email: an email change link needs the new address")
                .into())
        }
        _ => None,
    };
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let id = match body.kind.as_str() {
        "signup" => {
            let Some(password) = body.password.as_deref() else {
                return Err(ApiError::new(ErrorCode::ValidationFailed)
                    .with_details("password: a sign-up link needs one")
                    .into());
            };
            let (id, _) = user_for(&state, &transaction, &email, Some(password), &data).await?;
            refuse_confirmed(&transaction, id).await?;
            id
        }
        "invite" => {
            let (id, _) = user_for(&state, &transaction, &email, None, &data).await?;
            refuse_confirmed(&transaction, id).await?;
            id
        }
        _ => transaction
            .query_opt(
                "SELECT id FROM auth.users WHERE lower(email) = lower($1)",
                &[&email],
            )
            .await?
            .map(|row| row.get(0))
            .ok_or_else(|| HttpError::new(ErrorCode::UserNotFound))?,
    };
    if let Some(new_email) = &new_email {
        let taken = transaction
            .query_opt(
                "SELECT 1 FROM auth.users WHERE lower(email) = lower($1) AND id <> $2",
                &[new_email, &id],
            )
            .await?;
        if taken.is_some() {
            return Err(ErrorCode::UserAlreadyExists.into());
        }
        transaction
            .execute(
                "UPDATE auth.users SET new_email = $2, email_change_sent_at = now() WHERE id = $1",
                &[&id, new_email],
            )
            .await?;
    }
    let (link, code) = email::issue_token(
        &state,
        &transaction,
        id,
        kind,
        new_email.as_deref(),
        body.redirect_to.as_deref(),
        None,
    )
    .await?;
    let token = url::Url::parse(&link)
        .ok()
        .and_then(|url| {
            url.query_pairs()
                .find(|(key, _)| key == "token")
                .map(|(_, value)| value.into_owned())
        })
        .unwrap_or_default();
    audit::audit(
        &transaction,
        "link_generated",
        actor(&state, &request, &admin),
        Some(id),
        json!({"type": body.kind}),
    )
    .await?;
    let user: Value = transaction
        .query_one(
            &format!("SELECT {USER_JSON} FROM auth.users u WHERE u.id = $1"),
            &[&id],
        )
        .await?
        .get(0);
    transaction.commit().await?;
    let mut answer = match user {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    answer.insert("action_link".into(), Value::String(link));
    answer.insert("hashed_token".into(), Value::String(token));
    answer.insert("email_otp".into(), Value::String(code));
    answer.insert("redirect_to".into(), json!(body.redirect_to));
    answer.insert("verification_type".into(), Value::String(body.kind.clone()));
    Ok(HttpResponse::Ok().json(answer))
}

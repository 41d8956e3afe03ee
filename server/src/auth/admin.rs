//! The admin user API (`/auth/v1/admin/users`, service_role key only) and the
//! audit log reader (`/admin/v1/audit`).

use super::users::{self, USER_JSON};
use crate::audit::{self, Actor};
use crate::authz::{Admin, AuditRead, UsersRead, UsersWrite};
use crate::error::HttpError;
use crate::http::params::empty_as_none;
use crate::http::resource;
use crate::http::security::request_ip;
use crate::state::AppState;
use actix_web::web::{self, Data, Json, Path, Query};
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/auth/v1/admin/users")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(
            resource("/auth/v1/admin/users/{id}")
                .route(web::get().to(get))
                .route(web::put().to(update))
                .route(web::delete().to(delete)),
        )
        .service(
            resource("/auth/v1/admin/users/{id}/sessions")
                .route(web::get().to(list_sessions))
                .route(web::delete().to(revoke_sessions)),
        )
        .service(resource("/admin/v1/audit").route(web::get().to(audit_log)));
}

fn admin_actor<'a, A: crate::authz::AdminArea>(
    state: &AppState,
    request: &HttpRequest,
    admin: &'a Admin<A>,
) -> Actor<'a> {
    Actor {
        id: admin.caller.user.map(|(user, _)| user),
        role: &admin.caller.role,
        ip: request_ip(request, &state.trusted_proxies),
    }
}

fn user_id(path: &str) -> Result<Uuid, HttpError> {
    path.parse().map_err(|_| {
        ApiError::new(ErrorCode::ValidationFailed)
            .with_details("id: not a UUID")
            .into()
    })
}

#[derive(Deserialize)]
struct Page {
    #[serde(default, deserialize_with = "empty_as_none")]
    page: Option<i64>,
    #[serde(default, deserialize_with = "empty_as_none")]
    per_page: Option<i64>,
}

/// Lists users, newest first: `?page=1&per_page=50` (at most 1000 per page).
async fn list(
    _: Admin<UsersRead>,
    state: Data<AppState>,
    query: Query<Page>,
) -> Result<HttpResponse, HttpError> {
    let page = query.page.unwrap_or(1).clamp(1, 1_000_000);
    let per_page = query.per_page.unwrap_or(50).clamp(1, 1000);
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!("SELECT {USER_JSON} FROM auth.users u ORDER BY u.created_at DESC, u.id LIMIT $1 OFFSET $2"),
            &[&per_page, &((page - 1) * per_page)],
        )
        .await
        ?;
    let total: i64 = client
        .query_one("SELECT count(*) FROM auth.users", &[])
        .await?
        .get(0);
    let users: Vec<Value> = rows.iter().map(|row| row.get(0)).collect();
    Ok(HttpResponse::Ok()
        .insert_header(("x-total-count", total.to_string()))
        .json(json!({"users": users, "aud": "authenticated", "total": total, "page": page, "per_page": per_page})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFields {
    email: Option<String>,
    password: Option<String>,
    email_confirm: Option<bool>,
    user_metadata: Option<Map<String, Value>>,
    app_metadata: Option<Map<String, Value>>,
    /// `"24h"`, `"30m"`, `"90s"` or `"none"` to lift a ban.
    ban_duration: Option<String>,
    role: Option<String>,
}

fn ban_seconds(text: &str) -> Result<Option<f64>, HttpError> {
    if text == "none" {
        return Ok(None);
    }
    let invalid = || {
        HttpError::from(
            ApiError::new(ErrorCode::ValidationFailed)
                .with_details("ban_duration: use e.g. 24h, 30m, 90s or none"),
        )
    };
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .ok_or_else(invalid)?,
    );
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let unit = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(invalid()),
    };
    // At most about 100 years: beyond that, PostgreSQL's interval overflows.
    if number * unit > 100.0 * 365.0 * 86_400.0 {
        return Err(invalid());
    }
    Ok(Some(number * unit))
}

fn validate_fields(body: &UserFields) -> Result<(), HttpError> {
    if let Some(role) = &body.role {
        users::validate_role(role)?;
    }
    if let Some(metadata) = &body.user_metadata {
        users::validate_metadata("user_metadata", &Value::Object(metadata.clone()))?;
    }
    if let Some(metadata) = &body.app_metadata {
        users::validate_metadata("app_metadata", &Value::Object(metadata.clone()))?;
    }
    Ok(())
}

/// What an admin change touched, for the audit log (never the values of secrets).
fn changed_fields(body: &UserFields) -> Value {
    let mut fields = Vec::new();
    for (name, present) in [
        ("email", body.email.is_some()),
        ("password", body.password.is_some()),
        ("email_confirm", body.email_confirm.is_some()),
        ("user_metadata", body.user_metadata.is_some()),
        ("app_metadata", body.app_metadata.is_some()),
        ("ban_duration", body.ban_duration.is_some()),
        ("role", body.role.is_some()),
    ] {
        if present {
            fields.push(name);
        }
    }
    json!({"fields": fields, "ban_duration": body.ban_duration, "role": body.role})
}

async fn create(
    admin: Admin<UsersWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    body: Json<UserFields>,
) -> Result<HttpResponse, HttpError> {
    let email = users::validate_email(body.email.as_deref().unwrap_or(""))?;
    validate_fields(&body)?;
    let hash = users::hash_new_password(&state, body.password.as_ref()).await?;
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let user_metadata = Value::Object(body.user_metadata.clone().unwrap_or_default());
    let app_metadata = body.app_metadata.clone().map(Value::Object);
    let row = transaction
        .query_opt(
            "INSERT INTO auth.users (email, encrypted_password, email_confirmed_at, raw_user_meta_data, raw_app_meta_data, role)
             VALUES ($1, $2, CASE WHEN $3 THEN now() END, $4,
                     '{\"provider\": \"email\", \"providers\": [\"email\"]}'::jsonb || coalesce($5, '{}'::jsonb),
                     coalesce($6, 'authenticated'))
             ON CONFLICT DO NOTHING RETURNING id",
            &[&email, &hash, &body.email_confirm.unwrap_or(false), &user_metadata, &app_metadata, &body.role],
        )
        .await
        ?
        .ok_or_else(|| HttpError::new(ErrorCode::UserAlreadyExists))?;
    let id: Uuid = row.get(0);
    if let Some(ban) = &body.ban_duration {
        set_ban(&transaction, id, ban_seconds(ban)?).await?;
    }
    let actor = admin_actor(&state, &request, &admin);
    saved(
        transaction,
        "admin_user_created",
        actor,
        id,
        changed_fields(&body),
    )
    .await
}

/// Audits a created or changed user, commits, and answers the user as saved.
async fn saved(
    transaction: deadpool_postgres::Transaction<'_>,
    event: &str,
    actor: Actor<'_>,
    id: Uuid,
    changes: Value,
) -> Result<HttpResponse, HttpError> {
    audit::audit(&transaction, event, actor, Some(id), changes).await?;
    let user = users::by_id(&transaction, id).await?;
    transaction.commit().await?;
    Ok(HttpResponse::Ok().json(user))
}

async fn set_ban(
    client: &impl deadpool_postgres::GenericClient,
    id: Uuid,
    seconds: Option<f64>,
) -> Result<(), HttpError> {
    client
        .execute(
            "UPDATE auth.users SET banned_until = CASE WHEN $2::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $2::float8) END WHERE id = $1",
            &[&id, &seconds],
        )
        .await
        ?;
    // A banned user's sessions end now; their refresh tokens stop working.
    if seconds.is_some() {
        client
            .execute(
                "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'banned' WHERE user_id = $1 AND revoked_at IS NULL",
                &[&id],
            )
            .await
            ?;
    }
    Ok(())
}

async fn get(
    _: Admin<UsersRead>,
    state: Data<AppState>,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let id = user_id(&path)?;
    let client = state.pool.get().await?;
    let user = users::by_id(&client, id)
        .await?
        .ok_or_else(|| HttpError::new(ErrorCode::UserNotFound))?;
    Ok(HttpResponse::Ok().json(user))
}

async fn update(
    admin: Admin<UsersWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    body: Json<UserFields>,
) -> Result<HttpResponse, HttpError> {
    let id = user_id(&path)?;
    let email = body
        .email
        .as_deref()
        .map(users::validate_email)
        .transpose()?;
    validate_fields(&body)?;
    let hash = users::hash_new_password(&state, body.password.as_ref()).await?;
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let updated = transaction
        .execute(
            "UPDATE auth.users SET
                email = coalesce($2, email),
                new_email = CASE WHEN $2::text IS NULL THEN new_email END,
                email_change_sent_at = CASE WHEN $2::text IS NULL THEN email_change_sent_at END,
                encrypted_password = coalesce($3, encrypted_password),
                email_confirmed_at = CASE WHEN $4::boolean IS NULL THEN email_confirmed_at WHEN $4::boolean THEN coalesce(email_confirmed_at, now()) ELSE NULL END,
                raw_user_meta_data = raw_user_meta_data || coalesce($5, '{}'::jsonb),
                raw_app_meta_data = raw_app_meta_data || coalesce($6, '{}'::jsonb),
                role = coalesce($7, role),
                updated_at = now()
             WHERE id = $1",
            &[
                &id,
                &email,
                &hash,
                &body.email_confirm,
                &body.user_metadata.clone().map(Value::Object),
                &body.app_metadata.clone().map(Value::Object),
                &body.role,
            ],
        )
        .await
        .map_err(users::email_taken_or_failed)?;
    if updated == 0 {
        return Err(ErrorCode::UserNotFound.into());
    }
    if let Some(ban) = &body.ban_duration {
        set_ban(&transaction, id, ban_seconds(ban)?).await?;
    }
    // A password or address set by an admin ends every session of the user.
    if body.password.is_some() || body.email.is_some() {
        transaction
            .execute(
                "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'admin_credentials_changed'
                 WHERE user_id = $1 AND revoked_at IS NULL",
                &[&id],
            )
            .await
            ?;
        transaction
            .execute(
                "DELETE FROM auth.one_time_tokens WHERE user_id = $1 AND used_at IS NULL",
                &[&id],
            )
            .await?;
    }
    let actor = admin_actor(&state, &request, &admin);
    saved(
        transaction,
        "admin_user_updated",
        actor,
        id,
        changed_fields(&body),
    )
    .await
}

async fn delete(
    admin: Admin<UsersWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let id = user_id(&path)?;
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    transaction
        .execute(
            "DELETE FROM basalt.policies WHERE subject = 'user:' || $1::uuid::text",
            &[&id],
        )
        .await?;
    let deleted = transaction
        .execute("DELETE FROM auth.users WHERE id = $1", &[&id])
        .await?;
    if deleted == 0 {
        return Err(ErrorCode::UserNotFound.into());
    }
    audit::audit(
        &transaction,
        "admin_user_deleted",
        admin_actor(&state, &request, &admin),
        Some(id),
        json!({}),
    )
    .await?;
    transaction.commit().await?;
    Ok(HttpResponse::Ok().json(json!({})))
}

/// A user's sessions, newest first, with whether each is still live.
async fn list_sessions(
    _: Admin<UsersRead>,
    state: Data<AppState>,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let id = user_id(&path)?;
    let client = state.pool.get().await?;
    if users::by_id(&client, id).await?.is_none() {
        return Err(ErrorCode::UserNotFound.into());
    }
    let inactivity = state.config.auth.session_inactivity_timeout_secs as f64;
    let rows = client
        .query(
            "SELECT jsonb_build_object('id', id, 'created_at', created_at, 'refreshed_at', refreshed_at,
                    'not_after', not_after, 'revoked_at', revoked_at, 'revoked_reason', revoked_reason,
                    'user_agent', user_agent, 'ip', host(ip),
                    'live', revoked_at IS NULL AND (not_after IS NULL OR not_after > now())
                            AND ($2::float8 = 0 OR refreshed_at >= now() - make_interval(secs => $2::float8)))
             FROM auth.sessions WHERE user_id = $1 ORDER BY created_at DESC",
            &[&id, &inactivity],
        )
        .await
        ?;
    let sessions: Vec<Value> = rows.iter().map(|row| row.get(0)).collect();
    Ok(HttpResponse::Ok().json(json!({"sessions": sessions})))
}

/// Signs a user out everywhere: every session and its refresh tokens end now.
async fn revoke_sessions(
    admin: Admin<UsersWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let id = user_id(&path)?;
    let client = state.pool.get().await?;
    if users::by_id(&client, id).await?.is_none() {
        return Err(ErrorCode::UserNotFound.into());
    }
    let revoked = client
        .execute(
            "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'admin' WHERE user_id = $1 AND revoked_at IS NULL",
            &[&id],
        )
        .await
        ?;
    audit::audit(
        &client,
        "admin_sessions_revoked",
        admin_actor(&state, &request, &admin),
        Some(id),
        json!({"sessions": revoked}),
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({"revoked": revoked})))
}

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default, deserialize_with = "empty_as_none")]
    limit: Option<i64>,
    /// Only entries with an id below this (the previous page's last id).
    #[serde(default, deserialize_with = "empty_as_none")]
    before: Option<i64>,
    #[serde(default, deserialize_with = "empty_as_none")]
    user_id: Option<Uuid>,
    event: Option<String>,
}

/// The auth audit log, newest first, paged by id.
async fn audit_log(
    _: Admin<AuditRead>,
    state: Data<AppState>,
    query: Query<AuditQuery>,
) -> Result<HttpResponse, HttpError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT jsonb_build_object('id', id, 'event', event, 'actor_id', actor_id, 'actor_role', actor_role,
                    'target_user_id', target_user_id, 'ip', host(ip), 'details', details, 'created_at', created_at)
             FROM auth.audit_log
             WHERE ($2::bigint IS NULL OR id < $2)
               AND ($3::uuid IS NULL OR actor_id = $3 OR target_user_id = $3)
               AND ($4::text IS NULL OR event = $4)
             ORDER BY id DESC LIMIT $1",
            &[&limit, &query.before, &query.user_id, &query.event],
        )
        .await
        ?;
    let entries: Vec<Value> = rows.iter().map(|row| row.get(0)).collect();
    Ok(HttpResponse::Ok().json(json!({"entries": entries})))
}

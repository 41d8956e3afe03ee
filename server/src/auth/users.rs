//! Users: the JSON shape clients see (GoTrue's), sign-up, reading and
//! updating, and the audit log every auth event is written to.

use crate::error::HttpError;
use basalt_core::errors::{ApiError, ErrorCode};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use uuid::Uuid;

/// An MFA factor as GoTrue lists it, built from `auth.mfa_factors f`.
macro_rules! factor_json {
    () => {
        "jsonb_build_object('id', f.id, 'friendly_name', f.friendly_name, 'factor_type', f.factor_type,
            'status', f.status, 'created_at', f.created_at, 'updated_at', f.updated_at)"
    };
}
pub const FACTOR_JSON: &str = factor_json!();

/// A user as JSON, built by PostgreSQL from `auth.users u`; `factors`
/// (GoTrue's MFA factors) only when the user has some.
pub const USER_JSON: &str = concat!("(jsonb_build_object(
    'id', u.id, 'aud', 'authenticated', 'role', u.role, 'email', coalesce(u.email, ''), 'phone', '',
    'email_confirmed_at', u.email_confirmed_at, 'confirmed_at', u.email_confirmed_at,
    'confirmation_sent_at', (SELECT max(t.created_at) FROM auth.one_time_tokens t
                             WHERE t.user_id = u.id AND t.kind = 'signup'),
    'recovery_sent_at', (SELECT max(t.created_at) FROM auth.one_time_tokens t
                         WHERE t.user_id = u.id AND t.kind = 'recovery'),
    'last_sign_in_at', u.last_sign_in_at, 'banned_until', u.banned_until,
    'app_metadata', u.raw_app_meta_data, 'user_metadata', u.raw_user_meta_data,
    'new_email', u.new_email, 'email_change_sent_at', u.email_change_sent_at,
    'identities', CASE WHEN u.is_anonymous THEN '[]'::jsonb ELSE jsonb_build_array(jsonb_build_object(
        'identity_id', u.id, 'id', u.id::text, 'user_id', u.id, 'provider', 'email',
        'email', lower(u.email),
        'identity_data', jsonb_build_object('sub', u.id::text, 'email', u.email,
            'email_verified', u.email_confirmed_at IS NOT NULL, 'phone_verified', false),
        'last_sign_in_at', u.last_sign_in_at, 'created_at', u.created_at,
        'updated_at', u.updated_at)) END,
    'is_anonymous', u.is_anonymous, 'is_sso_user', false,
    'created_at', u.created_at, 'updated_at', u.updated_at)
    || coalesce((SELECT jsonb_build_object('factors', jsonb_agg(", factor_json!(), " ORDER BY f.created_at))
        FROM auth.mfa_factors f WHERE f.user_id = u.id HAVING count(*) > 0), '{}'))");

pub async fn by_id(client: &impl GenericClient, id: Uuid) -> Result<Option<Value>, HttpError> {
    let row = client
        .query_opt(
            &format!("SELECT {USER_JSON} FROM auth.users u WHERE u.id = $1"),
            &[&id],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}

pub fn validate_email(email: &str) -> Result<String, HttpError> {
    let email = email.trim();
    if basalt_core::auth_rules::valid_email(email) {
        Ok(email.to_owned())
    } else {
        Err(ApiError::new(ErrorCode::ValidationFailed)
            .with_details("email: not a valid email address")
            .into())
    }
}

/// A role an admin may give a user: a plain database-style name that is not
/// one of the API keys' roles nor a reserved PostgreSQL role.
pub fn validate_role(role: &str) -> Result<(), HttpError> {
    let plain = !role.is_empty()
        && role.len() <= 63
        && role.starts_with(|c: char| c.is_ascii_lowercase())
        && role
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let reserved =
        ["anon", "service_role", "postgres", "public"].contains(&role) || role.starts_with("pg_");
    if plain && !reserved {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::ValidationFailed)
            .with_details("role: use a lower-case name (a-z, 0-9, _) that is not anon, service_role, postgres, public or pg_*")
            .into())
    }
}

/// Metadata must be a JSON object PostgreSQL can store: no NUL anywhere.
pub fn validate_metadata(field: &str, value: &Value) -> Result<(), HttpError> {
    fn has_nul(value: &Value) -> bool {
        match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(map) => map
                .iter()
                .any(|(key, value)| key.contains('\0') || has_nul(value)),
            _ => false,
        }
    }
    if has_nul(value) {
        return Err(ApiError::new(ErrorCode::ValidationFailed)
            .with_details(format!("{field}: text may not contain NUL characters"))
            .into());
    }
    // Metadata travels in every access token: it must stay small.
    let size = value.to_string().len();
    if size > MAX_METADATA_BYTES {
        return Err(ApiError::new(ErrorCode::ValidationFailed)
            .with_details(format!(
                "{field}: {size} bytes of JSON; at most {MAX_METADATA_BYTES} are allowed"
            ))
            .with_hint("keep large data in a table, and its id in the metadata")
            .into());
    }
    Ok(())
}

/// The largest `user_metadata` or `app_metadata`, as JSON text: it is copied
/// into every access token, which travels in every request's headers.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Checks a new password against the policy and hashes it; `None` stays `None`.
pub async fn hash_new_password(
    state: &crate::state::AppState,
    password: Option<&String>,
) -> Result<Option<String>, HttpError> {
    match password {
        Some(password) => {
            check_password(&state.config.auth, password)?;
            Ok(Some(state.passwords().hash(password.clone()).await?))
        }
        None => Ok(None),
    }
}

/// Maps a unique violation on the email index to `user_already_exists`.
pub fn email_taken_or_failed(error: tokio_postgres::Error) -> HttpError {
    match error.as_db_error().map(|e| e.code().code()) {
        Some("23505") => HttpError::new(ErrorCode::UserAlreadyExists),
        _ => HttpError::from(error),
    }
}

pub fn check_password(
    config: &basalt_core::config::AuthConfig,
    password: &str,
) -> Result<(), HttpError> {
    match basalt_core::auth_rules::policy_problem(config, password) {
        None => Ok(()),
        Some(problem) => Err(ApiError::new(ErrorCode::WeakPassword)
            .with_details(problem)
            .into()),
    }
}

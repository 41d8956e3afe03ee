//! Sessions and their refresh tokens.
//!
//! A session is a chain of refresh tokens with one live tip. Refreshing spends
//! the tip and issues its successor. The successor is derived from the spent
//! token with an HMAC keyed by the server secret, so a second refresh with the
//! same token inside `auth.refresh_reuse_grace_secs` (two tabs, a retried
//! request) gets the very same successor: one live branch, never two. Any later
//! reuse of a spent token revokes the whole session. Tokens are stored as
//! SHA-256 hashes only.

use super::users;
use crate::audit::{self, Actor};
use crate::error::HttpError;
use crate::identity::jwt::{AccessClaims, AUDIENCE};
use crate::state::AppState;
use basalt_core::errors::{ApiError, ErrorCode};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// What a sign-in or refresh hands the client (GoTrue's shape).
pub fn issued_json(
    access_token: String,
    expires_in: u64,
    expires_at: i64,
    refresh_token: String,
    user: Value,
) -> Value {
    json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": expires_in,
        "expires_at": expires_at,
        "refresh_token": refresh_token,
        "user": user,
    })
}

fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn new_root_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    encode(&bytes)
}

fn successor_of(state: &AppState, token: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(state.refresh_key.as_bytes()).expect("HMAC takes any key");
    mac.update(b"basalt refresh token successor\0");
    mac.update(token.as_bytes());
    encode(&mac.finalize().into_bytes())
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Mints the access token of `session_id` for the user, and returns the user.
async fn access_token(
    state: &AppState,
    client: &impl deadpool_postgres::GenericClient,
    user_id: Uuid,
    session_id: Uuid,
) -> Result<(String, i64, Value), HttpError> {
    let user = users::by_id(client, user_id)
        .await?
        .ok_or_else(|| HttpError::new(ErrorCode::RefreshTokenNotFound))?;
    let session = client
        .query_one(
            "SELECT aal, amr FROM auth.sessions WHERE id = $1",
            &[&session_id],
        )
        .await?;
    let now = chrono::Utc::now().timestamp();
    let ttl = state.config.auth.access_token_ttl_secs as i64;
    let claims = AccessClaims {
        iss: "basalt".into(),
        sub: user_id.to_string(),
        aud: AUDIENCE.into(),
        role: user["role"].as_str().unwrap_or("authenticated").to_owned(),
        iat: now,
        exp: now + ttl,
        session_id: session_id.to_string(),
        email: user["email"].as_str().unwrap_or_default().to_owned(),
        app_metadata: user["app_metadata"].clone(),
        user_metadata: user["user_metadata"].clone(),
        is_anonymous: user["is_anonymous"].as_bool().unwrap_or(false),
        aal: session.get(0),
        amr: session.get(1),
    };
    Ok((state.jwt().mint_access(&claims), now + ttl, user))
}

/// Opens a session for a user who just proved who they are, by `method`
/// (GoTrue's `amr` names: `password`, `otp`, `magiclink`, `email/signup`,
/// `recovery`, `email_change`, `anonymous`): an `aal1` session.
pub async fn start(
    state: &AppState,
    client: &impl deadpool_postgres::GenericClient,
    user_id: Uuid,
    method: &str,
    actor: Actor<'_>,
    user_agent: Option<&str>,
) -> Result<Value, HttpError> {
    let max_lifetime = state.config.auth.session_max_lifetime_secs as f64;
    let session_id: Uuid = client
        .query_one(
            "INSERT INTO auth.sessions (user_id, not_after, user_agent, ip, amr)
             VALUES ($1, CASE WHEN $2::float8 > 0 THEN now() + make_interval(secs => $2::float8) END, $3, $4,
                     jsonb_build_array(jsonb_build_object('method', $5::text, 'timestamp', extract(epoch FROM now())::bigint)))
             RETURNING id",
            &[&user_id, &max_lifetime, &user_agent, &actor.ip, &method],
        )
        .await
        ?
        .get(0);
    let refresh_token = root_token(client, session_id).await?;
    client
        .execute(
            "UPDATE auth.users SET last_sign_in_at = now() WHERE id = $1",
            &[&user_id],
        )
        .await?;
    issue(state, client, user_id, session_id, refresh_token).await
}

/// The session's answer: a new access token with `refresh_token`.
async fn issue(
    state: &AppState,
    client: &impl deadpool_postgres::GenericClient,
    user_id: Uuid,
    session_id: Uuid,
    refresh_token: String,
) -> Result<Value, HttpError> {
    let (access, expires_at, user) = access_token(state, client, user_id, session_id).await?;
    Ok(issued_json(
        access,
        state.config.auth.access_token_ttl_secs,
        expires_at,
        refresh_token,
        user,
    ))
}

/// A new root refresh token of `session_id`.
async fn root_token(
    client: &impl deadpool_postgres::GenericClient,
    session_id: Uuid,
) -> Result<String, HttpError> {
    let refresh_token = new_root_token();
    client
        .execute(
            "INSERT INTO auth.refresh_tokens (token_hash, session_id) VALUES ($1, $2)",
            &[&hash(&refresh_token), &session_id],
        )
        .await?;
    Ok(refresh_token)
}

/// Raises `session_id` to `aal2` after a second factor (`method`), and hands
/// out its new tokens. The refresh token the client held is dropped (a new
/// root replaces it), so the session keeps one live branch.
pub async fn step_up(
    state: &AppState,
    client: &impl deadpool_postgres::GenericClient,
    user_id: Uuid,
    session_id: Uuid,
    method: &str,
) -> Result<Value, HttpError> {
    client
        .execute(
            "UPDATE auth.sessions SET aal = 'aal2', refreshed_at = now(),
                    amr = amr || jsonb_build_array(jsonb_build_object(
                        'method', $2::text, 'timestamp', extract(epoch FROM now())::bigint))
             WHERE id = $1",
            &[&session_id, &method],
        )
        .await?;
    client
        .execute(
            "DELETE FROM auth.refresh_tokens WHERE session_id = $1 AND spent_at IS NULL",
            &[&session_id],
        )
        .await?;
    let refresh_token = root_token(client, session_id).await?;
    issue(state, client, user_id, session_id, refresh_token).await
}

/// `grant_type=refresh_token`: rotates the token, or detects reuse.
pub async fn refresh(
    state: &AppState,
    token: &str,
    ip: std::net::IpAddr,
) -> Result<Value, HttpError> {
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let row = transaction
        .query_opt(
            "SELECT rt.id, rt.session_id, s.user_id, rt.spent_at IS NOT NULL,
                    coalesce(extract(epoch FROM now() - rt.spent_at), 0)::float8,
                    s.revoked_at IS NOT NULL,
                    (s.not_after IS NOT NULL AND s.not_after < now())
                      OR ($2::float8 > 0 AND s.refreshed_at < now() - make_interval(secs => $2::float8)),
                    u.banned_until IS NOT NULL AND u.banned_until > now()
             FROM auth.refresh_tokens rt
             JOIN auth.sessions s ON s.id = rt.session_id
             JOIN auth.users u ON u.id = s.user_id
             WHERE rt.token_hash = $1
             FOR UPDATE OF rt, s",
            &[&hash(token), &(state.config.auth.session_inactivity_timeout_secs as f64)],
        )
        .await
        ?
        .ok_or_else(|| HttpError::new(ErrorCode::RefreshTokenNotFound))?;
    let token_id: i64 = row.get(0);
    let session_id: Uuid = row.get(1);
    let user_id: Uuid = row.get(2);
    let spent: bool = row.get(3);
    let seconds_since_spent: f64 = row.get(4);
    let revoked: bool = row.get(5);
    let expired: bool = row.get(6);
    let banned: bool = row.get(7);
    let actor = Actor {
        id: Some(user_id),
        role: "authenticated",
        ip,
    };
    if revoked {
        return Err(HttpError::new(ErrorCode::RefreshTokenNotFound));
    }
    if banned {
        return Err(HttpError::new(ErrorCode::UserBanned));
    }
    if expired {
        revoke(&transaction, session_id, "expired").await?;
        transaction.commit().await?;
        return Err(HttpError::new(ErrorCode::SessionExpired));
    }
    let successor = successor_of(state, token);
    if spent {
        let live_child: bool = transaction
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM auth.refresh_tokens WHERE parent_id = $1 AND token_hash = $2 AND spent_at IS NULL)",
                &[&token_id, &hash(&successor)],
            )
            .await
            ?
            .get(0);
        let within_grace = seconds_since_spent <= state.config.auth.refresh_reuse_grace_secs as f64;
        if !(live_child && within_grace) {
            revoke(&transaction, session_id, "refresh_token_reused").await?;
            audit::audit(
                &transaction,
                "token_reuse_detected",
                actor,
                Some(user_id),
                json!({"session_id": session_id}),
            )
            .await?;
            transaction.commit().await?;
            return Err(HttpError::new(ErrorCode::RefreshTokenAlreadyUsed));
        }
        // A concurrent refresh from the same client: the same successor again.
    } else {
        transaction
            .execute(
                "UPDATE auth.refresh_tokens SET spent_at = now() WHERE id = $1",
                &[&token_id],
            )
            .await?;
        transaction
            .execute(
                "INSERT INTO auth.refresh_tokens (token_hash, session_id, parent_id) VALUES ($1, $2, $3)",
                &[&hash(&successor), &session_id, &token_id],
            )
            .await
            ?;
    }
    transaction
        .execute(
            "UPDATE auth.sessions SET refreshed_at = now() WHERE id = $1",
            &[&session_id],
        )
        .await?;
    audit::audit(
        &transaction,
        "token_refreshed",
        actor,
        Some(user_id),
        json!({"session_id": session_id}),
    )
    .await?;
    let issued = issue(state, &transaction, user_id, session_id, successor).await?;
    transaction.commit().await?;
    Ok(issued)
}

pub async fn revoke(
    client: &impl deadpool_postgres::GenericClient,
    session_id: Uuid,
    reason: &str,
) -> Result<(), HttpError> {
    client
        .execute(
            "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&session_id, &reason],
        )
        .await
        ?;
    Ok(())
}

/// Whether the session of an access token is still open: not revoked, not
/// past its maximum lifetime, not idle beyond the inactivity timeout.
pub async fn is_live(
    state: &AppState,
    client: &impl deadpool_postgres::GenericClient,
    user_id: Uuid,
    session_id: Uuid,
) -> Result<bool, HttpError> {
    let inactivity = state.config.auth.session_inactivity_timeout_secs as f64;
    Ok(client
        .query_opt(
            "SELECT 1 FROM auth.sessions
             WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND (not_after IS NULL OR not_after > now())
               AND ($3::float8 = 0 OR refreshed_at >= now() - make_interval(secs => $3::float8))",
            &[&session_id, &user_id, &inactivity],
        )
        .await
        ?
        .is_some())
}

/// Signs out: `local` ends this session, `others` every other one, `global` all.
pub async fn logout(
    client: &impl deadpool_postgres::GenericClient,
    user_id: Uuid,
    session_id: Uuid,
    scope: &str,
) -> Result<u64, HttpError> {
    let condition = match scope {
        "local" => "id = $2",
        "others" => "id <> $2",
        "global" => "$2::uuid IS NOT NULL",
        _ => {
            return Err(ApiError::new(ErrorCode::ValidationFailed)
                .with_details("scope: use local, others or global")
                .into())
        }
    };
    client
        .execute(
            &format!(
                "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'logout'
                 WHERE user_id = $1 AND revoked_at IS NULL AND {condition}"
            ),
            &[&user_id, &session_id],
        )
        .await
        .map_err(HttpError::from)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_are_sha256_and_tokens_are_long_and_random() {
        let a = super::new_root_token();
        let b = super::new_root_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(super::hash(&a).len(), 32);
    }
}

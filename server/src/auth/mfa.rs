//! Multi-factor authentication with TOTP (RFC 6238), as GoTrue's `/factors`
//! endpoints and supabase-js's `auth.mfa` call them: a signed-in user
//! enrolls a factor (a secret shown once, as a QR code and an `otpauth://`
//! URI), opens a challenge and answers it with a code; the first answer
//! verifies the factor, and each raises the session to `aal2` (the `aal` and
//! `amr` claims of its tokens). Policies for the built-in subject `aal2` hold
//! only for such sessions (`authz::routes::subject_of`). Admins list and
//! delete a user's factors.
//!
//! Codes: six digits, 30-second steps, SHA-1 (what authenticator apps use),
//! one step of clock skew either way; a code is accepted once (the factor
//! keeps the last step it accepted). Secrets are stored sealed with
//! AES-256-GCM (`ring`) under a key derived from the server secret and bound
//! to the user, so a database dump alone cannot make codes.

use super::sessions;
use super::users::FACTOR_JSON;
use crate::audit::{self, Actor};
use crate::authz::{Admin, UsersRead, UsersWrite};
use crate::error::HttpError;
use crate::http::resource;
use crate::http::security::request_ip;
use crate::identity::SignedIn;
use crate::state::AppState;
use actix_web::web::{self, Data, Json, Path};
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode};
use base64::Engine;
use deadpool_postgres::GenericClient;
use hmac::{Hmac, Mac};
use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;
use totp_rs::{Algorithm, Secret, TOTP};
use uuid::Uuid;

/// The most factors one user may have (verified or not), as GoTrue's default.
pub const MAX_FACTORS: i64 = 10;
/// How long a challenge may be answered.
pub const CHALLENGE_TTL_SECS: i64 = 300;
/// Wrong codes a factor takes within [`LOCK_WINDOW_SECS`] before it refuses
/// more (a six-digit code must not be guessed by trying).
pub const MAX_FAILURES: i64 = 5;
pub const LOCK_WINDOW_SECS: i64 = 900;
const STEP_SECS: u64 = 30;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(resource("/auth/v1/factors").route(web::post().to(enroll)))
        .service(resource("/auth/v1/factors/{id}").route(web::delete().to(unenroll)))
        .service(resource("/auth/v1/factors/{id}/challenge").route(web::post().to(challenge)))
        .service(resource("/auth/v1/factors/{id}/verify").route(web::post().to(verify)))
        .service(resource("/auth/v1/admin/users/{id}/factors").route(web::get().to(admin_list)))
        .service(
            resource("/auth/v1/admin/users/{id}/factors/{factor}")
                .route(web::delete().to(admin_delete)),
        );
}

/// The key factor secrets are sealed with.
fn sealing_key(state: &AppState) -> LessSafeKey {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(state.refresh_key.as_bytes()).expect("HMAC takes any key");
    mac.update(b"basalt mfa factor secret\0");
    let key = UnboundKey::new(&AES_256_GCM, &mac.finalize().into_bytes()).expect("a 32-byte key");
    LessSafeKey::new(key)
}

/// `secret` sealed for `user_id`: base64 of the nonce and the ciphertext.
fn seal(state: &AppState, user_id: Uuid, secret: &str) -> String {
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    let mut sealed = secret.as_bytes().to_vec();
    sealing_key(state)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(user_id.as_bytes()),
            &mut sealed,
        )
        .expect("sealing cannot fail");
    let mut stored = nonce.to_vec();
    stored.extend(sealed);
    base64::engine::general_purpose::STANDARD.encode(stored)
}

/// The secret [`seal`] sealed; an error when the server secret changed since.
fn open(state: &AppState, user_id: Uuid, stored: &str) -> Result<String, HttpError> {
    let broken = || {
        tracing::error!("an MFA factor's secret cannot be opened: was the JWT secret changed?");
        HttpError::new(ErrorCode::InternalError)
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(stored)
        .map_err(|_| broken())?;
    if bytes.len() < 12 {
        return Err(broken());
    }
    let (nonce, sealed) = bytes.split_at(12);
    let mut sealed = sealed.to_vec();
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| broken())?;
    let secret = sealing_key(state)
        .open_in_place(nonce, Aad::from(user_id.as_bytes()), &mut sealed)
        .map_err(|_| broken())?;
    String::from_utf8(secret.to_vec()).map_err(|_| broken())
}

fn totp(secret: &str, issuer: &str, account: &str) -> Result<TOTP, HttpError> {
    let bytes = Secret::Encoded(secret.to_owned())
        .to_bytes()
        .map_err(|_| HttpError::new(ErrorCode::InternalError))?;
    // `:` separates issuer and account in the URI: neither may hold one.
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        STEP_SECS,
        bytes,
        Some(issuer.replace(':', " ")),
        account.replace(':', " "),
    )
    .map_err(|_| HttpError::new(ErrorCode::InternalError))
}

/// The live session's `aal`, or 401 for an ended one.
async fn session_aal(
    state: &AppState,
    client: &impl GenericClient,
    user: &SignedIn,
) -> Result<String, HttpError> {
    if !sessions::is_live(state, client, user.user_id, user.session_id).await? {
        return Err(ErrorCode::SessionExpired.into());
    }
    Ok(client
        .query_one(
            "SELECT aal FROM auth.sessions WHERE id = $1",
            &[&user.session_id],
        )
        .await?
        .get(0))
}

/// The signed-in user as the actor of an audit entry.
fn actor(state: &AppState, request: &HttpRequest, user: &SignedIn) -> Actor<'static> {
    Actor {
        id: Some(user.user_id),
        role: "authenticated",
        ip: request_ip(request, &state.trusted_proxies),
    }
}

#[derive(Deserialize)]
struct EnrollBody {
    factor_type: String,
    #[serde(default)]
    friendly_name: Option<String>,
    #[serde(default)]
    issuer: Option<String>,
}

/// `POST /auth/v1/factors`: a new, unverified TOTP factor; its secret is
/// answered this once. A user who has a verified factor enrolls another
/// only from an `aal2` session.
async fn enroll(
    user: SignedIn,
    state: Data<AppState>,
    request: HttpRequest,
    body: Json<EnrollBody>,
) -> Result<HttpResponse, HttpError> {
    if body.factor_type != "totp" {
        return Err(ApiError::new(ErrorCode::ValidationFailed)
            .with_details("factor_type: only totp is supported")
            .into());
    }
    let name = body.friendly_name.as_deref().map(str::trim);
    let too_long = |text: Option<&str>| text.is_some_and(|t| t.len() > 256 || t.contains('\0'));
    if too_long(name) || too_long(body.issuer.as_deref()) {
        return Err(ApiError::new(ErrorCode::ValidationFailed)
            .with_details("friendly_name, issuer: at most 256 bytes, no NUL")
            .into());
    }
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let aal = session_aal(&state, &transaction, &user).await?;
    // The user's row locked, so two enrollments cannot both pass the limit.
    let email: String = transaction
        .query_one(
            "SELECT coalesce(email, '') FROM auth.users WHERE id = $1 FOR UPDATE",
            &[&user.user_id],
        )
        .await?
        .get(0);
    let (factors, verified) = factor_counts(&transaction, user.user_id).await?;
    if verified > 0 && aal != "aal2" {
        return Err(ApiError::new(ErrorCode::InsufficientAal)
            .with_details("enrolling another factor needs an aal2 session")
            .into());
    }
    if factors >= MAX_FACTORS {
        return Err(ErrorCode::TooManyEnrolledMfaFactors.into());
    }
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    let secret = Secret::Raw(bytes.to_vec()).to_encoded().to_string();
    let issuer = match body.issuer.as_deref().map(str::trim) {
        Some(issuer) if !issuer.is_empty() => issuer.to_owned(),
        _ => url::Url::parse(&state.config.site_url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_else(|| "Basalt".into()),
    };
    let account = if email.is_empty() {
        user.user_id.to_string()
    } else {
        email
    };
    let uri = totp(&secret, &issuer, &account)?.get_url();
    let qr = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|_| HttpError::new(ErrorCode::InternalError))?
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    let id: Uuid = transaction
        .query_one(
            "INSERT INTO auth.mfa_factors (user_id, friendly_name, factor_type, secret)
             VALUES ($1, $2, 'totp', $3) RETURNING id",
            &[&user.user_id, &name, &seal(&state, user.user_id, &secret)],
        )
        .await
        .map_err(|error| match error.as_db_error().map(|e| e.code().code()) {
            Some("23505") => HttpError::new(ErrorCode::MfaFactorNameConflict),
            _ => HttpError::from(error),
        })?
        .get(0);
    audit::audit(
        &transaction,
        "mfa_factor_enrolled",
        actor(&state, &request, &user),
        Some(user.user_id),
        json!({"factor_id": id}),
    )
    .await?;
    transaction.commit().await?;
    Ok(HttpResponse::Ok().json(json!({
        "id": id,
        "type": "totp",
        "friendly_name": name,
        "totp": {
            "qr_code": format!("data:image/svg+xml;utf-8,{qr}"),
            "secret": secret,
            "uri": uri,
        },
    })))
}

/// How many factors the user has, and how many are verified.
async fn factor_counts(
    client: &impl GenericClient,
    user_id: Uuid,
) -> Result<(i64, i64), HttpError> {
    let row = client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE status = 'verified')
             FROM auth.mfa_factors WHERE user_id = $1",
            &[&user_id],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// The user's factor `id` (404 for another user's or none).
async fn factor_of(
    client: &impl GenericClient,
    user_id: Uuid,
    id: &str,
) -> Result<tokio_postgres::Row, HttpError> {
    let id = Uuid::parse_str(id).map_err(|_| HttpError::new(ErrorCode::MfaFactorNotFound))?;
    client
        .query_opt(
            "SELECT id, status, secret, last_step FROM auth.mfa_factors
             WHERE id = $1 AND user_id = $2 FOR UPDATE",
            &[&id, &user_id],
        )
        .await?
        .ok_or_else(|| HttpError::new(ErrorCode::MfaFactorNotFound))
}

/// `POST /auth/v1/factors/{id}/challenge`: a challenge of the factor for
/// this session, answered within five minutes.
async fn challenge(
    user: SignedIn,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    session_aal(&state, &transaction, &user).await?;
    let factor = factor_of(&transaction, user.user_id, &path).await?;
    let ip = request_ip(&request, &state.trusted_proxies);
    let row = transaction
        .query_one(
            "INSERT INTO auth.mfa_challenges (factor_id, session_id, ip) VALUES ($1, $2, $3)
             RETURNING id, extract(epoch FROM created_at)::bigint + $4",
            &[
                &factor.get::<_, Uuid>(0),
                &user.session_id,
                &ip,
                &CHALLENGE_TTL_SECS,
            ],
        )
        .await?;
    transaction.commit().await?;
    Ok(HttpResponse::Ok().json(json!({
        "id": row.get::<_, Uuid>(0),
        "type": "totp",
        "expires_at": row.get::<_, i64>(1),
    })))
}

#[derive(Deserialize)]
struct VerifyBody {
    challenge_id: String,
    code: String,
}

/// The time step `code` is the code of, near now and after `last_step`.
fn matching_step(totp: &TOTP, code: &str, last_step: i64) -> Option<i64> {
    use subtle::ConstantTimeEq;
    let now = chrono::Utc::now().timestamp().max(0) as u64 / STEP_SECS;
    (now.saturating_sub(1)..=now + 1)
        .filter(|step| *step as i64 > last_step)
        .find(|step| {
            let expected = totp.generate(step * STEP_SECS);
            bool::from(expected.as_bytes().ct_eq(code.trim().as_bytes()))
        })
        .map(|step| step as i64)
}

/// `POST /auth/v1/factors/{id}/verify`: answers a challenge of this session
/// with a code. Right, the factor is verified, the session becomes `aal2`
/// and new tokens are answered (the old refresh token stops working);
/// wrong, `422 mfa_verification_failed` and the challenge is spent.
async fn verify(
    user: SignedIn,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    body: Json<VerifyBody>,
) -> Result<HttpResponse, HttpError> {
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let aal = session_aal(&state, &transaction, &user).await?;
    let factor = factor_of(&transaction, user.user_id, &path).await?;
    let factor_id: Uuid = factor.get(0);
    // A new factor is added to a user who has one only by an aal2 session:
    // a factor left unverified cannot raise a password-only session.
    if factor.get::<_, String>(1) == "unverified"
        && aal != "aal2"
        && factor_counts(&transaction, user.user_id).await?.1 > 0
    {
        return Err(ApiError::new(ErrorCode::InsufficientAal)
            .with_details("verifying another factor needs an aal2 session")
            .into());
    }
    let failures: i64 = transaction
        .query_one(
            "SELECT count(*) FROM auth.mfa_challenges
             WHERE factor_id = $1 AND failed AND verified_at > now() - make_interval(secs => $2::float8)",
            &[&factor_id, &(LOCK_WINDOW_SECS as f64)],
        )
        .await?
        .get(0);
    if failures >= MAX_FAILURES {
        return Err(
            HttpError::from(ApiError::new(ErrorCode::RateLimited).with_details(format!(
                "{MAX_FAILURES} wrong codes for this factor in {} minutes",
                LOCK_WINDOW_SECS / 60
            )))
            .retry_after(LOCK_WINDOW_SECS as u64),
        );
    }
    let challenge_id = Uuid::parse_str(&body.challenge_id)
        .map_err(|_| HttpError::new(ErrorCode::MfaChallengeExpired))?;
    // A challenge is answered once, right or wrong, in its own session.
    let fresh = transaction
        .query_opt(
            "UPDATE auth.mfa_challenges SET verified_at = now()
             WHERE id = $1 AND factor_id = $2 AND session_id = $3 AND verified_at IS NULL
             RETURNING created_at > now() - make_interval(secs => $4::float8)",
            &[
                &challenge_id,
                &factor_id,
                &user.session_id,
                &(CHALLENGE_TTL_SECS as f64),
            ],
        )
        .await?
        .map(|row| row.get::<_, bool>(0));
    if fresh != Some(true) {
        transaction.commit().await?;
        return Err(ErrorCode::MfaChallengeExpired.into());
    }
    let totp = totp(&open(&state, user.user_id, factor.get(2))?, "Basalt", "")?;
    let actor = actor(&state, &request, &user);
    let Some(step) = matching_step(&totp, &body.code, factor.get(3)) else {
        transaction
            .execute(
                "UPDATE auth.mfa_challenges SET failed = true WHERE id = $1",
                &[&challenge_id],
            )
            .await?;
        audit::audit(
            &transaction,
            "mfa_verification_failed",
            actor,
            Some(user.user_id),
            json!({"factor_id": factor_id}),
        )
        .await?;
        transaction.commit().await?;
        return Err(ErrorCode::MfaVerificationFailed.into());
    };
    transaction
        .execute(
            "UPDATE auth.mfa_factors SET status = 'verified', last_step = $2, updated_at = now()
             WHERE id = $1",
            &[&factor_id, &step],
        )
        .await?;
    // Factors left unverified are dropped, as GoTrue does: none can be
    // verified later by someone who enrolled it with the password alone.
    transaction
        .execute(
            "DELETE FROM auth.mfa_factors WHERE user_id = $1 AND status = 'unverified'",
            &[&user.user_id],
        )
        .await?;
    audit::audit(
        &transaction,
        "mfa_verified",
        actor,
        Some(user.user_id),
        json!({"factor_id": factor_id}),
    )
    .await?;
    let session =
        sessions::step_up(&state, &transaction, user.user_id, user.session_id, "totp").await?;
    transaction.commit().await?;
    Ok(HttpResponse::Ok().json(session))
}

/// `DELETE /auth/v1/factors/{id}`: removes a factor; a verified one only
/// from an `aal2` session.
async fn unenroll(
    user: SignedIn,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let aal = session_aal(&state, &transaction, &user).await?;
    let factor = factor_of(&transaction, user.user_id, &path).await?;
    if factor.get::<_, String>(1) == "verified" && aal != "aal2" {
        return Err(ApiError::new(ErrorCode::InsufficientAal)
            .with_details("removing a verified factor needs an aal2 session")
            .into());
    }
    let id: Uuid = factor.get(0);
    delete_factor(
        &transaction,
        id,
        actor(&state, &request, &user),
        user.user_id,
    )
    .await?;
    transaction.commit().await?;
    Ok(HttpResponse::Ok().json(json!({ "id": id })))
}

/// Removes a factor; a user left with no verified factor has no `aal2`
/// session either (their next refresh says `aal1`).
async fn delete_factor(
    client: &impl GenericClient,
    id: Uuid,
    actor: Actor<'_>,
    user_id: Uuid,
) -> Result<(), HttpError> {
    client
        .execute("DELETE FROM auth.mfa_factors WHERE id = $1", &[&id])
        .await?;
    client
        .execute(
            "UPDATE auth.sessions SET aal = 'aal1' WHERE user_id = $1 AND aal = 'aal2'
               AND NOT EXISTS (SELECT 1 FROM auth.mfa_factors WHERE user_id = $1 AND status = 'verified')",
            &[&user_id],
        )
        .await?;
    audit::audit(
        client,
        "mfa_factor_deleted",
        actor,
        Some(user_id),
        json!({"factor_id": id}),
    )
    .await?;
    Ok(())
}

fn user_id_of(text: &str) -> Result<Uuid, HttpError> {
    Uuid::parse_str(text).map_err(|_| HttpError::new(ErrorCode::UserNotFound))
}

/// `GET /auth/v1/admin/users/{id}/factors`: the user's factors (an array).
async fn admin_list(
    _: Admin<UsersRead>,
    state: Data<AppState>,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let user_id = user_id_of(&path)?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT coalesce((SELECT jsonb_agg({FACTOR_JSON} ORDER BY f.created_at)
                                  FROM auth.mfa_factors f WHERE f.user_id = u.id), '[]')
                 FROM auth.users u WHERE u.id = $1"
            ),
            &[&user_id],
        )
        .await?
        .ok_or_else(|| HttpError::new(ErrorCode::UserNotFound))?;
    Ok(HttpResponse::Ok().json(row.get::<_, Value>(0)))
}

/// `DELETE /auth/v1/admin/users/{id}/factors/{factor}`: removes a factor
/// (for a user who lost their device).
async fn admin_delete(
    admin: Admin<UsersWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<(String, String)>,
) -> Result<HttpResponse, HttpError> {
    let (user, factor) = path.into_inner();
    let user_id = user_id_of(&user)?;
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let id: Uuid = factor_of(&transaction, user_id, &factor).await?.get(0);
    let actor = Actor {
        id: admin.caller.user.map(|(user, _)| user),
        role: &admin.caller.role,
        ip: request_ip(&request, &state.trusted_proxies),
    };
    delete_factor(&transaction, id, actor, user_id).await?;
    transaction.commit().await?;
    Ok(HttpResponse::Ok().json(json!({ "id": id })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_codes_and_steps() {
        // RFC 6238's SHA-1 test secret ("12345678901234567890"), at T = 59 s:
        // 94287082 in eight digits, so 287082 in six.
        let secret = Secret::Raw(b"12345678901234567890".to_vec())
            .to_encoded()
            .to_string();
        let totp = totp(&secret, "Acme: Inc", "ada@example.com").unwrap();
        assert_eq!(totp.generate(59), "287082");
        assert!(totp
            .get_url()
            .starts_with("otpauth://totp/Acme%20%20Inc:ada%40example.com?"));
        let now = chrono::Utc::now().timestamp() as u64 / STEP_SECS;
        let code = totp.generate(now * STEP_SECS);
        assert_eq!(matching_step(&totp, &code, 0), Some(now as i64));
        // Used once: the same step is not accepted again.
        assert_eq!(matching_step(&totp, &code, now as i64), None);
        assert_eq!(matching_step(&totp, "000000x", 0), None);
    }
}

//! Email flows: single-use tokens (stored hashed, expiring), the emails that
//! carry them (rendered from `templates.*`, queued as jobs), and verification.

use super::sessions;
use super::users;
use crate::audit::{self, Actor};
use crate::error::HttpError;
use crate::jobs;
use crate::mail::{Email, Mailer};
use crate::state::AppState;
use basalt_core::config::EmailTemplate;
use basalt_core::errors::{ApiError, ErrorCode};
use base64::Engine;
use deadpool_postgres::GenericClient;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Signup,
    Recovery,
    MagicLink,
    EmailChange,
    /// A six-digit code for `PUT /auth/v1/user` (never a sign-in: not
    /// [`Kind::parse`]d, so `/verify` never takes it).
    Reauthentication,
}

impl Kind {
    pub fn parse(text: &str) -> Option<Kind> {
        Some(match text {
            // An invitation confirms the address as a sign-up's link does.
            "signup" | "invite" => Kind::Signup,
            "recovery" => Kind::Recovery,
            "magiclink" => Kind::MagicLink,
            "email_change" => Kind::EmailChange,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Signup => "signup",
            Kind::Recovery => "recovery",
            Kind::MagicLink => "magiclink",
            Kind::EmailChange => "email_change",
            Kind::Reauthentication => "reauthentication",
        }
    }

    /// How a session opened by this kind's link was authenticated (GoTrue's
    /// `amr` method names).
    pub fn amr(self) -> &'static str {
        match self {
            Kind::Signup => "email/signup",
            Kind::Recovery => "recovery",
            Kind::MagicLink => "magiclink",
            Kind::EmailChange => "email_change",
            Kind::Reauthentication => "reauthentication",
        }
    }

    fn template(self, state: &AppState) -> &EmailTemplate {
        let templates = &state.config.templates;
        match self {
            Kind::Signup => &templates.confirmation,
            Kind::Recovery => &templates.recovery,
            Kind::MagicLink => &templates.magic_link,
            Kind::EmailChange => &templates.email_change,
            Kind::Reauthentication => &templates.reauthentication,
        }
    }
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Refuses a `redirect_to` outside `site_url` and `auth.redirect_allow_list`.
pub fn check_redirect(state: &AppState, redirect_to: Option<&str>) -> Result<(), HttpError> {
    match redirect_to {
        Some(url) if !basalt_core::auth_rules::redirect_allowed(url, &state.config.site_url, &state.config.auth.redirect_allow_list) => {
            Err(ApiError::new(ErrorCode::ValidationFailed)
                .with_details("redirect_to: this URL is not allowed")
                .with_hint("Use site_url or a URL listed in auth.redirect_allow_list (BASALT_AUTH_REDIRECT_ALLOW_LIST).")
                .into())
        }
        _ => Ok(()),
    }
}

/// The job queue of auth emails.
pub const QUEUE: &str = "auth_email";

/// A request for an auth email, queued by the request and carried out by a
/// worker. Requests for unknown and known addresses cost the same (one queued
/// row): the worker, not the request, looks the account up, so neither the
/// answer nor its timing tells whether an address has an account. The queue
/// holds no token: the worker makes it just before sending.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmailRequest {
    pub kind: String,
    pub email: String,
    #[serde(default)]
    pub user_id: Option<Uuid>,
    #[serde(default)]
    pub new_email: Option<String>,
    #[serde(default)]
    pub redirect_to: Option<String>,
    #[serde(default)]
    pub create_user: bool,
    #[serde(default)]
    pub data: Option<Value>,
    /// The requester's address, for the audit log the worker writes.
    #[serde(default)]
    pub ip: Option<std::net::IpAddr>,
    /// A PKCE client's code challenge and method (`s256` or `plain`): the
    /// link then ends in an authorization code, not in tokens.
    #[serde(default)]
    pub code_challenge: Option<Challenge>,
}

/// A PKCE code challenge: what `POST /auth/v1/token?grant_type=pkce` checks
/// the code verifier against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub challenge: String,
    /// `s256` or `plain`.
    pub method: String,
}

impl Challenge {
    /// The challenge a client sent (`code_challenge`, `code_challenge_method`),
    /// checked: 43 to 128 characters, method `s256` (the default) or `plain`.
    pub fn of(
        challenge: Option<&str>,
        method: Option<&str>,
    ) -> Result<Option<Challenge>, HttpError> {
        let Some(challenge) = challenge.filter(|c| !c.is_empty()) else {
            return Ok(None);
        };
        let method = method.unwrap_or("s256").to_ascii_lowercase();
        let shaped = (43..=128).contains(&challenge.len())
            && challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !shaped || !matches!(method.as_str(), "s256" | "plain") {
            return Err(ApiError::new(ErrorCode::ValidationFailed)
                .with_details("code_challenge: 43 to 128 URL-safe characters, method s256 or plain")
                .into());
        }
        Ok(Some(Challenge {
            challenge: challenge.to_owned(),
            method,
        }))
    }

    /// Whether `verifier` answers the challenge.
    pub fn accepts(&self, verifier: &str) -> bool {
        use subtle::ConstantTimeEq;
        let expected = match self.method.as_str() {
            "plain" => verifier.to_owned(),
            _ => base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes())),
        };
        expected.as_bytes().ct_eq(self.challenge.as_bytes()).into()
    }
}

pub async fn enqueue(
    state: &AppState,
    client: &impl GenericClient,
    request: &EmailRequest,
) -> Result<(), HttpError> {
    let payload = serde_json::to_value(request).expect("requests serialize");
    Ok(state.jobs.enqueue(client, QUEUE, &payload).await?)
}

/// The worker side of [`QUEUE`].
pub fn handler(state: AppState, mailer: Arc<Mailer>) -> jobs::Handler {
    Arc::new(move |payload| {
        let state = state.clone();
        let mailer = mailer.clone();
        Box::pin(async move {
            let request: EmailRequest =
                serde_json::from_value(payload).map_err(|e| format!("bad auth email job: {e}"))?;
            process(&state, &mailer, request).await
        })
    })
}

async fn process(
    state: &AppState,
    mailer: &Mailer,
    request: EmailRequest,
) -> Result<(), jobs::Failure> {
    let kind = match request.kind.as_str() {
        "reauthentication" => Kind::Reauthentication,
        other => Kind::parse(other)
            .ok_or_else(|| jobs::Failure::Permanent("unknown email kind".into()))?,
    };
    let mut client = state.pool.get().await.map_err(|e| e.to_string())?;
    let transaction = client.transaction().await.map_err(|e| e.to_string())?;
    let found = transaction
        .query_opt(
            "SELECT id, email, email_confirmed_at IS NOT NULL FROM auth.users WHERE lower(email) = lower($1)",
            &[&request.email],
        )
        .await
        .map_err(|e| e.to_string())?
        .map(|row| (row.get::<_, Uuid>(0), row.get::<_, String>(1), row.get::<_, bool>(2)));
    let (user_id, to, new_email) = match (kind, found) {
        // Only an unconfirmed account gets a confirmation email.
        (Kind::Signup, Some((id, address, false))) => (id, address, None),
        (Kind::Signup, _) => return Ok(()),
        (Kind::Recovery | Kind::Reauthentication, Some((id, address, _))) => (id, address, None),
        (Kind::MagicLink, Some((id, address, _))) => (id, address, None),
        (Kind::MagicLink, None) if request.create_user => {
            let data = request.data.clone().unwrap_or_else(|| json!({}));
            transaction
                .execute(
                    "INSERT INTO auth.users (email, raw_user_meta_data) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&request.email, &data],
                )
                .await
                .map_err(|e| e.to_string())?;
            let id: Uuid = transaction
                .query_one(
                    "SELECT id FROM auth.users WHERE lower(email) = lower($1)",
                    &[&request.email],
                )
                .await
                .map_err(|e| e.to_string())?
                .get(0);
            (id, request.email.clone(), None)
        }
        // The new address is taken: send nothing, so the change cannot be used to probe.
        (Kind::EmailChange, Some(_)) => return Ok(()),
        (Kind::EmailChange, None) => {
            let Some(user_id) = request.user_id else {
                return Ok(());
            };
            (user_id, request.email.clone(), Some(request.email.as_str()))
        }
        (Kind::Recovery | Kind::MagicLink | Kind::Reauthentication, None) => return Ok(()),
    };
    let actor = Actor {
        id: None,
        role: "anon",
        ip: request
            .ip
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
    };
    let event = format!("{}_email_sent", kind.as_str());
    audit::audit(
        &transaction,
        &event,
        actor,
        Some(user_id),
        json!({"to": to_audit(&to)}),
    )
    .await
    .map_err(|e| e.to_string())?;
    let (link, code) = if kind == Kind::Reauthentication {
        let code = issue_code(state, &transaction, user_id)
            .await
            .map_err(|e| e.to_string())?;
        (String::new(), code)
    } else {
        issue_token(
            state,
            &transaction,
            user_id,
            kind,
            new_email,
            request.redirect_to.as_deref(),
            request.code_challenge.as_ref(),
        )
        .await
        .map_err(|e| e.to_string())?
    };
    transaction.commit().await.map_err(|e| e.to_string())?;
    let values = [
        ("link", link.as_str()),
        ("token", code.as_str()),
        ("email", to.as_str()),
        ("new_email", new_email.unwrap_or("")),
        ("site_url", state.config.site_url.as_str()),
    ];
    let template = kind.template(state);
    let email = Email {
        to: to.clone(),
        subject: basalt_core::auth_rules::render(&template.subject, &values, false),
        html: basalt_core::auth_rules::render(&template.html, &values, true),
        text: basalt_core::auth_rules::render(&template.text, &values, false),
    };
    // A failure here retries the job, which issues a fresh token.
    mailer.send(email).await
}

/// The domain of an address, for the audit log (not the whole address).
fn to_audit(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, domain)| format!("*@{domain}"))
        .unwrap_or_default()
}

/// A six-digit code (an emailed one, or a reauthentication code) as kept:
/// an HMAC under the server secret, of the user and the code (a plain hash
/// of six digits is reversed at once, and two users' equal codes must not
/// collide).
fn code_hash(state: &AppState, user_id: Uuid, code: &str) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac =
        Hmac::<Sha256>::new_from_slice(state.refresh_key.as_bytes()).expect("HMAC takes any key");
    mac.update(b"basalt emailed code\0");
    mac.update(user_id.as_bytes());
    mac.update(code.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Six random digits.
fn new_code() -> String {
    format!("{:06}", rand::random_range(0..1_000_000u32))
}

/// Makes a six-digit reauthentication code (replacing an unused one).
async fn issue_code(
    state: &AppState,
    client: &impl GenericClient,
    user_id: Uuid,
) -> Result<String, HttpError> {
    let code = new_code();
    client
        .execute(
            "DELETE FROM auth.one_time_tokens WHERE user_id = $1 AND kind = 'reauthentication'",
            &[&user_id],
        )
        .await?;
    client
        .execute(
            "INSERT INTO auth.one_time_tokens (user_id, kind, token_hash, expires_at)
             VALUES ($1, 'reauthentication', $2, now() + make_interval(secs => $3::float8))",
            &[
                &user_id,
                &code_hash(state, user_id, &code),
                &(state.config.auth.email_token_ttl_secs as f64),
            ],
        )
        .await?;
    Ok(code)
}

/// Spends the pending reauthentication code of `user_id`, whatever `nonce`
/// is (one guess per code: a six-digit code cannot be tried a million
/// times); whether `nonce` was it, unexpired. Runs on its own, so a wrong
/// guess spends the code even though the request then fails.
pub async fn spend_code(
    state: &AppState,
    client: &impl GenericClient,
    user_id: Uuid,
    nonce: &str,
) -> Result<bool, HttpError> {
    let rows = client
        .query(
            "DELETE FROM auth.one_time_tokens WHERE user_id = $1 AND kind = 'reauthentication'
             RETURNING used_at IS NULL AND expires_at > now() AND token_hash = $2",
            &[&user_id, &code_hash(state, user_id, nonce)],
        )
        .await?;
    Ok(rows.iter().any(|row| row.get::<_, bool>(0)))
}

/// Makes a single-use token of `kind` (replacing unused ones of that kind)
/// with its six-digit code, and returns the verify link that carries the
/// token, and the code.
pub async fn issue_token(
    state: &AppState,
    client: &impl GenericClient,
    user_id: Uuid,
    kind: Kind,
    new_email: Option<&str>,
    redirect_to: Option<&str>,
    challenge: Option<&Challenge>,
) -> Result<(String, String), HttpError> {
    let code = new_code();
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    client
        .execute(
            "DELETE FROM auth.one_time_tokens WHERE user_id = $1 AND kind = $2 AND used_at IS NULL",
            &[&user_id, &kind.as_str()],
        )
        .await?;
    client
        .execute(
            "INSERT INTO auth.one_time_tokens (user_id, kind, token_hash, new_email, redirect_to, expires_at,
                                               code_challenge, code_challenge_method, code_hash)
             VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6::float8), $7, $8, $9)",
            &[
                &user_id,
                &kind.as_str(),
                &hash(&token),
                &new_email,
                &redirect_to,
                &(state.config.auth.email_token_ttl_secs as f64),
                &challenge.map(|c| &c.challenge),
                &challenge.map(|c| &c.method),
                &code_hash(state, user_id, &code),
            ],
        )
        .await
        ?;
    let mut link = url::Url::parse(&format!("{}/auth/v1/verify", state.config.public_url()))
        .map_err(|_| HttpError::new(ErrorCode::InternalError))?;
    link.query_pairs_mut()
        .append_pair("token", &token)
        .append_pair("type", kind.as_str());
    if let Some(redirect_to) = redirect_to {
        link.query_pairs_mut()
            .append_pair("redirect_to", redirect_to);
    }
    Ok((link.into(), code))
}

/// How a token reached the server: a link followed by a browser (where a
/// PKCE client's flow ends in a code), or a client's own call (a session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Link,
    Call,
}

/// How long an authorization code waits to be exchanged.
const FLOW_TTL_SECS: u64 = 300;

/// Exchanges a PKCE flow's authorization code and verifier for the user it
/// signed in (`POST /auth/v1/token?grant_type=pkce`): the code works once.
pub async fn exchange(
    client: &impl GenericClient,
    auth_code: &str,
    verifier: &str,
) -> Result<(Uuid, &'static str), HttpError> {
    let row = client
        .query_opt(
            "SELECT id, user_id, code_challenge, code_challenge_method, authentication_method FROM auth.flow_states
             WHERE auth_code_hash = $1 AND used_at IS NULL AND expires_at > now() FOR UPDATE",
            &[&hash(auth_code)],
        )
        .await?
        .ok_or_else(|| HttpError::new(ErrorCode::FlowStateNotFound))?;
    let challenge = Challenge {
        challenge: row.get(2),
        method: row.get(3),
    };
    if !challenge.accepts(verifier) {
        return Err(ErrorCode::BadCodeVerifier.into());
    }
    client
        .execute(
            "UPDATE auth.flow_states SET used_at = now() WHERE id = $1",
            &[&row.get::<_, i64>(0)],
        )
        .await?;
    let method = Kind::parse(row.get(4)).map_or("otp", Kind::amr);
    Ok((row.get(1), method))
}

/// What a verified token unlocked: a session, or — for a link made for a
/// PKCE client and followed by a browser — the authorization code the app
/// exchanges for one.
pub struct Verified {
    pub session: Option<Value>,
    pub auth_code: Option<String>,
    pub redirect_to: Option<String>,
}

/// Spends a token of `kind` and applies it; returns a new session.
/// What a verification names: a link's token, or the address an email went
/// to and the six-digit code it carried.
#[derive(Clone, Copy)]
pub enum Locator<'a> {
    Token(&'a str),
    Code { email: &'a str, code: &'a str },
}

/// Wrong codes that void a pending email's code (not its link).
pub const MAX_CODE_FAILURES: i32 = 5;

pub async fn verify(
    state: &AppState,
    kind: Kind,
    locator: Locator<'_>,
    actor_ip: std::net::IpAddr,
    user_agent: Option<&str>,
    flow: Flow,
) -> Result<Verified, HttpError> {
    const SPEND: &str = "UPDATE auth.one_time_tokens SET used_at = now()
             WHERE {which} AND kind = $2 AND used_at IS NULL AND expires_at > now()
             RETURNING user_id, new_email, redirect_to, code_challenge, code_challenge_method";
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let row = match locator {
        Locator::Token(token) => {
            transaction
                .query_opt(
                    &SPEND.replace("{which}", "token_hash = $1"),
                    &[&hash(token), &kind.as_str()],
                )
                .await?
        }
        Locator::Code { email, code } => {
            // The latest pending email of this kind to the address (an
            // address change's code went to the new one).
            let Some(pending) = transaction
                .query_opt(
                    "SELECT t.id, t.user_id, t.code_hash FROM auth.one_time_tokens t
                     JOIN auth.users u ON u.id = t.user_id
                     WHERE t.kind = $1 AND t.used_at IS NULL AND t.expires_at > now()
                       AND t.code_hash IS NOT NULL
                       AND lower(CASE WHEN t.kind = 'email_change' THEN t.new_email ELSE u.email END) = lower($2)
                     ORDER BY t.id DESC LIMIT 1 FOR UPDATE OF t",
                    &[&kind.as_str(), &email],
                )
                .await?
            else {
                // The same work as a wrong code, so the time taken does not
                // tell whether the address has a pending email.
                let _ = code_hash(state, Uuid::nil(), code);
                transaction.commit().await?;
                return Err(ErrorCode::OtpExpired.into());
            };
            let id: i64 = pending.get(0);
            let stored: Vec<u8> = pending.get(2);
            let given = code_hash(state, pending.get(1), code.trim());
            if !bool::from(subtle::ConstantTimeEq::ct_eq(&stored[..], &given[..])) {
                // Counted, and kept although the request fails: five wrong
                // codes void the code (the link still works, so strangers
                // guessing cannot take the owner's email away).
                transaction
                    .execute(
                        "UPDATE auth.one_time_tokens SET code_failures = code_failures + 1,
                                code_hash = CASE WHEN code_failures + 1 >= $2 THEN NULL ELSE code_hash END
                         WHERE id = $1",
                        &[&id, &MAX_CODE_FAILURES],
                    )
                    .await?;
                transaction.commit().await?;
                return Err(ErrorCode::OtpExpired.into());
            }
            transaction
                .query_opt(&SPEND.replace("{which}", "id = $1"), &[&id, &kind.as_str()])
                .await?
        }
    };
    let row = row.ok_or_else(|| HttpError::new(ErrorCode::OtpExpired))?;
    let user_id: Uuid = row.get(0);
    let new_email: Option<String> = row.get(1);
    let redirect_to: Option<String> = row.get(2);
    let challenge = match (
        row.get::<_, Option<String>>(3),
        row.get::<_, Option<String>>(4),
    ) {
        (Some(challenge), Some(method)) => Some(Challenge { challenge, method }),
        _ => None,
    };
    let banned: bool = transaction
        .query_one(
            "SELECT banned_until IS NOT NULL AND banned_until > now() FROM auth.users WHERE id = $1",
            &[&user_id],
        )
        .await
        ?
        .get(0);
    if banned {
        return Err(ErrorCode::UserBanned.into());
    }
    if kind == Kind::EmailChange {
        transaction
            .execute(
                "UPDATE auth.users SET email = $2, new_email = NULL, email_change_sent_at = NULL,
                        email_confirmed_at = now(), is_anonymous = false,
                        raw_app_meta_data = CASE WHEN is_anonymous
                            THEN raw_app_meta_data || '{\"provider\": \"email\", \"providers\": [\"email\"]}'
                            ELSE raw_app_meta_data END,
                        updated_at = now() WHERE id = $1",
                &[&user_id, &new_email],
            )
            .await
            .map_err(users::email_taken_or_failed)?;
        // Links sent to the old address must not work any more.
        transaction
            .execute(
                "DELETE FROM auth.one_time_tokens WHERE user_id = $1 AND used_at IS NULL",
                &[&user_id],
            )
            .await?;
    } else {
        // Following a link sent to the address proves the user owns it. If the
        // account was never confirmed, whoever created it (maybe not the
        // owner) may have set its password: that password is dropped, and
        // the owner sets their own.
        transaction
            .execute(
                "UPDATE auth.users SET
                    encrypted_password = CASE WHEN email_confirmed_at IS NULL AND $2 THEN NULL ELSE encrypted_password END,
                    email_confirmed_at = coalesce(email_confirmed_at, now())
                 WHERE id = $1",
                &[&user_id, &(kind != Kind::Signup)],
            )
            .await
            ?;
    }
    let actor = Actor {
        id: Some(user_id),
        role: "authenticated",
        ip: actor_ip,
    };
    audit::audit(
        &transaction,
        &format!("verified_{}", kind.as_str()),
        actor,
        Some(user_id),
        json!({}),
    )
    .await?;
    // A link made for a PKCE client, followed by a browser: the app gets a
    // code to exchange (with its verifier) instead of tokens in the URL.
    if let (Some(challenge), Flow::Link) = (challenge, flow) {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let code = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        transaction
            .execute(
                "INSERT INTO auth.flow_states (user_id, auth_code_hash, code_challenge, code_challenge_method,
                                               authentication_method, expires_at)
                 VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6::float8))",
                &[
                    &user_id,
                    &hash(&code),
                    &challenge.challenge,
                    &challenge.method,
                    &kind.as_str(),
                    &(FLOW_TTL_SECS as f64),
                ],
            )
            .await?;
        transaction.commit().await?;
        return Ok(Verified {
            session: None,
            auth_code: Some(code),
            redirect_to,
        });
    }
    let session =
        sessions::start(state, &transaction, user_id, kind.amr(), actor, user_agent).await?;
    transaction.commit().await?;
    Ok(Verified {
        session: Some(session),
        auth_code: None,
        redirect_to,
    })
}

#[cfg(test)]
mod tests {
    use super::Challenge;

    #[test]
    fn pkce_challenges_follow_rfc_7636() {
        // The example of RFC 7636, appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let s256 = Challenge::of(
            Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            Some("S256"),
        )
        .unwrap()
        .unwrap();
        assert!(s256.accepts(verifier));
        assert!(!s256.accepts("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj"));
        let plain = Challenge::of(Some(verifier), Some("plain"))
            .unwrap()
            .unwrap();
        assert!(plain.accepts(verifier));
        assert!(!plain.accepts("something else entirely, forty-three chars!"));
        assert_eq!(Challenge::of(None, Some("s256")).unwrap(), None);
        assert!(Challenge::of(Some("short"), None).is_err());
        assert!(Challenge::of(Some(verifier), Some("md5")).is_err());
    }
}

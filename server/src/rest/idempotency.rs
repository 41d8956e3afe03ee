//! `Idempotency-Key` on data API writes. The key is claimed, and the reply
//! stored, inside the write's own transaction, through two SECURITY DEFINER
//! functions (migration V12) under an id that is an HMAC of the caller and
//! the key, so SQL running in a request cannot reach another caller's keys
//! or replies. A retry finds the committed reply and replays it,
//! writing nothing; a concurrent request with the same key blocks on the
//! key's unique index until the first one commits (then replays its reply) or
//! rolls back (then runs itself), so two requests never both write. A key
//! sent with a different method, path, query or body is refused with 422.
//! Expired keys are pruned by a background task.

use super::Reply;
use crate::error::HttpError;
use crate::identity::Caller;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use basalt_core::errors::{ApiError, ErrorCode};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The longest key accepted (Stripe's limit).
const MAX_KEY_LENGTH: usize = 255;

pub struct Idempotency {
    /// HMAC(server secret, owner NUL key), hex.
    id: String,
    fingerprint: String,
}

impl Idempotency {
    /// The request's key, if it sent one.
    pub fn of(
        request: &HttpRequest,
        state: &AppState,
        caller: &Caller,
        body: &[u8],
    ) -> Result<Option<Idempotency>, HttpError> {
        let Some(value) = request.headers().get("idempotency-key") else {
            return Ok(None);
        };
        let key = value
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LENGTH)
            .ok_or_else(|| {
                HttpError::from(
                    ApiError::new(ErrorCode::InvalidRequest)
                        .with_details("the Idempotency-Key header is empty, too long or not ASCII")
                        .with_hint("send a random value such as a UUID, at most 255 characters"),
                )
            })?;
        // Keys belong to one caller. Every anonymous client shares the anon
        // key, so it gets none: one client could replay another's answer.
        let owner = match caller.user {
            Some((user, _)) => format!("user:{user}"),
            None if caller.role == crate::authz::engine::SERVICE_ROLE => {
                format!("role:{}", caller.role)
            }
            None => {
                return Err(ApiError::new(ErrorCode::InvalidRequest)
                    .with_details("Idempotency-Key needs a signed-in user or the service_role key")
                    .with_hint(
                        "anonymous callers share one key space; send the user's access token",
                    )
                    .into())
            }
        };
        // Everything that shapes the request's effect and answer.
        let mut hash = Sha256::new();
        hash.update(request.method().as_str());
        hash.update([0]);
        hash.update(request.path());
        hash.update([0]);
        hash.update(request.query_string());
        for header in ["content-profile", "prefer"] {
            hash.update([0]);
            for value in request.headers().get_all(header) {
                hash.update(value.as_bytes());
                hash.update([1]);
            }
        }
        hash.update([0]);
        hash.update(body);
        let mut id =
            Hmac::<Sha256>::new_from_slice(state.refresh_key.as_bytes()).expect("any key length");
        id.update(b"idempotency\0");
        id.update(owner.as_bytes());
        id.update(&[0]);
        id.update(key.as_bytes());
        Ok(Some(Idempotency {
            id: hex::encode(id.finalize().into_bytes()),
            fingerprint: hex::encode(hash.finalize()),
        }))
    }

    /// Claims the key in the transaction open on `transaction`; returns the
    /// stored reply when the key was already used for this same request (422
    /// for another request).
    pub async fn claim(
        &self,
        transaction: &tokio_postgres::Client,
        state: &AppState,
    ) -> Result<Option<Reply>, HttpError> {
        let ttl = state.config.rest.idempotency_ttl_secs as f64;
        // An expired key that was not pruned yet is taken over.
        let row = transaction
            .query_one(
                "SELECT * FROM basalt.idempotency_claim($1, $2, $3)",
                &[&self.id, &self.fingerprint, &ttl],
            )
            .await?;
        if row.get::<_, bool>(0) {
            return Ok(None);
        }
        let fingerprint: String = row.get(1);
        if fingerprint != self.fingerprint {
            return Err(ErrorCode::IdempotencyKeyReused.into());
        }
        let Some(status) = row.get::<_, Option<i32>>(2) else {
            // Committed rows always hold a reply; this is a guard, not a state.
            return Err(ErrorCode::IdempotencyKeyInProgress.into());
        };
        let headers: serde_json::Value = row.get(3);
        let mut reply = Reply::new(StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK));
        for pair in headers.as_array().into_iter().flatten() {
            if let (Some(name), Some(value)) = (pair[0].as_str(), pair[1].as_str()) {
                reply = reply.header(name, value);
            }
        }
        reply = reply.header("idempotent-replayed", "true");
        reply.body = row.get(4);
        Ok(Some(reply))
    }

    /// Stores the reply with the write, before the commit.
    pub async fn store(
        &self,
        transaction: &tokio_postgres::Client,
        reply: &Reply,
    ) -> Result<(), HttpError> {
        let headers = serde_json::Value::Array(
            reply
                .headers
                .iter()
                .map(|(name, value)| serde_json::json!([name, value]))
                .collect(),
        );
        transaction.batch_execute("RESET ROLE").await?;
        transaction
            .execute(
                "SELECT basalt.idempotency_store($1, $2, $3, $4)",
                &[
                    &self.id,
                    &(reply.status.as_u16() as i32),
                    &headers,
                    &reply.body,
                ],
            )
            .await?;
        Ok(())
    }
}

/// Deletes expired keys (run periodically).
pub async fn prune(pool: &deadpool_postgres::Pool) -> anyhow::Result<u64> {
    let client = pool.get().await?;
    Ok(client
        .execute(
            "DELETE FROM basalt.idempotency_keys WHERE expires_at <= now()",
            &[],
        )
        .await?)
}

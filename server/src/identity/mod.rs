//! Who is calling: API keys and users' access tokens (`jwt.rs`), the
//! sessions revoked within a token's lifetime (`revoked.rs`), and the
//! extractors that tell handlers (`Caller`, `SignedIn`, `ServiceRole`).
//! Below both auth (which issues tokens) and authz (which decides).

pub mod jwt;
pub mod revoked;

use crate::error::HttpError;
use crate::http::keys::{apikey_header, bearer};
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::http::header::HeaderMap;
use actix_web::web::Data;
use actix_web::{FromRequest, HttpRequest};
use basalt_core::errors::{ApiError, ErrorCode};
use std::future::{ready, Ready};

/// Who is calling: the role of the bearer token (a user's access token or an
/// API key), else of the `apikey` header. Both, when sent, must be valid.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: String,
    /// `(user id, session id)` when the bearer is a user's access token.
    pub user: Option<(uuid::Uuid, uuid::Uuid)>,
    /// The token's claims.
    pub claims: serde_json::Value,
    /// The client's address (behind trusted proxies), when it came over HTTP.
    pub ip: Option<std::net::IpAddr>,
}

impl Caller {
    fn from_headers(state: &AppState, headers: &HeaderMap) -> Result<Caller, HttpError> {
        Caller::from_keys(state, apikey_header(headers), bearer(headers))
    }

    /// The caller of an API key and, optionally, a user's access token (for
    /// clients that cannot send headers, such as a browser's WebSocket).
    pub fn from_keys(
        state: &AppState,
        apikey: Option<&str>,
        bearer: Option<&str>,
    ) -> Result<Caller, HttpError> {
        if apikey.is_none() && bearer.is_none() {
            return Err(ErrorCode::ApiKeyMissing.into());
        }
        let key = match apikey {
            Some(key) => Some(state.jwt().verify(key).map_err(|error| {
                let mut invalid = ApiError::new(ErrorCode::ApiKeyInvalid);
                invalid.details = error.error.details;
                HttpError::from(invalid)
            })?),
            None => None,
        };
        let verified = match bearer {
            Some(bearer) => state.jwt().verify(bearer)?,
            None => key.ok_or(ErrorCode::ApiKeyMissing)?,
        };
        if let Some((_, session)) = verified.user {
            if state.revoked().contains(&session) {
                return Err(ApiError::new(ErrorCode::SessionExpired)
                    .with_details("the session of this access token was revoked")
                    .into());
            }
        }
        Ok(Caller {
            role: verified.role,
            user: verified.user,
            claims: verified.claims,
            ip: None,
        })
    }
}

fn state_of(request: &HttpRequest) -> &AppState {
    request
        .app_data::<Data<AppState>>()
        .expect("the app registers its state")
}

impl FromRequest for Caller {
    type Error = HttpError;
    type Future = Ready<Result<Self, HttpError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = state_of(request);
        ready(
            Caller::from_headers(state, request.headers()).map(|caller| Caller {
                ip: Some(crate::http::security::request_ip(
                    request,
                    &state.trusted_proxies,
                )),
                ..caller
            }),
        )
    }
}

/// Admits only the service_role key (in `apikey` or as the bearer token).
pub struct ServiceRole;

impl FromRequest for ServiceRole {
    type Error = HttpError;
    type Future = Ready<Result<Self, HttpError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            Caller::from_headers(state_of(request), request.headers()).and_then(|caller| {
                if caller.role == jwt::SERVICE_ROLE {
                    Ok(ServiceRole)
                } else {
                    Err(ErrorCode::Forbidden.into())
                }
            }),
        )
    }
}

/// A signed-in user: the bearer must be a user's access token.
pub struct SignedIn {
    pub user_id: uuid::Uuid,
    pub session_id: uuid::Uuid,
}

impl FromRequest for SignedIn {
    type Error = HttpError;
    type Future = Ready<Result<Self, HttpError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            Caller::from_headers(state_of(request), request.headers()).and_then(|caller| {
                match caller.user {
                    Some((user_id, session_id)) => Ok(SignedIn {
                        user_id,
                        session_id,
                    }),
                    None => Err(ErrorCode::NoAuthorization.into()),
                }
            }),
        )
    }
}

impl crate::state::AppState {
    /// The token signer and verifier.
    pub fn jwt(&self) -> &std::sync::Arc<jwt::Jwt> {
        self.services.get()
    }

    /// Sessions revoked within an access token's lifetime (every replica).
    pub fn revoked(&self) -> &std::sync::Arc<revoked::Revoked> {
        self.services.get()
    }
}

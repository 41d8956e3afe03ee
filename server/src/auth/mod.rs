//! Auth. For now: the API keys (`anon`, `service_role`) and the extractor that
//! admits only the service_role key. Users, sessions and email flows come next.

pub mod keys;

use crate::http::error::HttpError;
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use actix_web::web::Data;
use actix_web::{FromRequest, HttpRequest};
use basalt_core::errors::ErrorCode;
use std::future::{ready, Ready};

/// The keys a request presents: the `apikey` header and the bearer token.
fn presented_keys(headers: &HeaderMap) -> Vec<String> {
    let apikey = headers
        .get("apikey")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|key| !key.is_empty());
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|key| !key.is_empty());
    apikey
        .into_iter()
        .chain(bearer)
        .map(str::to_owned)
        .collect()
}

/// The key that identifies the caller for rate limiting: `apikey`, else the bearer.
pub fn presented_key(headers: &HeaderMap) -> Option<String> {
    presented_keys(headers).into_iter().next()
}

/// Present in a handler's arguments, it admits only requests carrying the
/// service_role key (in `apikey` or as the bearer token).
pub struct ServiceRole;

impl FromRequest for ServiceRole {
    type Error = HttpError;
    type Future = Ready<Result<Self, HttpError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = request
            .app_data::<Data<AppState>>()
            .expect("the app registers its state");
        let keys = presented_keys(request.headers());
        if keys.is_empty() {
            return ready(Err(ErrorCode::ApiKeyMissing.into()));
        }
        let mut forbidden = false;
        let mut invalid = None;
        for key in keys {
            match state.keys.verify(&key) {
                Ok(claims) if claims.role == keys::SERVICE_ROLE => return ready(Ok(ServiceRole)),
                Ok(_) => forbidden = true,
                Err(error) => invalid = Some(error),
            }
        }
        ready(Err(if forbidden {
            HttpError::new(ErrorCode::Forbidden)
        } else {
            invalid.unwrap_or_else(|| ErrorCode::ApiKeyInvalid.into())
        }))
    }
}

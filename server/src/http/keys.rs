//! The keys a request presents: the `apikey` header and the bearer token of
//! `Authorization`. Auth verifies them; the rate limiter only counts them.

use actix_web::http::header::{HeaderMap, AUTHORIZATION};

pub fn apikey_header(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("apikey")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|key| !key.is_empty())
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|key| !key.is_empty())
}

/// The key that identifies the caller for rate limiting: `apikey`, else the bearer.
pub fn presented_key(headers: &HeaderMap) -> Option<String> {
    apikey_header(headers)
        .or_else(|| bearer(headers))
        .map(str::to_owned)
}

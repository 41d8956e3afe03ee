//! Security headers on every response, CORS, and who the client is (through
//! trusted proxies only).

use super::limits::state;
use crate::error::HttpError;
use actix_cors::Cors;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::ResponseError;
use basalt_core::config::Config;
use basalt_core::errors::{ApiError, ErrorCode};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};

pub fn client_ip(request: &ServiceRequest, trusted: &[IpNet]) -> IpAddr {
    client_ip_of(request.peer_addr(), request.headers(), trusted)
}

/// The same, for handlers.
pub fn request_ip(request: &actix_web::HttpRequest, trusted: &[IpNet]) -> IpAddr {
    client_ip_of(request.peer_addr(), request.headers(), trusted)
}

fn client_ip_of(
    peer: Option<std::net::SocketAddr>,
    headers: &header::HeaderMap,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = peer
        .map(|address| address.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let forwarded = headers
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok());
    basalt_core::forwarded::client_ip(peer, forwarded, trusted)
}

fn arrived_over_tls(request: &ServiceRequest, trusted: &[IpNet]) -> bool {
    let Some(peer) = request.peer_addr() else {
        return false;
    };
    let proto = request
        .headers()
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok());
    basalt_core::forwarded::forwarded_https(peer.ip(), proto, trusted)
}

pub async fn headers(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = state(&request).clone();
    let tls = arrived_over_tls(&request, &state.trusted_proxies);
    let auth_path = request.path().starts_with("/auth/");
    let mut request = request;
    let refused = match disallowed_origin(&request, &state.config) {
        // A preflight from an unlisted origin is refused here, in the
        // catalogue's shape (the CORS middleware would answer in plain text).
        Some(origin) if is_preflight(&request) => Some(origin),
        // Any other request is served without CORS headers, so a browser does
        // not let the foreign page read the answer, while same-origin pages
        // (which send Origin on POST) and probes still work.
        Some(_) => {
            request.headers_mut().remove(header::ORIGIN);
            None
        }
        None => None,
    };
    let mut response = match refused {
        Some(origin) => request.into_response(
            HttpError::from(
                ApiError::new(ErrorCode::CorsOriginNotAllowed)
                    .with_details(format!("origin: {origin}")),
            )
            .error_response(),
        ),
        None => next.call(request).await?.map_into_boxed_body(),
    };
    let security = &state.config.security;
    let ancestors = if security.frame_options == "DENY" {
        "'none'"
    } else {
        "'self'"
    };
    let headers = response.headers_mut();
    let mut default = |name: HeaderName, value: String| {
        if !headers.contains_key(&name) {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    };
    default(header::X_CONTENT_TYPE_OPTIONS, "nosniff".into());
    default(header::X_FRAME_OPTIONS, security.frame_options.clone());
    default(
        header::CONTENT_SECURITY_POLICY,
        format!("default-src 'none'; frame-ancestors {ancestors}"),
    );
    default(header::REFERRER_POLICY, "no-referrer".into());
    // supabase-js reads the string `code` of auth errors only from servers
    // that announce this API version.
    if auth_path {
        default(
            HeaderName::from_static("x-supabase-api-version"),
            "2024-01-01".into(),
        );
        // Tokens, sessions and user records: never kept by any cache.
        default(header::CACHE_CONTROL, "no-store".into());
    }
    if tls && security.hsts_max_age_secs > 0 {
        default(
            header::STRICT_TRANSPORT_SECURITY,
            format!("max-age={}; includeSubDomains", security.hsts_max_age_secs),
        );
    }
    Ok(response)
}

fn is_preflight(request: &ServiceRequest) -> bool {
    request.method() == actix_web::http::Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The `Origin` of a browser request that `cors.allowed_origins` does not list.
fn disallowed_origin(request: &ServiceRequest, config: &Config) -> Option<String> {
    let origins = &config.cors.allowed_origins;
    if origins.iter().any(|allowed| allowed == "*") {
        return None;
    }
    let origin = request
        .headers()
        .get(header::ORIGIN)?
        .to_str()
        .unwrap_or("<not text>");
    (!origins.iter().any(|allowed| allowed == origin)).then(|| origin.to_owned())
}

/// CORS from `cors.*`: any origin with `*` (never with credentials), else the list.
pub fn cors(config: &Config) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        .allow_any_header()
        .expose_headers([
            "x-request-id",
            "content-range",
            "retry-after",
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
            "ratelimit-policy",
            "location",
            // Storage: downloads and TUS resumable uploads from browsers.
            "etag",
            "content-disposition",
            "upload-offset",
            "upload-length",
            "upload-expires",
            "tus-resumable",
            "tus-version",
            "tus-extension",
            "tus-max-size",
        ])
        .max_age(Some(config.cors.max_age_secs as usize));
    if config
        .cors
        .allowed_origins
        .iter()
        .any(|origin| origin == "*")
    {
        cors = cors.allow_any_origin().send_wildcard();
    } else {
        for origin in &config.cors.allowed_origins {
            cors = cors.allowed_origin(origin);
        }
    }
    cors
}

//! The outermost middleware: gives every request an id (accepting a sane
//! `X-Request-Id`), reads W3C `traceparent`, logs one line per request inside a
//! span, records the Prometheus request metrics, and makes sure every error
//! leaves in the catalogue's JSON shape.

use crate::error::HttpError;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use actix_web::middleware::Next;
use actix_web::ResponseError;
use basalt_core::errors::ErrorCode;
use std::time::Instant;
use tracing::Instrument;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A client-sent id is kept when it is short and plain; otherwise a new one is made.
fn request_id(request: &ServiceRequest) -> String {
    request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The trace id of a valid `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
fn trace_id(request: &ServiceRequest) -> Option<String> {
    let value = request.headers().get("traceparent")?.to_str().ok()?;
    let parts: Vec<&str> = value.trim().split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    let valid = parts.len() >= 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1] != "0".repeat(32)
        && hex(parts[2], 16)
        && parts[2] != "0".repeat(16)
        && hex(parts[3], 2);
    valid.then(|| parts[1].to_owned())
}

pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&request);
    let trace = trace_id(&request).unwrap_or_default();
    let method = request.method().to_string();
    let span = tracing::info_span!("request", request_id = %id, trace_id = %trace, method = %method, path = %request.path());
    // No clone of the request may be held here: routing needs it unshared.
    let mut response = match next.call(request).instrument(span.clone()).await {
        Ok(response) => normalize(response.map_into_boxed_body()),
        Err(error) => {
            // Only a middleware's own failure lands here (handlers' errors are
            // already responses); the framework renders it.
            let status = error.as_response_error().status_code().as_u16();
            // A client's error (a malformed request) is not the server's.
            span.in_scope(|| {
                if status >= 500 {
                    tracing::error!(status, "request failed in middleware: {error}");
                } else {
                    tracing::info!(status, "request refused in middleware: {error}");
                }
            });
            record(&method, "unmatched", status, started.elapsed());
            return Err(error);
        }
    };

    let status = response.status().as_u16();
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let elapsed = started.elapsed();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    record(&method, &route, status, elapsed);
    span.in_scope(|| {
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        if status >= 500 {
            tracing::error!(status, route = %route, latency_ms, "request failed");
        } else {
            tracing::info!(status, route = %route, latency_ms, "request");
        }
    });
    Ok(response)
}

fn record(method: &str, route: &str, status: u16, elapsed: std::time::Duration) {
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!("basalt_http_requests_total", &labels).increment(1);
    metrics::histogram!("basalt_http_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
}

/// The framework answers a path whose method does not match, and some other
/// refusals, with an empty body: give those the catalogue's JSON.
fn normalize(response: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let code = match response.status().as_u16() {
        404 => ErrorCode::RouteNotFound,
        405 => ErrorCode::MethodNotAllowed,
        _ => return response,
    };
    if response.headers().contains_key(CONTENT_TYPE) {
        return response;
    }
    let (request, original) = response.into_parts();
    let mut replacement = HttpError::new(code).error_response();
    for (name, value) in original.headers() {
        if name != CONTENT_TYPE && name != actix_web::http::header::CONTENT_LENGTH {
            replacement
                .headers_mut()
                .append(name.clone(), value.clone());
        }
    }
    ServiceResponse::new(request, replacement)
}

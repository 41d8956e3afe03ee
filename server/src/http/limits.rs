//! Request limits, per resource (see [`crate::http::limited_resource`]): the
//! body size limit (413, checked on `Content-Length` before reading and again
//! while the body streams) and the request timeout (504).

use crate::error::HttpError;
use crate::state::AppState;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::ResponseError;
use basalt_core::errors::{ApiError, ErrorCode};
use futures_util::StreamExt;

fn too_large(limit: u64) -> HttpError {
    ApiError::new(ErrorCode::PayloadTooLarge)
        .with_details(format!("limit: {limit} bytes"))
        .into()
}

pub async fn body_limit(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    limits: super::Limits,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let limit = (limits.body_bytes)(&state(&request).config);
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Ok(request.into_response(too_large(limit).error_response()));
    }
    // Bodies without a Content-Length (chunked) are counted as they arrive.
    let (http_request, payload) = request.into_parts();
    let mut seen: u64 = 0;
    let counted = payload.map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len() as u64;
        if seen > limit {
            Err(PayloadError::Overflow)
        } else {
            Ok(chunk)
        }
    });
    let request = ServiceRequest::from_parts(
        http_request,
        Payload::Stream {
            payload: Box::pin(counted),
        },
    );
    next.call(request)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

/// Registered on each resource, after routing: routing needs the request
/// unshared, and this keeps a handle to it to answer with when the handler
/// runs out of time.
pub async fn timeout(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    limits: super::Limits,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let limit = (limits.time)(&state(&request).config);
    let http_request = request.request().clone();
    match tokio::time::timeout(limit, next.call(request)).await {
        Ok(result) => result.map(ServiceResponse::map_into_boxed_body),
        // Dropping the handler's future cancels its SQL (see db::CancelOnDrop).
        Err(_) => Ok(ServiceResponse::new(
            http_request,
            HttpError::from(
                ApiError::new(ErrorCode::RequestTimeout)
                    .with_details(format!("limit: {} ms", limit.as_millis())),
            )
            .error_response(),
        )),
    }
}

pub fn state(request: &ServiceRequest) -> &AppState {
    request
        .app_data::<Data<AppState>>()
        .expect("the app registers its state")
}

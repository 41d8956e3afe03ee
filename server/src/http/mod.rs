//! The HTTP foundation shared by every API: the middleware stack every
//! request passes through, and how resources are made.

pub mod keys;
pub mod limits;
pub mod observe;
pub mod params;
pub mod rate_limit;
pub mod security;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{web, Resource};
use basalt_core::config::Config;
use std::time::Duration;

/// What a resource's requests may take: the largest body (413 past it) and
/// the longest time (504), read from the configuration per request.
#[derive(Clone, Copy)]
pub struct Limits {
    pub body_bytes: fn(&Config) -> u64,
    pub time: fn(&Config) -> Duration,
}

/// The server's own limits (`server.body_limit_bytes`,
/// `server.request_timeout_ms`).
pub const SERVER_LIMITS: Limits = Limits {
    body_bytes: |config| config.server.body_limit_bytes,
    time: |config| Duration::from_millis(config.server.request_timeout_ms),
};

/// Every API resource is made here, so limits apply to all of them.
pub fn resource(
    path: &str,
) -> Resource<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    limited_resource(path, SERVER_LIMITS)
}

/// A resource with limits of its feature's own (storage's transfers).
/// Attached after routing: routing needs the request unshared.
pub fn limited_resource(
    path: &str,
    limits: Limits,
) -> Resource<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::resource(path)
        .wrap(from_fn(move |request, next| {
            limits::timeout(request, next, limits)
        }))
        .wrap(from_fn(move |request, next| {
            limits::body_limit(request, next, limits)
        }))
}

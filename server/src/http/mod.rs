//! The HTTP foundation shared by every API: the middleware stack every
//! request passes through, and how resources are made.

pub mod limits;
pub mod observe;
pub mod rate_limit;
pub mod security;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{web, Resource};

/// Every API resource is made here, so the request timeout applies to all of them.
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
    web::resource(path).wrap(from_fn(limits::timeout))
}

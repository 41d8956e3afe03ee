//! The composition root: every feature's routes and the middleware stack, in one
//! place. A feature lists its own routes in its folder's `routes` function.

use crate::error::HttpError;
use crate::http::{observe, params, rate_limit, security};
use crate::state::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Compress};
use actix_web::web::{self, Data};
use actix_web::App;
use basalt_core::errors::{ApiError, ErrorCode};

pub fn app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let body_limit = state.config.server.body_limit_bytes as usize;
    let cors = security::cors(&state.config);
    App::new()
        .app_data(Data::new(state))
        .app_data(web::PayloadConfig::new(body_limit))
        .app_data(
            web::JsonConfig::default()
                .limit(body_limit)
                .error_handler(json_error),
        )
        .app_data(web::QueryConfig::default().error_handler(params::query_error))
        .app_data(web::PathConfig::default().error_handler(params::path_error))
        .app_data(
            web::FormConfig::default()
                .limit(body_limit)
                .error_handler(params::form_error),
        )
        .configure(crate::ops::routes)
        .configure(crate::auth::routes::routes)
        .configure(crate::admin::routes)
        .configure(crate::authz::routes::routes)
        .configure(crate::rest::routes)
        .configure(crate::realtime::routes)
        .configure(crate::storage::routes)
        .configure(crate::search::routes)
        .default_service(web::to(route_not_found))
        // Listed innermost first: a request passes observe → compress → security
        // headers (and the origin check) → CORS → rate limit → body limit →
        // routing → the resource's timeout → handler. CORS sits outside the
        // limiter so a browser can read a 429.
        .wrap(from_fn(rate_limit::middleware))
        .wrap(cors)
        .wrap(from_fn(security::headers))
        .wrap(Compress::default())
        .wrap(from_fn(observe::observe))
}

async fn route_not_found(
    request: actix_web::HttpRequest,
) -> Result<actix_web::HttpResponse, HttpError> {
    Err(ApiError::new(ErrorCode::RouteNotFound)
        .with_details(format!("{} {}", request.method(), request.path()))
        .into())
}

/// Maps the framework's body and JSON extractor failures into the catalogue.
pub fn json_error(
    error: actix_web::error::JsonPayloadError,
    request: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::{JsonPayloadError as J, PayloadError as P};
    let api = match &error {
        J::Overflow { .. } | J::OverflowKnownLength { .. } | J::Payload(P::Overflow) => {
            let limit = request
                .app_data::<actix_web::web::Data<AppState>>()
                .map(|state| state.config.server.body_limit_bytes)
                .unwrap_or_default();
            ApiError::new(ErrorCode::PayloadTooLarge).with_details(format!("limit: {limit} bytes"))
        }
        J::ContentType => ApiError::new(ErrorCode::UnsupportedMediaType),
        J::Deserialize(cause) => {
            ApiError::new(ErrorCode::InvalidJson).with_details(cause.to_string())
        }
        other => ApiError::new(ErrorCode::InvalidRequest).with_details(other.to_string()),
    };
    HttpError::from(api).into()
}

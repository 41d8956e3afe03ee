//! The composition root: every feature's routes and the middleware stack, in one
//! place. A feature lists its own routes in its folder's `routes` function.

use crate::error::{json_error, HttpError};
use crate::http::{limits, observe, rate_limit, security};
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
        .configure(crate::ops::routes)
        .configure(crate::auth::routes::routes)
        .configure(crate::admin::routes)
        .configure(crate::authz::routes::routes)
        .configure(crate::rest::routes)
        .configure(crate::realtime::routes)
        .configure(crate::storage::routes)
        .default_service(web::to(route_not_found))
        // Listed innermost first: a request passes observe → compress → security
        // headers (and the origin check) → CORS → rate limit → body limit →
        // routing → the resource's timeout → handler. CORS sits outside the
        // limiter so a browser can read a 429.
        .wrap(from_fn(limits::body_limit))
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

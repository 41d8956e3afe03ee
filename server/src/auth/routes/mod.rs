//! The `/auth/v1/` endpoints a client app calls (GoTrue's set and shapes).

mod emailed;
mod signup;
mod token;
mod user;

use emailed::*;
use signup::*;
use token::*;
use user::*;

use super::email;
use super::sessions;
use super::users;
use crate::audit::{self, Actor};
use crate::error::HttpError;
use crate::http::resource;
use crate::http::security::request_ip;
use crate::identity::{Caller, SignedIn};
use crate::state::AppState;
use actix_web::web::{self, Data, Json, Query};
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Instant;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(resource("/auth/v1/signup").route(web::post().to(signup)))
        .service(resource("/auth/v1/token").route(web::post().to(token)))
        .service(
            resource("/auth/v1/user")
                .route(web::get().to(get_user))
                .route(web::put().to(update_user)),
        )
        .service(resource("/auth/v1/logout").route(web::post().to(logout)))
        .service(resource("/auth/v1/recover").route(web::post().to(recover)))
        .service(resource("/auth/v1/otp").route(web::post().to(otp)))
        .service(resource("/auth/v1/resend").route(web::post().to(resend)))
        .service(resource("/auth/v1/reauthenticate").route(web::get().to(reauthenticate)))
        .service(resource("/auth/v1/user/identities/{id}").route(web::delete().to(unlink_identity)))
        .service(
            resource("/auth/v1/verify")
                .route(web::post().to(verify_post))
                .route(web::get().to(verify_get)),
        )
        .service(resource("/auth/v1/settings").route(web::get().to(settings)))
        .service(resource("/auth/v1/.well-known/jwks.json").route(web::get().to(jwks)));
    super::admin::routes(config);
    super::links::routes(config);
    super::mfa::routes(config);
}

fn actor<'a>(
    state: &AppState,
    request: &HttpRequest,
    id: Option<uuid::Uuid>,
    role: &'a str,
) -> Actor<'a> {
    Actor {
        id,
        role,
        ip: request_ip(request, &state.trusted_proxies),
    }
}

fn user_agent(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
}

#[derive(Deserialize)]
struct RedirectQuery {
    redirect_to: Option<String>,
}

/// The public keys that verify access tokens (empty while they are HS256).
async fn jwks(state: Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "public, max-age=600"))
        .json(state.jwt().jwks())
}

async fn settings(_: Caller, state: Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "external": {"email": true},
        "disable_signup": false,
        "mailer_autoconfirm": !state.config.email_confirmation(),
        "smtp_configured": state.email_enabled,
    }))
}

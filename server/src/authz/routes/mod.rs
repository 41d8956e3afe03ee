//! The authorization admin API under `/admin/v1/`: roles and their
//! inheritance, user role assignments, policies, and the explainer. Open to
//! the service_role key and to users whom a policy allows `admin:authz`
//! (`read` for listing and explaining, `write` for changes). Every change is
//! audited, applied to this replica at once and announced to the others.

mod assignments;
mod explain;
mod policies;
mod roles;
mod store;

use assignments::*;
use explain::*;
use policies::*;
use roles::*;

use super::{Admin, AuthzRead, AuthzWrite};
use crate::audit::{self, Actor};
use crate::authz::engine::Subject;
use crate::error::HttpError;
use crate::http::resource;
use crate::http::security::request_ip;
use crate::identity::Caller;
use crate::state::AppState;
use actix_web::web::{self, Data, Json, Path};
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::filter::sql::{self, Column, Columns, Param};
use basalt_core::filter::{self as grammar, FilterError};
use basalt_core::policy;
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/admin/v1/roles")
                .route(web::get().to(list_roles))
                .route(web::post().to(create_role)),
        )
        .service(
            resource("/admin/v1/roles/{name}")
                .route(web::put().to(update_role))
                .route(web::delete().to(delete_role)),
        )
        .service(resource("/admin/v1/roles/{name}/parents").route(web::post().to(add_parent)))
        .service(
            resource("/admin/v1/roles/{name}/parents/{parent}")
                .route(web::delete().to(remove_parent)),
        )
        .service(
            resource("/admin/v1/users/{id}/roles")
                .route(web::get().to(user_roles))
                .route(web::post().to(assign_role)),
        )
        .service(
            resource("/admin/v1/users/{id}/roles/{role}").route(web::delete().to(unassign_role)),
        )
        .service(
            resource("/admin/v1/policies")
                .route(web::get().to(list_policies))
                .route(web::post().to(create_policy)),
        )
        .service(resource("/admin/v1/policies/explain").route(web::post().to(explain)))
        .service(
            resource("/admin/v1/policies/{id}")
                .route(web::get().to(get_policy))
                .route(web::put().to(update_policy))
                .route(web::delete().to(delete_policy)),
        );
}

/// The engine's view of a caller: token role, user, and roles from the claim.
pub fn subject_of(state: &AppState, caller: &Caller) -> Subject {
    let mut claim_roles = claim_roles(state, &caller.claims["app_metadata"]);
    // A session that passed a second factor holds the built-in role `aal2`.
    if caller.user.is_some() && caller.claims["aal"] == "aal2" {
        claim_roles.push("aal2".to_owned());
    }
    Subject {
        role: caller.role.clone(),
        user_id: caller.user.map(|(user, _)| user),
        claim_roles,
    }
}

fn claim_roles(state: &AppState, app_metadata: &Value) -> Vec<String> {
    let claim = &state.config.authz.roles_claim;
    if claim.is_empty() {
        return Vec::new();
    }
    app_metadata[claim.as_str()]
        .as_array()
        .map(|roles| {
            roles
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn invalid(details: impl Into<String>) -> HttpError {
    ApiError::new(ErrorCode::ValidationFailed)
        .with_details(details)
        .into()
}

fn valid_role_name(name: &str) -> Result<(), HttpError> {
    if basalt_core::policy::valid_role_name(name) {
        Ok(())
    } else {
        Err(invalid(
            "name: use a-z, 0-9 and _, starting with a letter, at most 63 characters",
        ))
    }
}

/// An admin allowed to change the authorization data (`admin:authz`,
/// `write`), with what applying a change needs.
pub(super) struct Change {
    caller: Caller,
    ip: std::net::IpAddr,
    state: Data<AppState>,
}

impl actix_web::FromRequest for Change {
    type Error = HttpError;
    type Future = std::future::Ready<Result<Self, HttpError>>;

    fn from_request(request: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let state = request
            .app_data::<Data<AppState>>()
            .expect("the app registers its state")
            .clone();
        let admin = Admin::<AuthzWrite>::from_request(request, payload).into_inner();
        std::future::ready(admin.map(|admin| Change {
            caller: admin.caller,
            ip: request_ip(request, &state.trusted_proxies),
            state,
        }))
    }
}

impl Change {
    /// A connection to begin the change's transaction on.
    async fn client(&self) -> Result<deadpool_postgres::Object, HttpError> {
        Ok(self.state.pool.get().await?)
    }

    /// Audits the change, announces it, commits it, and makes this replica
    /// use it at once (the announcement reaches the others).
    async fn commit(
        &self,
        transaction: deadpool_postgres::Transaction<'_>,
        event: &str,
        details: Value,
    ) -> Result<(), HttpError> {
        let actor = Actor {
            id: self.caller.user.map(|(user, _)| user),
            role: &self.caller.role,
            ip: self.ip,
        };
        audit::audit(&transaction, event, actor, None, details).await?;
        store::announce(&transaction).await?;
        transaction.commit().await?;
        // The change is saved; if this reload fails, the NOTIFY makes the
        // listener of every replica, this one included, load it again.
        if let Err(error) = self.state.authz().reload(&self.state.pool).await {
            tracing::error!("cannot reload policies: {error:#}");
        }
        Ok(())
    }
}

fn taken_or_failed(error: tokio_postgres::Error, what: &str) -> HttpError {
    match error.as_db_error().map(|e| e.code().code()) {
        Some("23505") => ApiError::new(ErrorCode::AlreadyExists)
            .with_details(what.to_owned())
            .into(),
        Some("23503") => ApiError::new(ErrorCode::RoleNotFound)
            .with_details(what.to_owned())
            .into(),
        _ => HttpError::from(error),
    }
}

fn user_id(text: &str) -> Result<Uuid, HttpError> {
    text.parse().map_err(|_| invalid("id: not a UUID"))
}

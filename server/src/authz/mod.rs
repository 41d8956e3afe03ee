//! Authorization: one policy engine (casbin for the role graph, with row
//! conditions and column lists on top) that every route asks through
//! [`engine::Engine::authorize`], and the admin API that manages it.

pub mod adapter;
pub mod declared;
pub mod engine;
pub mod routes;

pub use engine::Engine;

use crate::error::HttpError;
use crate::identity::Caller;
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use basalt_core::errors::{ApiError, ErrorCode};
use std::future::{ready, Ready};
use std::marker::PhantomData;

/// An admin area and the action a route needs on it (`admin:<area>`).
pub trait AdminArea {
    const AREA: &'static str;
    const ACTION: &'static str;
}

macro_rules! admin_areas {
    ($($name:ident => ($area:expr, $action:expr)),+ $(,)?) => {
        $(
            pub struct $name;
            impl AdminArea for $name {
                const AREA: &'static str = $area;
                const ACTION: &'static str = $action;
            }
        )+
    };
}

admin_areas! {
    UsersRead => ("users", "read"),
    UsersWrite => ("users", "write"),
    AuthzRead => ("authz", "read"),
    AuthzWrite => ("authz", "write"),
    SystemRead => ("system", "read"),
    SqlWrite => ("sql", "write"),
    AuditRead => ("audit", "read"),
    SchemaRead => ("schema", "read"),
    SchemaWrite => ("schema", "write"),
    RealtimeRead => ("realtime", "read"),
    SearchRead => ("search", "read"),
    SearchWrite => ("search", "write"),
}

/// Present in a handler's arguments, it admits the service_role key and users
/// whom a policy allows `A::ACTION` on `admin:A::AREA`.
pub struct Admin<A: AdminArea> {
    pub caller: Caller,
    area: PhantomData<A>,
}

impl<A: AdminArea> Admin<A> {
    pub fn check(state: &AppState, caller: Caller) -> Result<Self, HttpError> {
        let object = format!("admin:{}", A::AREA);
        let decision =
            state
                .authz()
                .authorize(&routes::subject_of(state, &caller), &object, A::ACTION);
        if decision.allowed {
            Ok(Admin {
                caller,
                area: PhantomData,
            })
        } else {
            Err(ApiError::new(ErrorCode::Forbidden)
                .with_details(format!("{object} {} is not allowed", A::ACTION))
                .with_hint(format!(
                    "Use the service_role key, or a user whom a policy allows {object}."
                ))
                .into())
        }
    }
}

impl<A: AdminArea> FromRequest for Admin<A> {
    type Error = HttpError;
    type Future = Ready<Result<Self, HttpError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let state = request
            .app_data::<actix_web::web::Data<AppState>>()
            .expect("the app registers its state");
        let caller = match Caller::from_request(request, payload).into_inner() {
            Ok(caller) => caller,
            Err(error) => return ready(Err(error)),
        };
        ready(Admin::check(state, caller))
    }
}

impl crate::state::AppState {
    /// The policy engine (reloaded when any replica changes policies).
    pub fn authz(&self) -> &std::sync::Arc<Engine> {
        self.services.get()
    }
}

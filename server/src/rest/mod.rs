//! The data API under `/rest/v1/`: reads (`read.rs`), writes (`write.rs`),
//! function calls (`rpc.rs`) and batches (`batch.rs`) over the exposed
//! schemas as the schema cache (`cache.rs`) knows them (the default one, or
//! the one a request's `Accept-Profile`/`Content-Profile` names). Every request is decided by the
//! policy engine with the columns it touches; row conditions are compiled into
//! the SQL and checked on every written row (a write that leaves a row the
//! caller could not read back is rolled back); statements run in one
//! transaction as the caller's database role with their JWT claims, so
//! row-level security applies too.

mod batch;
pub mod cache;
pub mod fairness;
mod idempotency;
pub(crate) mod tx;
pub(crate) use tx::{boxed, references, Step};
mod read;
mod rpc;
mod write;

use crate::authz::engine::Decision;
use crate::authz::routes::subject_of;
use crate::error::HttpError;
use crate::http::resource;
use crate::identity::Caller;
use crate::state::AppState;
use actix_web::http::{Method, StatusCode};
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode, PostgresError};
use basalt_core::filter::sql::Caller as Variables;
use basalt_core::filter::Expr;
use basalt_core::rest::request::Prefer;
use basalt_core::rest::{parse_read, Access, ReadQuery, Schema, Table};
pub use idempotency::prune as prune_idempotency_keys;
use std::sync::Arc;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(rest_resource("/rest/v1/").route(web::get().to(openapi_document)))
        // Basalt's own endpoint: Basalt's error codes (with the operation's index).
        .service(resource("/rest/v1/batch").route(web::post().to(batch::batch)))
        .service(
            rest_resource("/rest/v1/rpc/{function}")
                .route(web::get().to(rpc::call))
                // HEAD calls as GET does (read-only functions) and sends only the headers.
                .route(web::head().to(rpc::call))
                .route(web::post().to(rpc::call)),
        )
        .service(
            rest_resource("/rest/v1/{table}")
                .route(web::get().to(read::read))
                // HEAD runs the same read (with its count) and sends only the headers.
                .route(web::head().to(read::read))
                .route(web::post().to(write::insert))
                .route(web::put().to(write::put))
                .route(web::patch().to(write::update))
                .route(web::delete().to(write::delete)),
        );
}

/// A `/rest/v1` resource: its errors are sent as PostgREST sends them.
fn rest_resource(
    path: &str,
) -> actix_web::Resource<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    resource(path).wrap(actix_web::middleware::from_fn(postgrest_errors))
}

/// Sends a `/rest/v1` error as PostgREST would ([`HttpError::upstream_response`]):
/// PostgREST's code (`PGRST116`, or the SQLSTATE with PostgreSQL's message
/// and detail), so supabase-js code branching on `error.code` works.
async fn postgrest_errors(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<
    actix_web::dev::ServiceResponse<actix_web::body::EitherBody<impl actix_web::body::MessageBody>>,
    actix_web::Error,
> {
    let http = request.request().clone();
    match next.call(request).await {
        Ok(response) => {
            let mut upstream = response
                .response()
                .error()
                .and_then(|error| error.as_error::<HttpError>())
                .map(HttpError::upstream_response);
            // The framework's bare 405 for a method the resource lacks.
            let bare = !response
                .headers()
                .contains_key(actix_web::http::header::CONTENT_TYPE);
            if upstream.is_none() && bare && response.status() == StatusCode::METHOD_NOT_ALLOWED {
                let mut replacement =
                    HttpError::new(ErrorCode::MethodNotAllowed).upstream_response();
                if let Some(allow) = response.headers().get(actix_web::http::header::ALLOW) {
                    replacement
                        .headers_mut()
                        .insert(actix_web::http::header::ALLOW, allow.clone());
                }
                upstream = Some(replacement);
            }
            Ok(match upstream {
                Some(replacement) => response.into_response(replacement).map_into_right_body(),
                None => response.map_into_left_body(),
            })
        }
        Err(error) => match error.as_error::<HttpError>() {
            Some(http_error) => Ok(actix_web::dev::ServiceResponse::new(
                http,
                http_error.upstream_response(),
            )
            .map_into_right_body()),
            None => Err(error),
        },
    }
}

/// `GET /rest/v1/`: the OpenAPI 3 document of what this caller may do, for
/// the schema `Accept-Profile` names (or the default one).
async fn openapi_document(
    caller: Caller,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    let profile = profile(&state, &request)?;
    let subject = subject_of(&state, &caller);
    // The configured address, never the request's Host or X-Forwarded-Host.
    let base = if state.config.public_url.is_empty() {
        format!("http://{}", state.config.http)
    } else {
        state.config.public_url.trim_end_matches('/').to_owned()
    };
    // The columns any of the caller's decisions on the table names.
    let columns = |object: &str| -> Option<Vec<String>> {
        let mut union: Vec<String> = Vec::new();
        for action in ["select", "insert", "update"] {
            let decision = state.authz().authorize(&subject, object, action);
            if decision.allowed {
                union.extend(decision.columns?);
            }
        }
        Some(union)
    };
    let document = basalt_core::rest::openapi(
        &state.schema().profile(&profile).expect("an exposed schema"),
        &format!("{base}/rest/v1"),
        env!("CARGO_PKG_VERSION"),
        &|object, action| state.authz().authorize(&subject, object, action).allowed,
        &columns,
    );
    Ok(HttpResponse::Ok()
        .content_type("application/openapi+json")
        .body(document.to_string()))
}

/// A response built inside the transaction, so it can be stored with the
/// write under an `Idempotency-Key` and replayed byte for byte.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl Reply {
    pub fn new(status: StatusCode) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn json(status: StatusCode, body: String) -> Self {
        Reply::new(status)
            .header("content-type", "application/json")
            .body(body)
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn body(mut self, body: String) -> Self {
        self.body = Some(body);
        self
    }

    pub fn into_response(self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        for (name, value) in self.headers {
            response.insert_header((name, value));
        }
        match self.body {
            Some(body) => response.body(body),
            None => response.finish(),
        }
    }
}

/// The request's `Prefer` headers (see `basalt_core::rest::request`).
pub fn prefer(request: &HttpRequest) -> Result<Prefer, HttpError> {
    let mut prefer = Prefer::parse(
        request
            .headers()
            .get_all("prefer")
            .filter_map(|value| value.to_str().ok()),
    )?;
    // `tx=rollback` only where the configuration allows it (else ignored).
    let allowed = request
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.config.rest.allow_tx_rollback);
    prefer.rollback &= allowed;
    Ok(prefer)
}

/// The query string as decoded pairs.
pub fn query_pairs(request: &HttpRequest) -> Vec<(String, String)> {
    url::form_urlencoded::parse(request.query_string().as_bytes())
        .into_owned()
        .collect()
}

/// What every table request starts from: its parsed query, the schema
/// snapshot, the table, and its policy object.
pub struct Target {
    pub query: ReadQuery,
    pub schema: Arc<Schema>,
    pub table: Table,
    pub object: String,
}

/// The schema a request is about: `Accept-Profile` (reads) or
/// `Content-Profile` (writes) naming one of the exposed schemas, else the
/// default one; any other is `406 unknown_profile`.
pub fn profile(state: &AppState, request: &HttpRequest) -> Result<String, HttpError> {
    let header = if matches!(*request.method(), Method::GET | Method::HEAD) {
        "accept-profile"
    } else {
        "content-profile"
    };
    let asked = request
        .headers()
        .get(header)
        .map(|v| v.to_str().unwrap_or(""));
    Ok(basalt_core::rest::request::profile(asked, state.schema().names())?.to_owned())
}

/// A snapshot of the exposed schema `profile`, reloaded first when it lacks
/// `name` among the objects `has` looks in (DDL whose notification has not
/// arrived yet).
pub async fn snapshot(
    state: &AppState,
    profile: &str,
    has: impl Fn(&Schema) -> bool,
) -> Arc<Schema> {
    let looked = std::time::Instant::now();
    let schema = state.schema().profile(profile).expect("an exposed schema");
    if !has(&schema) && state.schema().reload_after_miss(&state.pool, looked).await {
        return state.schema().profile(profile).expect("an exposed schema");
    }
    schema
}

/// The table from the schema cache, or a 404 naming the closest table (to the
/// service_role key only: others do not learn other tables' names).
pub(crate) async fn table_of(
    state: &AppState,
    profile: &str,
    name: &str,
    suggest: bool,
) -> Result<(Arc<Schema>, Table), HttpError> {
    let schema = snapshot(state, profile, |schema| schema.tables.contains_key(name)).await;
    if let Some(table) = schema.tables.get(name) {
        let table = table.clone();
        return Ok((schema, table));
    }
    let close = basalt_core::config::suggestion(name, schema.tables.keys().map(String::as_str));
    let hint = match (suggest, close) {
        (true, Some(close)) => format!("Did you mean `{close}`?"),
        (true, None) => format!(
            "The schema {} has: {}",
            schema.name,
            schema.tables.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        (false, _) => "Check the table's name.".to_owned(),
    };
    Err(ApiError::new(ErrorCode::TableNotFound)
        .with_details(format!("{}.{name}", schema.name))
        .with_hint(hint)
        .into())
}

/// Parses the query, decides `action` on the table coarsely (before looking
/// it up, so an answer never tells a caller without access whether a table
/// exists), then finds the table.
/// PostgreSQL's object identifier types, whose input looks names up.
const REG_TYPES: &[&str] = &[
    "regclass",
    "regcollation",
    "regconfig",
    "regdictionary",
    "regnamespace",
    "regoper",
    "regoperator",
    "regproc",
    "regprocedure",
    "regrole",
    "regtype",
];

/// The query string as a read, refusing casts to the `reg*` types for all
/// but the service_role key: `::regclass`, `::regrole`, `::regproc` turn text
/// into catalog lookups, a way to probe for tables, roles and functions.
pub fn parse_query(
    state: &AppState,
    caller: &Caller,
    pairs: &[(String, String)],
) -> Result<ReadQuery, HttpError> {
    let query = parse_read(pairs)?;
    if !state.config.rest.aggregates && query.aggregates() {
        return Err(ApiError::new(ErrorCode::AggregatesDisabled).into());
    }
    if !is_service_key(caller) {
        if let Some(cast) = query.casts().into_iter().find(|cast| {
            let base = cast.rsplit('.').next().unwrap_or(cast);
            let base = base.trim_matches('"').trim_start_matches('_');
            let base = base.trim_end_matches("[]").to_ascii_lowercase();
            REG_TYPES.contains(&base.as_str())
        }) {
            return Err(ApiError::new(ErrorCode::InvalidQuery)
                .with_details(format!("casts to `{cast}` look names up in the catalog"))
                .with_hint("cast to text, a number or a date type")
                .into());
        }
    }
    Ok(query)
}

pub async fn target(
    state: &AppState,
    caller: &Caller,
    profile: &str,
    pairs: &[(String, String)],
    name: &str,
    action: &str,
) -> Result<Target, HttpError> {
    let query = parse_query(state, caller, pairs)?;
    let object = format!("table:{profile}.{name}");
    let coarse = state
        .authz()
        .authorize(&subject_of(state, caller), &object, action);
    if !coarse.allowed {
        return Err(refusal(
            caller,
            coarse.reason,
            "An admin can see why with POST /admin/v1/policies/explain.".into(),
        ));
    }
    let (schema, table) = table_of(state, profile, name, is_service_key(caller)).await?;
    Ok(Target {
        query,
        schema,
        table,
        object,
    })
}

/// What a `/rest/v1/<table>` request starts from: its `Prefer`, its query
/// pairs, and its [`Target`] in the schema its profile header names.
pub async fn table_request(
    state: &AppState,
    caller: &Caller,
    request: &HttpRequest,
    name: &str,
    action: &str,
) -> Result<(Prefer, Vec<(String, String)>, Target), HttpError> {
    let prefer = prefer(request)?;
    let pairs = query_pairs(request);
    let target = target(
        state,
        caller,
        &profile(state, request)?,
        &pairs,
        name,
        action,
    )
    .await?;
    Ok((prefer, pairs, target))
}

pub fn is_service_key(caller: &Caller) -> bool {
    caller.role == crate::authz::engine::SERVICE_ROLE && caller.user.is_none()
}

/// 401 when only the anon key was sent (like PostgREST), 403 for a user.
pub(crate) fn refusal(caller: &Caller, reason: String, hint: String) -> HttpError {
    let api = if caller.user.is_none() {
        ApiError::new(ErrorCode::LoginRequired)
    } else {
        ApiError::new(ErrorCode::Forbidden).with_message("Your policies do not allow this.")
    };
    api.with_details(reason).with_hint(hint).into()
}

/// The policy decision for `action` on `object` with the columns the request
/// touches; a refusal says which columns would do, if fewer would.
pub fn decide(
    state: &AppState,
    caller: &Caller,
    object: &str,
    action: &str,
    columns: &[String],
) -> Result<Decision, HttpError> {
    let subject = subject_of(state, caller);
    let decision = state
        .authz()
        .authorize_columns(&subject, object, action, columns);
    if decision.allowed {
        return Ok(decision);
    }
    let broader = state.authz().authorize(&subject, object, action);
    let hint = match (broader.allowed, &broader.columns) {
        (true, Some(allowed)) => format!("You may {action} these columns: {}.", allowed.join(", ")),
        _ => "An admin can see why with POST /admin/v1/policies/explain.".into(),
    };
    Err(refusal(caller, decision.reason, hint))
}

/// Reads of embedded tables and junctions are decided like the table itself.
pub struct Embedding<'a> {
    pub state: &'a AppState,
    pub caller: &'a Caller,
}

impl Access for Embedding<'_> {
    type Error = HttpError;
    fn select(&self, table: &Table, columns: &[String]) -> Result<Option<Expr>, HttpError> {
        let object = format!("table:{}.{}", table.schema, table.name);
        decide(self.state, self.caller, &object, "select", columns).map(|d| d.condition)
    }
    fn execute(&self, schema: &str, function: &str) -> Result<(), HttpError> {
        rpc::decide(self.state, self.caller, schema, function)
    }
}

/// The values policy conditions read: `{auth.uid}`, `{auth.role}`, `{auth.claims.…}`.
pub fn variables<'a>(caller: &'a Caller, uid: &'a Option<String>) -> Variables<'a> {
    Variables {
        uid: uid.as_deref(),
        role: &caller.role,
        claims: &caller.claims,
    }
}

pub fn uid_of(caller: &Caller) -> Option<String> {
    caller.user.map(|(user, _)| user.to_string())
}

/// Errors PostgreSQL raises for the caller's input or privileges, with the
/// constraint or column named.
pub fn query_failed(error: tokio_postgres::Error, role: &str, relation: &str) -> HttpError {
    let Some(db) = error.as_db_error() else {
        return HttpError::from(error);
    };
    let code = db.code().code();
    let message = db.message().to_owned();
    let named = |api: ApiError| -> ApiError {
        let mut details = message.clone();
        if let Some(constraint) = db.constraint() {
            details = format!("{details} (constraint {constraint})");
        } else if let Some(column) = db.column() {
            details = format!("{details} (column {column})");
        }
        api.with_details(details)
    };
    let api = match code {
        // PostgreSQL's own row-level security refused a written row.
        "42501" if message.contains("row-level security") => {
            named(ApiError::new(ErrorCode::RowViolatesPolicy))
        }
        "42501" => ApiError::new(ErrorCode::Forbidden)
            .with_details(format!(
                "the database role {role} lacks a privilege on {relation}: {message}"
            ))
            .with_hint(format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON {relation} TO {role}; and USAGE on its sequences (the ones it needs)"
            )),
        // A new row broke the caller's policy (auth.check_policy, before
        // any unique index was consulted): Basalt's refusal, not PostgreSQL's.
        "BA001" => {
            return ApiError::new(ErrorCode::RowViolatesPolicy)
                .with_details(message)
                .into()
        }
        "23502" => named(ApiError::new(ErrorCode::NotNullViolation)),
        "23514" => named(ApiError::new(ErrorCode::CheckViolation)),
        _ if code.starts_with("23") => named(ApiError::new(ErrorCode::ConstraintViolation)),
        _ if code.starts_with("22") => ApiError::new(ErrorCode::InvalidQuery)
            .with_details(message.clone())
            .with_hint("A value does not fit its column's type."),
        // The operator does not apply to the column's type, an unknown type
        // in a cast, a malformed search query: the caller's input.
        _ if code.starts_with("42") => ApiError::new(ErrorCode::InvalidQuery)
            .with_details(message.clone())
            .with_hint("Use an operator, cast and value that suit the column's type."),
        // An upsert whose rows repeat a conflict key; a statement too
        // complex or too large (program limits: 54001 stack depth, 54011
        // too many columns, 54023 too many arguments).
        _ if code == "21000" || code.starts_with("54") => ApiError::new(ErrorCode::InvalidQuery)
            .with_details(message.clone())
            .with_hint("Send each key once per request, and simpler filters."),
        // Cancelled: the request's time ran out.
        "57014" => ApiError::new(ErrorCode::RequestTimeout).with_details(message.clone()),
        // Serialization failure or deadlock: worth a retry.
        "40001" | "40P01" => ApiError::new(ErrorCode::DatabaseUnavailable)
            .with_details(message.clone())
            .with_hint("A concurrent transaction conflicted with this one; retry."),
        "25006" | "0A000" => ApiError::new(ErrorCode::InvalidRequest)
            .with_details(message.clone())
            .with_hint("A function that writes must be declared VOLATILE and called with POST."),
        // A function raised an exception (RAISE in plpgsql).
        "P0001" => ApiError::new(ErrorCode::InvalidRequest).with_details(message.clone()),
        _ => return HttpError::from(error),
    };
    // Where PostgREST would forward PostgreSQL's own error, so does the
    // upstream body (with Basalt's hint when PostgreSQL gave none).
    let postgres = PostgresError {
        code: code.to_owned(),
        message: message.clone(),
        detail: db.detail().map(str::to_owned),
        hint: db.hint().map(str::to_owned).or_else(|| api.hint.clone()),
    };
    let retry = matches!(code, "40001" | "40P01");
    let error = HttpError::from(api.with_postgres(postgres));
    if retry {
        error.retry_after(1)
    } else {
        error
    }
}

impl crate::state::AppState {
    /// How many data requests each caller has running.
    pub fn fairness(&self) -> &std::sync::Arc<fairness::Fairness> {
        self.services.get()
    }

    /// The exposed schemas as the data API sees them (reloaded on DDL).
    pub fn schema(&self) -> &std::sync::Arc<cache::SchemaCache> {
        self.services.get()
    }
}

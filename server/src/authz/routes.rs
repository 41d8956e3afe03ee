//! The authorization admin API under `/admin/v1/`: roles and their
//! inheritance, user role assignments, policies, and the explainer. Open to
//! the service_role key and to users whom a policy allows `admin:authz`
//! (`read` for listing and explaining, `write` for changes). Every change is
//! audited, applied to this replica at once and announced to the others.

use super::engine::Subject;
use super::{Admin, AuthzRead, AuthzWrite};
use crate::audit::{self, Actor};
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
    Subject {
        role: caller.role.clone(),
        user_id: caller.user.map(|(user, _)| user),
        claim_roles: claim_roles(state, &caller.claims["app_metadata"]),
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
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name: use a-z, 0-9 and _, starting with a letter, at most 63 characters",
        ))
    }
}

/// Audits the change, commits it, makes this replica use it at once and
/// tells the others.
async fn commit_change(
    state: &AppState,
    transaction: deadpool_postgres::Transaction<'_>,
    caller: &Caller,
    request: &HttpRequest,
    event: &str,
    details: Value,
) -> Result<(), HttpError> {
    let actor = Actor {
        id: caller.user.map(|(user, _)| user),
        role: &caller.role,
        ip: request_ip(request, &state.trusted_proxies),
    };
    audit::audit(&transaction, event, actor, None, details).await?;
    transaction
        .execute("SELECT pg_notify('basalt_policies', '')", &[])
        .await?;
    transaction.commit().await?;
    // The change is saved; if this reload fails, the NOTIFY makes the
    // listener of every replica, this one included, load it again.
    if let Err(error) = state.authz().reload(&state.pool).await {
        tracing::error!("cannot reload policies: {error:#}");
    }
    Ok(())
}

/// A policy as JSON, built by PostgreSQL from `basalt.policies`.
const POLICY_JSON: &str =
    "jsonb_build_object('id', id, 'subject', subject, 'object', object, 'action', action,
    'condition', condition, 'columns', columns, 'description', description, 'source', source,
    'created_at', created_at)";

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

async fn list_roles(_: Admin<AuthzRead>, state: Data<AppState>) -> Result<HttpResponse, HttpError> {
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT jsonb_build_object('name', r.name, 'description', r.description, 'source', r.source,
                    'parents', coalesce((SELECT jsonb_agg(p.parent ORDER BY p.parent) FROM basalt.role_parents p WHERE p.role = r.name), '[]'))
             FROM basalt.roles r ORDER BY r.name",
            &[],
        )
        .await
        ?;
    let roles: Vec<Value> = rows.iter().map(|row| row.get(0)).collect();
    Ok(HttpResponse::Ok().json(json!({ "roles": roles })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    parents: Vec<String>,
}

async fn create_role(
    admin: Admin<AuthzWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    body: Json<RoleBody>,
) -> Result<HttpResponse, HttpError> {
    let caller = admin.caller;
    valid_role_name(&body.name)?;
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    transaction
        .execute(
            "INSERT INTO basalt.roles (name, description) VALUES ($1, $2)",
            &[&body.name, &body.description],
        )
        .await
        .map_err(|e| taken_or_failed(e, &format!("role {}", body.name)))?;
    for parent in &body.parents {
        link_parent(&transaction, &body.name, parent).await?;
    }
    commit_change(
        &state,
        transaction,
        &caller,
        &request,
        "role_created",
        json!({"role": body.name, "parents": body.parents}),
    )
    .await?;
    Ok(HttpResponse::Created()
        .json(json!({"name": body.name, "description": body.description, "parents": body.parents})))
}

/// Adds `role → parent`, refusing cycles.
async fn link_parent(
    client: &impl GenericClient,
    role: &str,
    parent: &str,
) -> Result<(), HttpError> {
    if parent == super::engine::SERVICE_ROLE {
        return Err(invalid(
            "parent: no role can inherit the service_role's bypass",
        ));
    }
    let source: Option<String> = client
        .query_opt("SELECT source FROM basalt.roles WHERE name = $1", &[&role])
        .await?
        .map(|row| row.get(0));
    not_declared(source.as_deref().unwrap_or("api"), &format!("role {role}"))?;
    let cycle: bool = client
        .query_one(
            "WITH RECURSIVE up(name) AS (SELECT $1::text UNION SELECT p.parent FROM basalt.role_parents p JOIN up ON p.role = up.name)
             SELECT EXISTS (SELECT 1 FROM up WHERE name = $2)",
            &[&parent, &role],
        )
        .await
        ?
        .get(0);
    if cycle || role == parent {
        return Err(invalid(format!(
            "parent: {role} cannot inherit from {parent}, which inherits from {role}"
        )));
    }
    client
        .execute(
            "INSERT INTO basalt.role_parents (role, parent) VALUES ($1, $2)",
            &[&role, &parent],
        )
        .await
        .map_err(|e| taken_or_failed(e, &format!("{role} → {parent}")))?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleUpdate {
    description: String,
}

/// Changes a role's description (its name is its identity: create another).
async fn update_role(
    admin: Admin<AuthzWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    body: Json<RoleUpdate>,
) -> Result<HttpResponse, HttpError> {
    let caller = admin.caller;
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let source: String = transaction
        .query_opt(
            "SELECT source FROM basalt.roles WHERE name = $1 FOR UPDATE",
            &[&path.as_str()],
        )
        .await?
        .ok_or_else(|| HttpError::new(ErrorCode::RoleNotFound))?
        .get(0);
    if source == "builtin" {
        return Err(invalid(
            "name: anon, authenticated and service_role are built in",
        ));
    }
    not_declared(&source, &format!("role {}", path.as_str()))?;
    transaction
        .execute(
            "UPDATE basalt.roles SET description = $2 WHERE name = $1",
            &[&path.as_str(), &body.description],
        )
        .await?;
    let details = json!({"role": path.as_str(), "description": body.description});
    commit_change(
        &state,
        transaction,
        &caller,
        &request,
        "role_updated",
        details.clone(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(details))
}

async fn delete_role(
    admin: Admin<AuthzWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let caller = admin.caller;
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let source: Option<String> = transaction
        .query_opt(
            "SELECT source FROM basalt.roles WHERE name = $1",
            &[&path.as_str()],
        )
        .await?
        .map(|row| row.get(0));
    match source.as_deref() {
        None => return Err(ErrorCode::RoleNotFound.into()),
        Some("builtin") => {
            return Err(invalid(
                "name: anon, authenticated and service_role are built in",
            ))
        }
        Some(source) => not_declared(source, &format!("role {}", path.as_str()))?,
    }
    transaction
        .execute(
            "DELETE FROM basalt.policies WHERE subject = $1",
            &[&path.as_str()],
        )
        .await?;
    transaction
        .execute(
            "DELETE FROM basalt.roles WHERE name = $1",
            &[&path.as_str()],
        )
        .await?;
    commit_change(
        &state,
        transaction,
        &caller,
        &request,
        "role_deleted",
        json!({"role": path.as_str()}),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParentBody {
    parent: String,
}

async fn add_parent(
    admin: Admin<AuthzWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    body: Json<ParentBody>,
) -> Result<HttpResponse, HttpError> {
    let caller = admin.caller;
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    link_parent(&transaction, &path, &body.parent).await?;
    commit_change(
        &state,
        transaction,
        &caller,
        &request,
        "role_parent_added",
        json!({"role": path.as_str(), "parent": body.parent}),
    )
    .await?;
    Ok(HttpResponse::Created().json(json!({"role": path.as_str(), "parent": body.parent})))
}

async fn remove_parent(
    admin: Admin<AuthzWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<(String, String)>,
) -> Result<HttpResponse, HttpError> {
    let caller = admin.caller;
    let (role, parent) = path.into_inner();
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let source: Option<String> = transaction
        .query_opt(
            "SELECT source FROM basalt.role_parents WHERE role = $1 AND parent = $2",
            &[&role, &parent],
        )
        .await?
        .map(|row| row.get(0));
    let Some(source) = source else {
        return Err(ApiError::new(ErrorCode::RoleNotFound)
            .with_details(format!("{role} does not inherit from {parent}"))
            .into());
    };
    not_declared(&source, &format!("{role} → {parent}"))?;
    transaction
        .execute(
            "DELETE FROM basalt.role_parents WHERE role = $1 AND parent = $2",
            &[&role, &parent],
        )
        .await?;
    commit_change(
        &state,
        transaction,
        &caller,
        &request,
        "role_parent_removed",
        json!({"role": role, "parent": parent}),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

fn user_id(text: &str) -> Result<Uuid, HttpError> {
    text.parse().map_err(|_| invalid("id: not a UUID"))
}

async fn user_roles(
    _: Admin<AuthzRead>,
    state: Data<AppState>,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let id = user_id(&path)?;
    let client = state.pool.get().await?;
    let roles: Vec<String> = client
        .query(
            "SELECT role FROM basalt.user_roles WHERE user_id = $1 ORDER BY role",
            &[&id],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"user_id": id, "roles": roles})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    role: String,
}

async fn assign_role(
    admin: Admin<AuthzWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    body: Json<AssignBody>,
) -> Result<HttpResponse, HttpError> {
    let caller = admin.caller;
    let id = user_id(&path)?;
    if body.role == engine_service_role() {
        return Err(invalid(
            "role: service_role is the server key's role and cannot be given to a user",
        ));
    }
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    if user_record(&transaction, id).await?.is_none() {
        return Err(ErrorCode::UserNotFound.into());
    }
    transaction
        .execute(
            "INSERT INTO basalt.user_roles (user_id, role) VALUES ($1, $2)",
            &[&id, &body.role],
        )
        .await
        .map_err(|e| taken_or_failed(e, &format!("role {}", body.role)))?;
    commit_change(
        &state,
        transaction,
        &caller,
        &request,
        "user_role_added",
        json!({"user_id": id, "role": body.role}),
    )
    .await?;
    Ok(HttpResponse::Created().json(json!({"user_id": id, "role": body.role})))
}

fn engine_service_role() -> &'static str {
    super::engine::SERVICE_ROLE
}

async fn unassign_role(
    admin: Admin<AuthzWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<(String, String)>,
) -> Result<HttpResponse, HttpError> {
    let caller = admin.caller;
    let (id, role) = path.into_inner();
    let id = user_id(&id)?;
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let removed = transaction
        .execute(
            "DELETE FROM basalt.user_roles WHERE user_id = $1 AND role = $2",
            &[&id, &role],
        )
        .await?;
    if removed == 0 {
        return Err(ApiError::new(ErrorCode::RoleNotFound)
            .with_details(format!("the user does not have role {role}"))
            .into());
    }
    commit_change(
        &state,
        transaction,
        &caller,
        &request,
        "user_role_removed",
        json!({"user_id": id, "role": role}),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn list_policies(
    _: Admin<AuthzRead>,
    state: Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let client = state.pool.get().await?;
    let rows = client
        .query(
            &format!("SELECT {POLICY_JSON} FROM basalt.policies ORDER BY created_at, id"),
            &[],
        )
        .await?;
    let policies: Vec<Value> = rows.iter().map(|row| row.get(0)).collect();
    Ok(HttpResponse::Ok().json(json!({ "policies": policies })))
}

async fn get_policy(
    _: Admin<AuthzRead>,
    state: Data<AppState>,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let id: Uuid = path.parse().map_err(|_| invalid("id: not a UUID"))?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {POLICY_JSON} FROM basalt.policies WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or_else(|| HttpError::new(ErrorCode::PolicyNotFound))?;
    Ok(HttpResponse::Ok().json(row.get::<_, Value>(0)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    subject: String,
    object: String,
    action: String,
    condition: Option<String>,
    columns: Option<Vec<String>>,
    #[serde(default)]
    description: String,
}

/// When the policy names one existing table, its condition must use that
/// table's columns (a typo would otherwise deny every row, silently).
async fn check_condition_columns(
    client: &impl GenericClient,
    body: &PolicyBody,
) -> Result<(), HttpError> {
    let (Some(condition), Some(columns)) = (&body.condition, catalog(client, &body.object).await?)
    else {
        return Ok(());
    };
    let parsed = grammar::parse_condition(condition)
        .map_err(|e| invalid(format!("condition: {}", e.message)))?;
    let nobody = sql::Caller {
        uid: None,
        role: "anon",
        claims: &Value::Null,
    };
    sql::to_sql(&parsed, &columns, &nobody, &mut Vec::new())
        .map(|_| ())
        .map_err(|e| invalid(format!("condition: {}", e.message)))
}

fn validate_policy(body: &PolicyBody) -> Result<(), HttpError> {
    match policy::policy_problem(
        &body.subject,
        &body.object,
        &body.action,
        body.condition.as_deref(),
        body.columns.as_deref(),
    ) {
        None => Ok(()),
        Some((field, problem)) => Err(invalid(format!("{field}: {problem}"))),
    }
}

/// A role subject must exist (a `user:<uuid>` subject may name any user).
async fn known_subject(client: &impl GenericClient, subject: &str) -> Result<(), HttpError> {
    if subject.starts_with("user:") {
        return Ok(());
    }
    let known: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM basalt.roles WHERE name = $1)",
            &[&subject],
        )
        .await?
        .get(0);
    if known {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::RoleNotFound)
            .with_details(format!("subject: no role {subject}"))
            .with_hint("Create it with POST /admin/v1/roles first.")
            .into())
    }
}

/// Refuses changes to what the config file declares.
fn not_declared(source: &str, what: &str) -> Result<(), HttpError> {
    if source == "config" {
        Err(ApiError::new(ErrorCode::DeclaredInConfig)
            .with_details(what.to_owned())
            .into())
    } else {
        Ok(())
    }
}

async fn create_policy(
    admin: Admin<AuthzWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    body: Json<PolicyBody>,
) -> Result<HttpResponse, HttpError> {
    let caller = admin.caller;
    validate_policy(&body)?;
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    known_subject(&transaction, &body.subject).await?;
    check_condition_columns(&transaction, &body).await?;
    let row = transaction
        .query_one(
            &format!(
                "INSERT INTO basalt.policies (subject, object, action, condition, columns, description)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {POLICY_JSON}"
            ),
            &[&body.subject, &body.object, &body.action, &body.condition, &body.columns, &body.description],
        )
        .await
        ?;
    let policy: Value = row.get(0);
    commit_change(
        &state,
        transaction,
        &caller,
        &request,
        "policy_created",
        policy.clone(),
    )
    .await?;
    Ok(HttpResponse::Created().json(policy))
}

/// Replaces a policy's fields (the id stays).
async fn update_policy(
    admin: Admin<AuthzWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    body: Json<PolicyBody>,
) -> Result<HttpResponse, HttpError> {
    let caller = admin.caller;
    let id: Uuid = path.parse().map_err(|_| invalid("id: not a UUID"))?;
    validate_policy(&body)?;
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let source: String = transaction
        .query_opt(
            "SELECT source FROM basalt.policies WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .ok_or_else(|| HttpError::new(ErrorCode::PolicyNotFound))?
        .get(0);
    not_declared(&source, &format!("policy {id}"))?;
    known_subject(&transaction, &body.subject).await?;
    check_condition_columns(&transaction, &body).await?;
    let row = transaction
        .query_one(
            &format!(
                "UPDATE basalt.policies SET subject = $2, object = $3, action = $4, condition = $5, columns = $6,
                        description = $7
                 WHERE id = $1 RETURNING {POLICY_JSON}"
            ),
            &[&id, &body.subject, &body.object, &body.action, &body.condition, &body.columns, &body.description],
        )
        .await
        ?;
    let policy: Value = row.get(0);
    commit_change(
        &state,
        transaction,
        &caller,
        &request,
        "policy_updated",
        policy.clone(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(policy))
}

async fn delete_policy(
    admin: Admin<AuthzWrite>,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let caller = admin.caller;
    let id: Uuid = path.parse().map_err(|_| invalid("id: not a UUID"))?;
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let source: String = transaction
        .query_opt("SELECT source FROM basalt.policies WHERE id = $1", &[&id])
        .await?
        .ok_or_else(|| HttpError::new(ErrorCode::PolicyNotFound))?
        .get(0);
    not_declared(&source, &format!("policy {id}"))?;
    transaction
        .execute("DELETE FROM basalt.policies WHERE id = $1", &[&id])
        .await?;
    commit_change(
        &state,
        transaction,
        &caller,
        &request,
        "policy_deleted",
        json!({"id": id}),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainBody {
    subject: String,
    object: String,
    action: String,
    row: Option<Value>,
    /// The columns a request would use: only policies granting all of them count.
    columns: Option<Vec<String>>,
}

/// Columns of a table from the catalog, for rendering a condition's SQL.
struct Catalog(Vec<(String, String)>);

impl Columns for Catalog {
    fn resolve(&self, name: &str, _params: &mut Vec<Param>) -> Result<Column, FilterError> {
        self.0
            .iter()
            .find(|(column, _)| column == name)
            .map(|(column, ty)| Column {
                sql: format!("\"{}\"", column.replace('"', "\"\"")),
                type_name: ty.clone(),
            })
            .ok_or_else(|| FilterError::new(format!("the table has no column `{name}`")))
    }
}

async fn catalog(client: &impl GenericClient, object: &str) -> Result<Option<Catalog>, HttpError> {
    let Some(table) = object.strip_prefix("table:").filter(|t| !t.contains('*')) else {
        return Ok(None);
    };
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&schema, &name],
        )
        .await
        ?;
    Ok((!rows.is_empty())
        .then(|| Catalog(rows.iter().map(|row| (row.get(0), row.get(1))).collect())))
}

/// Answers who may do what, which policies decided, the row condition as
/// written and as SQL, and — given a row — whether that row is allowed.
async fn explain(
    _: Admin<AuthzRead>,
    state: Data<AppState>,
    body: Json<ExplainBody>,
) -> Result<HttpResponse, HttpError> {
    let client = state.pool.get().await?;
    let (subject, claims) = match body.subject.strip_prefix("user:") {
        Some(id) => {
            let id: Uuid = id.parse().map_err(|_| invalid("subject: user:<uuid>"))?;
            let user = user_record(&client, id)
                .await?
                .ok_or_else(|| HttpError::new(ErrorCode::UserNotFound))?;
            let claims = json!({
                "sub": id, "role": user["role"], "email": user["email"],
                "app_metadata": user["app_metadata"], "user_metadata": user["user_metadata"],
            });
            let subject = Subject {
                role: user["role"].as_str().unwrap_or("authenticated").to_owned(),
                user_id: Some(id),
                claim_roles: claim_roles(&state, &user["app_metadata"]),
            };
            (subject, claims)
        }
        None => {
            valid_role_name(&body.subject)
                .map_err(|_| invalid("subject: a role name or user:<uuid>"))?;
            let subject = Subject {
                role: body.subject.clone(),
                ..Subject::default()
            };
            (subject, json!({"role": body.subject}))
        }
    };
    let decision = match &body.columns {
        Some(columns) => {
            state
                .authz()
                .authorize_columns(&subject, &body.object, &body.action, columns)
        }
        None => state
            .authz()
            .authorize(&subject, &body.object, &body.action),
    };
    let uid = subject.user_id.map(|id| id.to_string());
    let variables = sql::Caller {
        uid: uid.as_deref(),
        role: &subject.role,
        claims: &claims,
    };
    // The row condition that applies: none when some policy allows every row.
    let conditions: Vec<&str> = match decision.condition {
        Some(_) => decision
            .policies
            .iter()
            .filter_map(|p| p.condition.as_deref())
            .collect(),
        None => Vec::new(),
    };
    let sql = match (&decision.condition, catalog(&client, &body.object).await?) {
        (Some(condition), Some(columns)) => {
            let mut params = Vec::new();
            match sql::to_sql(condition, &columns, &variables, &mut params) {
                Ok(text) => {
                    json!({"where": text, "params": params.iter().map(param_json).collect::<Vec<_>>()})
                }
                Err(error) => json!({"error": error.message}),
            }
        }
        _ => Value::Null,
    };
    let row_allowed = match (&body.row, decision.allowed, &decision.condition) {
        (None, _, _) => Value::Null,
        (Some(_), false, _) => Value::Bool(false),
        (Some(_), true, None) => Value::Bool(true),
        (Some(row), true, Some(condition)) => grammar::eval::matches(condition, row, &variables)
            .map(Value::Bool)
            .unwrap_or(Value::Null),
    };
    Ok(HttpResponse::Ok().json(json!({
        "allowed": decision.allowed,
        "reason": decision.reason,
        "subjects": decision.subjects,
        "policy": decision.policies.first().map(|p| p.json()),
        "policies": decision.policies.iter().map(|p| p.json()).collect::<Vec<_>>(),
        "condition": if conditions.is_empty() { Value::Null } else { Value::String(conditions.join(" | ")) },
        "sql": sql,
        "columns": decision.columns,
        "row_allowed": row_allowed,
    })))
}

fn param_json(param: &sql::Param) -> Value {
    match param {
        sql::Param::Text(text) => json!(text),
        sql::Param::TextArray(items) => json!(items),
    }
}

/// What the explainer and role assignments read of a user (their role,
/// address and metadata), from auth's table.
async fn user_record(
    client: &impl deadpool_postgres::GenericClient,
    id: Uuid,
) -> Result<Option<Value>, HttpError> {
    Ok(client
        .query_opt(
            "SELECT jsonb_build_object('role', role, 'email', email,
                    'app_metadata', raw_app_meta_data, 'user_metadata', raw_user_meta_data)
             FROM auth.users WHERE id = $1",
            &[&id],
        )
        .await?
        .map(|row| row.get(0)))
}

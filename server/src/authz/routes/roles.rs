//! Roles and their parents (the role graph).

use super::*;

pub(super) async fn list_roles(
    _: Admin<AuthzRead>,
    state: Data<AppState>,
) -> Result<HttpResponse, HttpError> {
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
pub(super) struct RoleBody {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    parents: Vec<String>,
}

pub(super) async fn create_role(
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
pub(super) async fn link_parent(
    client: &impl GenericClient,
    role: &str,
    parent: &str,
) -> Result<(), HttpError> {
    if parent == crate::authz::engine::SERVICE_ROLE {
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
pub(super) struct RoleUpdate {
    description: String,
}

/// Changes a role's description (its name is its identity: create another).
pub(super) async fn update_role(
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

pub(super) async fn delete_role(
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
pub(super) struct ParentBody {
    parent: String,
}

pub(super) async fn add_parent(
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

pub(super) async fn remove_parent(
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

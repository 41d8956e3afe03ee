//! Roles and their parents (the role graph).

use super::*;

pub(super) async fn list_roles(
    _: Admin<AuthzRead>,
    state: Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let roles = store::roles(&state.pool.get().await?).await?;
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
    change: Change,
    body: Json<RoleBody>,
) -> Result<HttpResponse, HttpError> {
    valid_role_name(&body.name)?;
    let mut client = change.client().await?;
    let transaction = client.transaction().await?;
    store::insert_role(&transaction, &body.name, &body.description).await?;
    for parent in &body.parents {
        link_parent(&transaction, &body.name, parent).await?;
    }
    change
        .commit(
            transaction,
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
    let source = store::role_source(client, role).await?;
    not_declared(source.as_deref().unwrap_or("api"), &format!("role {role}"))?;
    if role == parent || store::inherits(client, parent, role).await? {
        return Err(invalid(format!(
            "parent: {role} cannot inherit from {parent}, which inherits from {role}"
        )));
    }
    store::insert_parent(client, role, parent).await
}

/// A role an admin may change or delete: it exists, is not built in and
/// is not declared in the config file.
async fn changeable_role(client: &impl GenericClient, name: &str) -> Result<(), HttpError> {
    match store::role_source(client, name).await?.as_deref() {
        None => Err(ErrorCode::RoleNotFound.into()),
        Some("builtin") => Err(invalid(
            "name: anon, authenticated and service_role are built in",
        )),
        Some(source) => not_declared(source, &format!("role {name}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RoleUpdate {
    description: String,
}

/// Changes a role's description (its name is its identity: create another).
pub(super) async fn update_role(
    change: Change,
    path: Path<String>,
    body: Json<RoleUpdate>,
) -> Result<HttpResponse, HttpError> {
    let mut client = change.client().await?;
    let transaction = client.transaction().await?;
    changeable_role(&transaction, &path).await?;
    store::describe_role(&transaction, &path, &body.description).await?;
    let details = json!({"role": path.as_str(), "description": body.description});
    change
        .commit(transaction, "role_updated", details.clone())
        .await?;
    Ok(HttpResponse::Ok().json(details))
}

pub(super) async fn delete_role(
    change: Change,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let mut client = change.client().await?;
    let transaction = client.transaction().await?;
    changeable_role(&transaction, &path).await?;
    store::delete_role(&transaction, &path).await?;
    change
        .commit(transaction, "role_deleted", json!({"role": path.as_str()}))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ParentBody {
    parent: String,
}

pub(super) async fn add_parent(
    change: Change,
    path: Path<String>,
    body: Json<ParentBody>,
) -> Result<HttpResponse, HttpError> {
    let mut client = change.client().await?;
    let transaction = client.transaction().await?;
    link_parent(&transaction, &path, &body.parent).await?;
    change
        .commit(
            transaction,
            "role_parent_added",
            json!({"role": path.as_str(), "parent": body.parent}),
        )
        .await?;
    Ok(HttpResponse::Created().json(json!({"role": path.as_str(), "parent": body.parent})))
}

pub(super) async fn remove_parent(
    change: Change,
    path: Path<(String, String)>,
) -> Result<HttpResponse, HttpError> {
    let (role, parent) = path.into_inner();
    let mut client = change.client().await?;
    let transaction = client.transaction().await?;
    let Some(source) = store::parent_source(&transaction, &role, &parent).await? else {
        return Err(ApiError::new(ErrorCode::RoleNotFound)
            .with_details(format!("{role} does not inherit from {parent}"))
            .into());
    };
    not_declared(&source, &format!("{role} → {parent}"))?;
    store::delete_parent(&transaction, &role, &parent).await?;
    change
        .commit(
            transaction,
            "role_parent_removed",
            json!({"role": role, "parent": parent}),
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

//! Users' roles.

use super::*;

pub(super) async fn user_roles(
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
pub(super) struct AssignBody {
    role: String,
}

pub(super) async fn assign_role(
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

pub(super) fn engine_service_role() -> &'static str {
    crate::authz::engine::SERVICE_ROLE
}

pub(super) async fn unassign_role(
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

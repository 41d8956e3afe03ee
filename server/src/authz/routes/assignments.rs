//! Users' roles.

use super::*;

pub(super) async fn user_roles(
    _: Admin<AuthzRead>,
    state: Data<AppState>,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let id = user_id(&path)?;
    let roles = store::user_roles(&state.pool.get().await?, id).await?;
    Ok(HttpResponse::Ok().json(json!({"user_id": id, "roles": roles})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AssignBody {
    role: String,
}

pub(super) async fn assign_role(
    change: Change,
    path: Path<String>,
    body: Json<AssignBody>,
) -> Result<HttpResponse, HttpError> {
    let id = user_id(&path)?;
    if body.role == engine_service_role() {
        return Err(invalid(
            "role: service_role is the server key's role and cannot be given to a user",
        ));
    }
    let mut client = change.client().await?;
    let transaction = client.transaction().await?;
    if store::user_record(&transaction, id).await?.is_none() {
        return Err(ErrorCode::UserNotFound.into());
    }
    store::assign(&transaction, id, &body.role).await?;
    change
        .commit(
            transaction,
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
    change: Change,
    path: Path<(String, String)>,
) -> Result<HttpResponse, HttpError> {
    let (id, role) = path.into_inner();
    let id = user_id(&id)?;
    let mut client = change.client().await?;
    let transaction = client.transaction().await?;
    if !store::unassign(&transaction, id, &role).await? {
        return Err(ApiError::new(ErrorCode::RoleNotFound)
            .with_details(format!("the user does not have role {role}"))
            .into());
    }
    change
        .commit(
            transaction,
            "user_role_removed",
            json!({"user_id": id, "role": role}),
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

//! Policies: list, read, create, change, delete, with their validation.

use super::*;

pub(super) async fn list_policies(
    _: Admin<AuthzRead>,
    state: Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let policies = store::policies(&state.pool.get().await?).await?;
    Ok(HttpResponse::Ok().json(json!({ "policies": policies })))
}

pub(super) async fn get_policy(
    _: Admin<AuthzRead>,
    state: Data<AppState>,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let id: Uuid = path.parse().map_err(|_| invalid("id: not a UUID"))?;
    let policy = store::policy(&state.pool.get().await?, id)
        .await?
        .ok_or_else(|| HttpError::new(ErrorCode::PolicyNotFound))?;
    Ok(HttpResponse::Ok().json(policy))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyBody {
    pub(super) subject: String,
    pub(super) object: String,
    pub(super) action: String,
    pub(super) condition: Option<String>,
    pub(super) columns: Option<Vec<String>>,
    #[serde(default)]
    pub(super) description: String,
}

/// When the policy names one existing table, its condition must use that
/// table's columns (a typo would otherwise deny every row, silently).
pub(super) async fn check_condition_columns(
    client: &impl GenericClient,
    body: &PolicyBody,
) -> Result<(), HttpError> {
    let (Some(condition), Some(columns)) = (&body.condition, catalog(client, &body.object).await?)
    else {
        return Ok(());
    };
    let parsed =
        grammar::parse_condition(condition).map_err(|e| invalid(format!("condition: {e}")))?;
    let nobody = sql::Caller {
        uid: None,
        role: "anon",
        claims: &Value::Null,
    };
    sql::to_sql(&parsed, &columns, &nobody, &mut Vec::new())
        .map(|_| ())
        .map_err(|e| invalid(format!("condition: {e}")))
}

pub(super) fn validate_policy(body: &PolicyBody) -> Result<(), HttpError> {
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
pub(super) async fn known_subject(
    client: &impl GenericClient,
    subject: &str,
) -> Result<(), HttpError> {
    if subject.starts_with("user:") {
        return Ok(());
    }
    if store::role_exists(client, subject).await? {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::RoleNotFound)
            .with_details(format!("subject: no role {subject}"))
            .with_hint("Create it with POST /admin/v1/roles first.")
            .into())
    }
}

/// Refuses changes to what the config file declares.
pub(super) fn not_declared(source: &str, what: &str) -> Result<(), HttpError> {
    if source == "config" {
        Err(ApiError::new(ErrorCode::DeclaredInConfig)
            .with_details(what.to_owned())
            .into())
    } else {
        Ok(())
    }
}

/// A policy an admin may change or delete: it exists and is not declared
/// in the config file.
async fn changeable_policy(client: &impl GenericClient, id: Uuid) -> Result<(), HttpError> {
    let source = store::policy_source(client, id)
        .await?
        .ok_or_else(|| HttpError::new(ErrorCode::PolicyNotFound))?;
    not_declared(&source, &format!("policy {id}"))
}

pub(super) async fn create_policy(
    change: Change,
    body: Json<PolicyBody>,
) -> Result<HttpResponse, HttpError> {
    validate_policy(&body)?;
    let mut client = change.client().await?;
    let transaction = client.transaction().await?;
    known_subject(&transaction, &body.subject).await?;
    check_condition_columns(&transaction, &body).await?;
    let policy = store::insert_policy(&transaction, &body).await?;
    change
        .commit(transaction, "policy_created", policy.clone())
        .await?;
    Ok(HttpResponse::Created().json(policy))
}

/// Replaces a policy's fields (the id stays).
pub(super) async fn update_policy(
    change: Change,
    path: Path<String>,
    body: Json<PolicyBody>,
) -> Result<HttpResponse, HttpError> {
    let id: Uuid = path.parse().map_err(|_| invalid("id: not a UUID"))?;
    validate_policy(&body)?;
    let mut client = change.client().await?;
    let transaction = client.transaction().await?;
    changeable_policy(&transaction, id).await?;
    known_subject(&transaction, &body.subject).await?;
    check_condition_columns(&transaction, &body).await?;
    let policy = store::update_policy(&transaction, id, &body).await?;
    change
        .commit(transaction, "policy_updated", policy.clone())
        .await?;
    Ok(HttpResponse::Ok().json(policy))
}

pub(super) async fn delete_policy(
    change: Change,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let id: Uuid = path.parse().map_err(|_| invalid("id: not a UUID"))?;
    let mut client = change.client().await?;
    let transaction = client.transaction().await?;
    changeable_policy(&transaction, id).await?;
    store::delete_policy(&transaction, id).await?;
    change
        .commit(transaction, "policy_deleted", json!({"id": id}))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

//! Policies: list, read, create, change, delete, with their validation.

use super::*;

pub(super) async fn list_policies(
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

pub(super) async fn get_policy(
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
pub(super) struct PolicyBody {
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
pub(super) fn not_declared(source: &str, what: &str) -> Result<(), HttpError> {
    if source == "config" {
        Err(ApiError::new(ErrorCode::DeclaredInConfig)
            .with_details(what.to_owned())
            .into())
    } else {
        Ok(())
    }
}

pub(super) async fn create_policy(
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
pub(super) async fn update_policy(
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

pub(super) async fn delete_policy(
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

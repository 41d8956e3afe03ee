//! The explainer: why a subject may or may not act on an object, and the SQL its row condition becomes.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExplainBody {
    subject: String,
    object: String,
    action: String,
    row: Option<Value>,
    /// The columns a request would use: only policies granting all of them count.
    columns: Option<Vec<String>>,
}

/// Columns of a table from the catalog, for rendering a condition's SQL.
pub(super) struct Catalog {
    table: String,
    columns: Vec<(String, String)>,
}

impl Columns for Catalog {
    fn resolve(&self, name: &str, _params: &mut Vec<Param>) -> Result<Column, FilterError> {
        self.columns
            .iter()
            .find(|(column, _)| column == name)
            .map(|(column, ty)| Column {
                sql: format!("\"{}\"", column.replace('"', "\"\"")),
                type_name: ty.clone(),
            })
            .ok_or_else(|| FilterError::UnknownColumn {
                table: self.table.clone(),
                column: name.into(),
                suggestion: None,
                columns: self.columns.iter().map(|(c, _)| c.clone()).collect(),
            })
    }
}

pub(super) async fn catalog(
    client: &impl GenericClient,
    object: &str,
) -> Result<Option<Catalog>, HttpError> {
    let Some(table) = object.strip_prefix("table:").filter(|t| !t.contains('*')) else {
        return Ok(None);
    };
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    let columns = store::table_columns(client, schema, name).await?;
    Ok((!columns.is_empty()).then(|| Catalog {
        table: name.to_owned(),
        columns,
    }))
}

/// Answers who may do what, which policies decided, the row condition as
/// written and as SQL, and — given a row — whether that row is allowed.
pub(super) async fn explain(
    _: Admin<AuthzRead>,
    state: Data<AppState>,
    body: Json<ExplainBody>,
) -> Result<HttpResponse, HttpError> {
    let client = state.pool.get().await?;
    let (subject, claims) = match body.subject.strip_prefix("user:") {
        Some(id) => {
            let id: Uuid = id.parse().map_err(|_| invalid("subject: user:<uuid>"))?;
            let user = store::user_record(&client, id)
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
                Err(error) => json!({"error": error.to_string()}),
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

pub(super) fn param_json(param: &sql::Param) -> Value {
    match param {
        sql::Param::Text(text) => json!(text),
        sql::Param::TextArray(items) => json!(items),
    }
}

//! The data API under `/rest/v1/`. For now, reads: `GET /rest/v1/<table>` with
//! `select`, filters, `order`, `limit` and `offset`. Every read is decided by
//! the policy engine (row condition compiled into the SQL, column lists
//! enforced) and runs in a read-only transaction as the caller's database
//! role with their JWT claims, so PostgreSQL's row-level security applies too.

use crate::auth::Caller;
use crate::authz::routes::subject_of;
use crate::db::{self, rls, CancelOnDrop};
use crate::http::error::HttpError;
use crate::http::resource;
use crate::state::AppState;
use actix_web::web::{self, Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::filter::sql::{Caller as Variables, Param};
use basalt_core::filter::FilterError;
use basalt_core::rest::{count_sql, parse_read, read_sql, Select, Table};
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(resource("/rest/v1/{table}").route(web::get().to(read)));
}

fn invalid_query(error: FilterError) -> HttpError {
    let mut api = ApiError::new(ErrorCode::InvalidQuery).with_details(error.message);
    if let Some(hint) = error.hint {
        api = api.with_hint(hint);
    }
    api.into()
}

/// The table from the catalog, or a 404 naming the closest table.
async fn load_table(
    client: &impl GenericClient,
    schema: &str,
    name: &str,
) -> Result<Table, HttpError> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
               AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[&schema, &name],
        )
        .await
        .map_err(db::failed)?;
    if !rows.is_empty() {
        return Ok(Table {
            schema: schema.to_owned(),
            name: name.to_owned(),
            columns: rows.iter().map(|row| (row.get(0), row.get(1))).collect(),
        });
    }
    let names: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p', 'f') ORDER BY 1",
            &[&schema],
        )
        .await
        .map_err(db::failed)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let close = basalt_core::config::suggestion(name, names.iter().map(String::as_str));
    Err(ApiError::new(ErrorCode::TableNotFound)
        .with_details(format!("{schema}.{name}"))
        .with_hint(match close {
            Some(close) => format!("Did you mean `{close}`?"),
            None => format!("The schema {schema} has: {}", names.join(", ")),
        })
        .into())
}

/// Errors PostgreSQL raises for the caller's input or privileges.
fn query_failed(error: tokio_postgres::Error, role: &str, table: &Table) -> HttpError {
    match error.as_db_error() {
        Some(db) if db.code().code() == "42501" => ApiError::new(ErrorCode::Forbidden)
            .with_details(format!(
                "the database role {role} may not read {}.{}: {}",
                table.schema,
                table.name,
                db.message()
            ))
            .with_hint(format!("GRANT SELECT ON {} TO {role};", table.qualified()))
            .into(),
        Some(db) if db.code().code().starts_with("22") => ApiError::new(ErrorCode::InvalidQuery)
            .with_details(db.message().to_owned())
            .with_hint("A filter value does not fit its column's type.")
            .into(),
        _ => db::failed(error),
    }
}

type Values = Vec<Box<dyn ToSql + Sync + Send>>;

/// Parameters as the driver takes them: text, or arrays of text.
fn boxed(params: Vec<Param>) -> Values {
    params
        .into_iter()
        .map(|param| -> Box<dyn ToSql + Sync + Send> {
            match param {
                Param::Text(text) => Box::new(text),
                Param::TextArray(items) => Box::new(items),
            }
        })
        .collect()
}

fn references(values: &Values) -> Vec<&(dyn ToSql + Sync)> {
    values
        .iter()
        .map(|v| v.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

fn wants_exact_count(request: &HttpRequest) -> bool {
    request
        .headers()
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|preference| preference.trim() == "count=exact")
}

fn wants_object(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/vnd.pgrst.object+json"))
}

async fn read(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(request.query_string().as_bytes())
            .into_owned()
            .collect();
    let query = parse_read(&pairs).map_err(invalid_query)?;
    let schema = &state.config.rest.schema;
    let mut client = state.pool.get().await.map_err(db::unavailable)?;
    let table = load_table(&client, schema, &path).await?;

    // The columns this read touches: what it selects (all for `*`), filters and orders by.
    let mut columns = query.named_columns();
    if query.select == Select::All {
        columns.extend(table.column_names());
        columns.sort();
        columns.dedup();
    }
    let object = format!("table:{schema}.{}", table.name);
    let bypass = caller.role == crate::authz::engine::SERVICE_ROLE && caller.user.is_none();
    let decision =
        state
            .authz
            .authorize_columns(&subject_of(&state, &caller), &object, "select", &columns);
    if !decision.allowed {
        // Like PostgREST: 401 when only the anon key was sent, 403 for a user.
        let code = if caller.user.is_none() {
            ErrorCode::LoginRequired
        } else {
            ErrorCode::Forbidden
        };
        // Would fewer columns do? Then say which.
        let broader = state
            .authz
            .authorize(&subject_of(&state, &caller), &object, "select");
        let hint = match (&broader.allowed, &broader.columns) {
            (true, Some(allowed)) => format!("You may read these columns: {}.", allowed.join(", ")),
            _ => "An admin can see why with POST /admin/v1/policies/explain.".into(),
        };
        return Err(ApiError::new(code)
            .with_details(decision.reason)
            .with_hint(hint)
            .into());
    }

    let uid = caller.user.map(|(user, _)| user.to_string());
    let variables = Variables {
        uid: uid.as_deref(),
        role: &caller.role,
        claims: &caller.claims,
    };
    let (sql, params) = read_sql(
        &table,
        &query,
        decision.condition.as_ref(),
        &variables,
        state.config.rest.max_rows,
    )
    .map_err(invalid_query)?;
    let values = boxed(params);

    let role = rls::database_role(&state.config.authz, caller.user.is_some()).to_owned();
    let mut cancel = CancelOnDrop::new(client.cancel_token(), state.tls.clone());
    let transaction = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(db::failed)?;
    if !bypass {
        rls::act_as(&transaction, &role, &caller.claims)
            .await
            .map_err(db::failed)?;
    }
    let row = transaction
        .query_one(&sql, &references(&values))
        .await
        .map_err(|e| query_failed(e, &role, &table))?;
    let (body, returned): (String, i64) = (row.get(0), row.get(1));
    let total = if wants_exact_count(&request) {
        let (sql, params) = count_sql(&table, &query, decision.condition.as_ref(), &variables)
            .map_err(invalid_query)?;
        let values = boxed(params);
        let count: i64 = transaction
            .query_one(&sql, &references(&values))
            .await
            .map_err(|e| query_failed(e, &role, &table))?
            .get(0);
        Some(count)
    } else {
        None
    };
    transaction.rollback().await.map_err(db::failed)?;
    cancel.disarm();

    let offset = query.offset.unwrap_or(0) as i64;
    let range = match (returned, total) {
        (0, Some(total)) => format!("*/{total}"),
        (0, None) => "*/*".to_owned(),
        (n, Some(total)) => format!("{offset}-{}/{total}", offset + n - 1),
        (n, None) => format!("{offset}-{}/*", offset + n - 1),
    };
    if wants_object(&request) {
        return match returned {
            1 => {
                let rows: serde_json::Value = serde_json::from_str(&body)
                    .map_err(|_| HttpError::new(ErrorCode::InternalError))?;
                Ok(HttpResponse::Ok()
                    .content_type("application/vnd.pgrst.object+json")
                    .insert_header(("content-range", range))
                    .json(&rows[0]))
            }
            0 => Err(ErrorCode::RowNotFound.into()),
            n => Err(ApiError::new(ErrorCode::NotSingleRow)
                .with_details(format!("{n} rows match"))
                .into()),
        };
    }
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("content-range", range))
        .body(body))
}

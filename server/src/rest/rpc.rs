//! `GET|POST /rest/v1/rpc/<function>`: calls a function of the exposed schema
//! with named arguments (the JSON body for POST, query parameters for GET),
//! decided as `execute` on `function:<schema>.<name>`. Stable and immutable
//! functions run in read-only transactions (and may be called with GET);
//! volatile ones only with POST. Functions returning rows of a table take
//! the same `select` (embedding included), filters, `order`, `limit` and
//! `offset` as a read of that table.

use super::idempotency::Idempotency;
use super::{query_pairs, refusal, Embedding, Reply, Step};
use crate::authz::routes::subject_of;
use crate::error::HttpError;
use crate::identity::Caller;
use crate::state::AppState;
use actix_web::http::{Method, StatusCode};
use actix_web::web::{Bytes, Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::filter::sql::Param;
use basalt_core::rest::QueryError;
use basalt_core::rest::{quote, read_columns, read_sql, Function, Schema, Source};
use serde_json::{Map, Value};
use std::sync::Arc;

/// A JSON value as the text PostgreSQL casts to the argument's type: arrays
/// become array literals unless the argument is json/jsonb.
fn argument_text(value: &Value, type_name: &str) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        Value::Array(items) if type_name.ends_with("[]") => {
            let elements: Vec<String> = items
                .iter()
                .map(|item| match argument_text(item, "") {
                    None => "NULL".to_owned(),
                    Some(text) => {
                        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
                    }
                })
                .collect();
            Some(format!("{{{}}}", elements.join(",")))
        }
        other => Some(other.to_string()),
    }
}

/// The function from the schema cache (reloading once on a miss).
async fn function_of(
    state: &AppState,
    profile: &str,
    name: &str,
    given: &[String],
) -> Result<(Arc<Schema>, Function), HttpError> {
    let schema =
        super::snapshot(state, profile, |schema| schema.functions.contains_key(name)).await;
    let function = schema.function(name, given)?.clone();
    Ok((schema, function))
}

/// A planned call: its statement, whether it may write, and whether it
/// returns nothing.
pub struct CallPlan {
    pub step: Step,
    pub read_only: bool,
    pub void: bool,
}

/// The reply from a call's row (the result as JSON text).
pub fn call_reply(void: bool, row: &tokio_postgres::Row) -> Reply {
    match row.get::<_, Option<String>>(0) {
        _ if void => Reply::new(StatusCode::NO_CONTENT),
        None => Reply::json(StatusCode::OK, "null".into()),
        Some(body) => Reply::json(StatusCode::OK, body),
    }
}

/// Decides and plans a call of `name` with `args`; `pairs` shape a result
/// of table rows.
pub async fn plan_call(
    state: &AppState,
    caller: &Caller,
    profile: &str,
    name: &str,
    args: &Map<String, Value>,
    pairs: &[(String, String)],
) -> Result<CallPlan, HttpError> {
    let object = format!("function:{profile}.{name}");
    let decision = state
        .authz()
        .authorize(&subject_of(state, caller), &object, "execute");
    if !decision.allowed {
        return Err(refusal(
            caller,
            decision.reason,
            "Grant `execute` on this function:<schema>.<name> object.".into(),
        ));
    }
    let given: Vec<String> = args.keys().cloned().collect();
    let (schema, function) = function_of(state, profile, name, &given).await?;
    let query = super::parse_query(caller, pairs)?;
    let mut params = Vec::new();
    let arguments = function
        .args
        .iter()
        .filter_map(|(arg, type_name)| {
            args.get(arg).map(|value| {
                params.push(Param::Text(argument_text(value, type_name)));
                format!("{} => ${}::text::{type_name}", quote(arg), params.len())
            })
        })
        .collect::<Vec<_>>()
        .join(", ");
    let call = format!("{}.{}({arguments})", quote(&schema.name), quote(name));
    let shaped = !query.filters.is_empty()
        || !query.order.is_empty()
        || query.limit.is_some()
        || query.offset.is_some()
        || !query.select.is_empty();
    let returns_table = function
        .returns_table
        .as_ref()
        .and_then(|name| schema.tables.get(name));
    let uid = super::uid_of(caller);
    let variables = super::variables(caller, &uid);
    let void = function.returns == "void";
    let relation = format!("function {}.{name}", schema.name);
    let sql = match returns_table {
        // Selected (not wrapped in a subquery the planner could drop), so
        // the function runs.
        _ if void => format!("SELECT ({call})::text"),
        // Rows of a table: read like the table itself (select with
        // embedding, filters, order, pages), from the call.
        Some(table) if function.returns_set => {
            let max_rows = state.config.rest.max_rows;
            let source = Source {
                schema: &schema,
                table,
                call: Some((call, params)),
                default_rows: state.config.rest.default_limit.min(max_rows),
                max_rows,
            };
            let access = Embedding { state, caller };
            // A SECURITY INVOKER function reads the table as the caller: the
            // table's select policy applies to its rows (and columns) as to
            // a GET. A SECURITY DEFINER one runs with its owner's rights by
            // design: the function's `execute` policy grants its rows.
            let condition = if function.security_definer {
                None
            } else {
                super::decide(
                    state,
                    caller,
                    &format!("table:{}.{}", schema.name, table.name),
                    "select",
                    &read_columns(&schema, table, &query),
                )?
                .condition
            };
            let (sql, read_params) =
                read_sql(source, &query, condition.as_ref(), &access, &variables)?.read;
            return Ok(CallPlan {
                step: Step::new((sql, read_params), &relation),
                read_only: function.read_only(),
                void: false,
            });
        }
        _ if shaped => {
            return Err(QueryError::NotRows {
                function: name.into(),
            }
            .into())
        }
        _ if function.returns_set => {
            format!("SELECT coalesce(json_agg(r), '[]'::json)::text FROM {call} AS r")
        }
        _ => format!("SELECT to_json({call})::text"),
    };
    Ok(CallPlan {
        step: Step::new((sql, params), &relation),
        read_only: function.read_only(),
        void,
    })
}

pub async fn call(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    body: Bytes,
) -> Result<HttpResponse, HttpError> {
    let name = path.into_inner();
    let mut pairs = query_pairs(&request);
    let post = request.method() == Method::POST;
    let mut args: Map<String, Value> = if post && !body.is_empty() {
        match serde_json::from_slice(&body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(QueryError::ArgumentsNotAnObject.into()),
            Err(error) => {
                return Err(ApiError::new(ErrorCode::InvalidJson)
                    .with_details(error.to_string())
                    .into())
            }
        }
    } else {
        Map::new()
    };
    // For GET, parameters naming an argument are arguments; the rest shape
    // the result. Decided first: only callers who may call the function make
    // the server look for it.
    let profile = super::profile(&state, &request)?;
    let decision = state.authz().authorize(
        &subject_of(&state, &caller),
        &format!("function:{profile}.{name}"),
        "execute",
    );
    if !decision.allowed {
        return Err(refusal(
            &caller,
            decision.reason,
            "Grant `execute` on this function:<schema>.<name> object.".into(),
        ));
    }
    if !post {
        let schema = super::snapshot(&state, &profile, |schema| {
            schema.functions.contains_key(&name)
        })
        .await;
        let names: Vec<String> = schema
            .functions
            .get(&name)
            .into_iter()
            .flatten()
            .flat_map(|f| f.args.iter().map(|(n, _)| n.clone()))
            .collect();
        pairs.retain(|(key, value)| {
            if names.contains(key) {
                args.insert(key.clone(), Value::String(value.clone()));
                false
            } else {
                true
            }
        });
    }
    let plan = plan_call(&state, &caller, &profile, &name, &args, &pairs).await?;
    if !plan.read_only && !post {
        return Err(ApiError::new(ErrorCode::MethodNotAllowed)
            .with_details(format!("`{name}` is volatile (it may write)"))
            .with_hint("call it with POST")
            .into());
    }
    let idempotency = match (post, plan.read_only) {
        (true, false) => Idempotency::of(&request, &state, &caller, &body)?,
        _ => None,
    };
    let void = plan.void;
    let respond = |rows: &[tokio_postgres::Row]| Ok(call_reply(void, &rows[0]));
    let reply = if plan.read_only {
        super::tx::read(&state, &caller, vec![plan.step], respond).await?
    } else {
        super::tx::write(
            &state,
            &caller,
            idempotency.as_ref(),
            vec![plan.step],
            respond,
        )
        .await?
    };
    Ok(reply.into_response())
}

//! `GET|POST /rest/v1/rpc/<function>`: calls a function of the exposed schema
//! with named arguments (the JSON body for POST, query parameters for GET),
//! decided as `execute` on `function:<schema>.<name>`. Stable and immutable
//! functions run in read-only transactions (and may be called with GET);
//! volatile ones only with POST. Functions returning rows of a table take
//! the same `select` (embedding included), filters, `order`, `limit` and
//! `offset` as a read of that table.

use super::idempotency::Idempotency;
use super::{query_pairs, refusal, Embedding, Prefer, Reply, Step};
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

/// A planned call: its statement (and, for rows of a table, the statement
/// counting them all, for `Prefer: count=`), whether it may write, and
/// whether it returns nothing.
pub struct CallPlan {
    pub step: Step,
    pub count: Option<Step>,
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
    decide(state, caller, profile, name)?;
    let given: Vec<String> = args.keys().cloned().collect();
    let (schema, function) = function_of(state, profile, name, &given).await?;
    let query = super::parse_query(caller, pairs)?;
    let (call, params) = call_sql(&schema, &function, name, args);
    let relation = format!("function {}.{name}", schema.name);
    let returns_table = function
        .returns_table
        .as_ref()
        .and_then(|name| schema.tables.get(name));
    if let (Some(table), true) = (returns_table, function.returns_set) {
        let call = Call {
            schema: &schema,
            function: &function,
            sql: call,
            params,
        };
        let (step, count) = table_rows(state, caller, call, table, &query, &relation)?;
        return Ok(CallPlan {
            step,
            count: Some(count),
            read_only: function.read_only(),
            void: false,
        });
    }
    let shaped = !query.filters.is_empty()
        || !query.order.is_empty()
        || query.limit.is_some()
        || query.offset.is_some()
        || !query.select.is_empty();
    let void = function.returns == "void";
    let sql = if void {
        // Selected (not wrapped in a subquery the planner could drop), so
        // the function runs.
        format!("SELECT ({call})::text")
    } else if shaped {
        return Err(QueryError::NotRows {
            function: name.into(),
        }
        .into());
    } else if function.returns_set {
        format!("SELECT coalesce(json_agg(r), '[]'::json)::text FROM {call} AS r")
    } else {
        format!("SELECT to_json({call})::text")
    };
    Ok(CallPlan {
        step: Step::new((sql, params), &relation),
        count: None,
        read_only: function.read_only(),
        void,
    })
}

/// `schema.name(arg => $1::text::type, …)` with the arguments bound.
fn call_sql(
    schema: &Schema,
    function: &Function,
    name: &str,
    args: &Map<String, Value>,
) -> (String, Vec<Param>) {
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
    (call, params)
}

/// A function call as SQL, with what it was resolved against.
struct Call<'a> {
    schema: &'a Schema,
    function: &'a Function,
    sql: String,
    params: Vec<Param>,
}

/// Rows of a table returned by a function, read like the table itself
/// (select with embedding, filters, order, pages), from the call; and the
/// statement counting every row the filters keep.
fn table_rows(
    state: &AppState,
    caller: &Caller,
    call: Call,
    table: &basalt_core::rest::Table,
    query: &basalt_core::rest::ReadQuery,
    relation: &str,
) -> Result<(Step, Step), HttpError> {
    let schema = call.schema;
    // A SECURITY INVOKER function reads the table as the caller: the
    // table's select policy applies to its rows (and columns) as to a GET.
    // A SECURITY DEFINER one runs with its owner's rights by design: the
    // function's `execute` policy grants its rows.
    let condition = if call.function.security_definer {
        None
    } else {
        super::decide(
            state,
            caller,
            &format!("table:{}.{}", schema.name, table.name),
            "select",
            &read_columns(schema, table, query),
        )?
        .condition
    };
    let max_rows = state.config.rest.max_rows;
    let source = Source {
        schema,
        table,
        call: Some((call.sql, call.params)),
        default_rows: state.config.rest.default_limit.min(max_rows),
        max_rows,
    };
    let uid = super::uid_of(caller);
    let variables = super::variables(caller, &uid);
    let access = Embedding { state, caller };
    let statements = read_sql(source, query, condition.as_ref(), &access, &variables)?;
    let count = Step::new(statements.count_exact(), relation);
    Ok((Step::new(statements.read, relation), count))
}

pub async fn call(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    body: Bytes,
) -> Result<HttpResponse, HttpError> {
    let name = path.into_inner();
    let post = request.method() == Method::POST;
    let prefer = super::prefer(&request)?;
    let mut pairs = query_pairs(&request);
    let mut args = arguments(post, &body)?;
    let profile = super::profile(&state, &request)?;
    decide(&state, &caller, &profile, &name)?;
    if !post {
        query_arguments(&state, &profile, &name, &mut pairs, &mut args).await;
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
    Ok(run(&state, &caller, idempotency.as_ref(), &prefer, plan)
        .await?
        .into_response())
}

/// The arguments of a POST: one JSON object (none with an empty body).
fn arguments(post: bool, body: &[u8]) -> Result<Map<String, Value>, HttpError> {
    if !post || body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(QueryError::ArgumentsNotAnObject.into()),
        Err(error) => Err(ApiError::new(ErrorCode::InvalidJson)
            .with_details(error.to_string())
            .into()),
    }
}

/// `execute` on `function:<schema>.<name>`, decided before the function is
/// looked up: only callers who may call it make the server look for it.
fn decide(state: &AppState, caller: &Caller, profile: &str, name: &str) -> Result<(), HttpError> {
    let decision = state.authz().authorize(
        &subject_of(state, caller),
        &format!("function:{profile}.{name}"),
        "execute",
    );
    if decision.allowed {
        Ok(())
    } else {
        Err(refusal(
            caller,
            decision.reason,
            "Grant `execute` on this function:<schema>.<name> object.".into(),
        ))
    }
}

/// For GET, the query parameters naming an argument of the function are
/// arguments; the rest shape the result.
async fn query_arguments(
    state: &AppState,
    profile: &str,
    name: &str,
    pairs: &mut Vec<(String, String)>,
    args: &mut Map<String, Value>,
) {
    let schema =
        super::snapshot(state, profile, |schema| schema.functions.contains_key(name)).await;
    let names: Vec<String> = schema
        .functions
        .get(name)
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

/// Runs the call: read-only functions in a read-only transaction, others in
/// a write transaction (under the `Idempotency-Key`, if any). With
/// `Prefer: count=`, the rows are counted in `Content-Range`; with
/// `Prefer: max-affected`, a call returning more rows is refused (and
/// rolled back).
async fn run(
    state: &AppState,
    caller: &Caller,
    idempotency: Option<&Idempotency>,
    prefer: &Prefer,
    plan: CallPlan,
) -> Result<Reply, HttpError> {
    let void = plan.void;
    let counting = prefer.count.is_some() && plan.count.is_some();
    let mut steps = vec![plan.step];
    if counting {
        steps.extend(plan.count);
    }
    let respond = |rows: &[tokio_postgres::Row]| {
        let reply = call_reply(void, &rows[0]);
        let returned = match reply.body.as_deref().map(serde_json::from_str::<Value>) {
            Some(Ok(Value::Array(items))) => items.len() as i64,
            Some(Ok(Value::Null)) | None => 0,
            Some(_) => 1,
        };
        if let Some(max) = prefer.max_affected {
            if returned > max {
                return Err(ApiError::new(ErrorCode::MaxAffectedExceeded)
                    .with_details(format!(
                        "the call returned {returned} rows; max-affected is {max}"
                    ))
                    .into());
            }
        }
        let mut reply = reply;
        if prefer.count.is_some() {
            let total = if counting { rows[1].get(0) } else { returned };
            let range = match returned {
                0 => format!("*/{total}"),
                n => format!("0-{}/{total}", n - 1),
            };
            reply = reply.header("content-range", range);
        }
        if prefer.count.is_some() || prefer.rollback {
            reply = reply.header("preference-applied", prefer.applied());
        }
        Ok(reply)
    };
    if plan.read_only {
        super::tx::read(state, caller, steps, respond).await
    } else if prefer.rollback {
        super::tx::write_then_roll_back(state, caller, steps, respond).await
    } else {
        super::tx::write(state, caller, idempotency, steps, respond).await
    }
}

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
use basalt_core::rest::{
    quote, read_columns, read_sql, Function, ReadQuery, Schema, Shape, Source, Table, SCALAR,
};
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
    arguments: &Arguments,
) -> Result<(Arc<Schema>, Function), HttpError> {
    let schema =
        super::snapshot(state, profile, |schema| schema.functions.contains_key(name)).await;
    let given: Option<Vec<String>> = arguments
        .named
        .as_ref()
        .map(|named| named.keys().cloned().collect());
    let whole = arguments
        .whole
        .as_ref()
        .map_or(&[][..], |(types, _)| *types);
    let function = schema.function(name, given.as_deref(), whole)?.clone();
    Ok((schema, function))
}

/// What a call passes: named arguments (a JSON object's keys, a GET's query
/// parameters, a batch operation's `args`; `None` when the body is not an
/// object), and the whole body for a function whose one unnamed argument
/// takes it, with the types it may be passed as.
#[derive(Debug, Default)]
pub struct Arguments {
    pub named: Option<Map<String, Value>>,
    pub whole: Option<(&'static [&'static str], String)>,
}

impl Arguments {
    pub fn named(named: Map<String, Value>) -> Self {
        Arguments {
            named: Some(named),
            whole: None,
        }
    }
}

/// A planned call: its one statement (the function runs once; the third
/// column counts every row the filters keep, unless it returns nothing),
/// whether it may write, and whether it returns nothing.
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

/// Decides and plans a call of `name`; `pairs` shape its result.
pub async fn plan_call(
    state: &AppState,
    caller: &Caller,
    profile: &str,
    name: &str,
    arguments: &Arguments,
    pairs: &[(String, String)],
) -> Result<CallPlan, HttpError> {
    decide(state, caller, profile, name)?;
    let (schema, function) = function_of(state, profile, name, arguments).await?;
    let query = super::parse_query(state, caller, pairs)?;
    let (sql, params) = match (function.body_argument(), &arguments.whole) {
        (Some(type_name), Some((_, body))) => (
            format!(
                "{}.{}($1::text::{type_name})",
                quote(&schema.name),
                quote(name)
            ),
            vec![Param::Text(Some(body.clone()))],
        ),
        _ => call_sql(
            &schema,
            &function,
            arguments.named.as_ref().unwrap_or(&Map::new()),
        ),
    };
    let relation = format!("function {}.{name}", schema.name);
    let read_only = function.read_only();
    if function.returns == "void" {
        if !query.filters.is_empty() || !query.select.is_empty() || !query.order.is_empty() {
            return Err(QueryError::NotRows {
                function: name.into(),
            }
            .into());
        }
        // Selected (not wrapped in a subquery the planner could drop), so
        // the function runs; a set of nothing is counted, so one row comes
        // back however many it returns (set-returning calls are never dropped).
        let sql = if function.returns_set {
            format!("SELECT count(*)::text FROM (SELECT {sql}) AS s")
        } else {
            format!("SELECT ({sql})::text")
        };
        return Ok(CallPlan {
            step: Step::new((sql, params), &relation),
            read_only,
            void: true,
        });
    }
    let call = Call {
        schema: &schema,
        function: &function,
        sql,
        params,
    };
    Ok(CallPlan {
        step: result_rows(state, caller, call, &query, &relation)?,
        read_only,
        void: false,
    })
}

/// `schema.name(arg => $1::text::type, …)` with the arguments bound: a JSON
/// object for a composite argument becomes its row, and a variadic one is
/// passed as its array.
fn call_sql(
    schema: &Schema,
    function: &Function,
    args: &Map<String, Value>,
) -> (String, Vec<Param>) {
    let mut params = Vec::new();
    let last = function.args.len().saturating_sub(1);
    let arguments = function
        .args
        .iter()
        .enumerate()
        .filter_map(|(at, (arg, type_name))| {
            args.get(arg).map(|value| {
                params.push(Param::Text(argument_text(value, type_name)));
                let n = params.len();
                let variadic = if function.variadic && at == last {
                    "VARIADIC "
                } else {
                    ""
                };
                let value = if function.composite_args.contains(arg) && value.is_object() {
                    format!("json_populate_record(NULL::{type_name}, ${n}::text::json)")
                } else {
                    format!("${n}::text::{type_name}")
                };
                format!("{variadic}{} => {value}", quote(arg))
            })
        })
        .collect::<Vec<_>>()
        .join(", ");
    let call = format!(
        "{}.{}({arguments})",
        quote(&schema.name),
        quote(&function.name)
    );
    (call, params)
}

/// A function call as SQL, with what it was resolved against.
struct Call<'a> {
    schema: &'a Schema,
    function: &'a Function,
    sql: String,
    params: Vec<Param>,
}

/// A function's result read like a table: `select` (with embedding, for rows
/// of a table), filters, order and pages, with the count of every row the
/// filters keep. Rows of a table are decided as a read of that
/// table; a composite result's columns and a scalar result (the column
/// `pgrst_scalar`) are the function's own, granted by `execute`.
fn result_rows(
    state: &AppState,
    caller: &Caller,
    call: Call,
    query: &ReadQuery,
    relation: &str,
) -> Result<Step, HttpError> {
    let schema = call.schema;
    let function = call.function;
    let single = |shape| {
        if function.returns_set {
            shape
        } else {
            Shape::Row
        }
    };
    let own = |columns: Vec<(String, String)>| Table {
        schema: schema.name.clone(),
        name: format!("{}()", function.name),
        columns,
        ..Table::default()
    };
    let (table, from, shape, condition);
    let returns_table = function
        .returns_table
        .as_ref()
        .and_then(|name| schema.tables.get(name));
    if let Some(rows_of) = returns_table {
        // A SECURITY INVOKER function reads the table as the caller: the
        // table's select policy applies to its rows (and columns) as to a
        // GET. A SECURITY DEFINER one runs with its owner's rights by
        // design: the function's `execute` policy grants its rows.
        condition = if function.security_definer {
            None
        } else {
            super::decide(
                state,
                caller,
                &format!("table:{}.{}", schema.name, rows_of.name),
                "select",
                &read_columns(schema, rows_of, query),
            )?
            .condition
        };
        table = rows_of.clone();
        from = call.sql;
        shape = single(Shape::Rows);
    } else if !function.result_columns.is_empty() {
        condition = None;
        table = own(function.result_columns.clone());
        from = call.sql;
        shape = single(Shape::Rows);
    } else {
        condition = None;
        table = own(vec![(SCALAR.to_owned(), function.returns.clone())]);
        from = format!("(SELECT {} AS {})", call.sql, quote(SCALAR));
        shape = match (query.select.is_empty(), function.returns_set) {
            (true, true) => Shape::Scalars,
            (true, false) => Shape::Scalar,
            (false, set) => single(if set { Shape::Rows } else { Shape::Row }),
        };
    }
    let max_rows = state.config.rest.max_rows;
    let source = Source {
        schema,
        table: &table,
        call: Some((from, call.params, !function.read_only())),
        default_rows: state.config.rest.default_limit.min(max_rows),
        max_rows,
        shape,
    };
    let uid = super::uid_of(caller);
    let variables = super::variables(caller, &uid);
    let access = Embedding { state, caller };
    let statements = read_sql(source, query, condition.as_ref(), &access, &variables)?;
    Ok(Step::new(statements.read, relation))
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
    let mut args = arguments(&request, post, &body)?;
    let profile = super::profile(&state, &request)?;
    decide(&state, &caller, &profile, &name)?;
    if !post {
        let named = args.named.get_or_insert_with(Map::new);
        query_arguments(&state, &profile, &name, &mut pairs, named).await;
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

/// The arguments of a POST, by its `Content-Type`: a JSON object's keys
/// are named arguments, and any JSON body may be taken whole by a function
/// with one unnamed `json`/`jsonb` argument; a `text/plain`, `text/xml` or
/// `application/octet-stream` body only whole, as `text`, `xml` or `bytea`.
fn arguments(request: &HttpRequest, post: bool, body: &[u8]) -> Result<Arguments, HttpError> {
    if !post {
        return Ok(Arguments::default());
    }
    let media = request
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let text = || String::from_utf8(body.to_vec()).map_err(|_| QueryError::BodyNotText);
    let whole = |types, body| Arguments {
        named: None,
        whole: Some((types, body)),
    };
    Ok(match media.as_str() {
        "text/plain" => whole(&["text"], text()?),
        "text/xml" | "application/xml" => whole(&["xml"], text()?),
        "application/octet-stream" => whole(&["bytea"], format!("\\x{}", hex::encode(body))),
        _ if body.is_empty() => Arguments::named(Map::new()),
        _ => {
            let raw = text()?;
            match serde_json::from_str(&raw) {
                Ok(Value::Object(named)) => Arguments {
                    named: Some(named),
                    whole: Some((&["json", "jsonb"], raw)),
                },
                Ok(_) => whole(&["json", "jsonb"], raw),
                Err(error) => {
                    return Err(ApiError::new(ErrorCode::InvalidJson)
                        .with_details(error.to_string())
                        .into())
                }
            }
        }
    })
}

/// `execute` on `function:<schema>.<name>`, decided before the function is
/// looked up: only callers who may call it make the server look for it.
pub(super) fn decide(
    state: &AppState,
    caller: &Caller,
    profile: &str,
    name: &str,
) -> Result<(), HttpError> {
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
/// arguments (a variadic one repeated, `?v=a&v=b`, gives its elements);
/// the rest shape the result.
async fn query_arguments(
    state: &AppState,
    profile: &str,
    name: &str,
    pairs: &mut Vec<(String, String)>,
    args: &mut Map<String, Value>,
) {
    let schema =
        super::snapshot(state, profile, |schema| schema.functions.contains_key(name)).await;
    let overloads = schema.functions.get(name).into_iter().flatten();
    let mut names = Vec::new();
    let mut variadic = Vec::new();
    for function in overloads {
        for (at, (arg, _)) in function.args.iter().enumerate() {
            names.push(arg.clone());
            if function.variadic && at + 1 == function.args.len() {
                variadic.push(arg.clone());
            }
        }
    }
    // A parameter that is no filter (a filter's value is `op.value`) and
    // none of the reserved ones is meant as an argument: named so, a
    // function without it is not found (`add?c=1`: "the arguments c").
    let reserved = [
        "select",
        "order",
        "limit",
        "offset",
        "columns",
        "on_conflict",
        "cursor",
    ];
    let argument = |key: &String, value: &String| {
        names.contains(key)
            || !value.contains('.') && !key.contains('.') && !reserved.contains(&key.as_str())
    };
    pairs.retain(|(key, value)| {
        if !argument(key, value) {
            return true;
        }
        let value = Value::String(value.clone());
        if variadic.contains(key) {
            let elements = args
                .entry(key.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(elements) = elements {
                elements.push(value);
            }
        } else {
            args.insert(key.clone(), value);
        }
        false
    });
    // `?v={1,2}` (as supabase-js sends an array) is the array itself.
    for name in variadic {
        if let Some(Value::Array(elements)) = args.get(&name) {
            if let [Value::String(literal)] = &elements[..] {
                if literal.starts_with('{') && literal.ends_with('}') {
                    let literal = Value::String(literal.clone());
                    args.insert(name, literal);
                }
            }
        }
    }
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
    let steps = vec![plan.step];
    let respond = |rows: &[tokio_postgres::Row]| {
        let Some(row) = rows.first() else {
            return Err(HttpError::new(ErrorCode::InternalError));
        };
        let reply = call_reply(void, row);
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
            let total = if void { returned } else { row.get(2) };
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

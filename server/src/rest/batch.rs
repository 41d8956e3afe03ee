//! `POST /rest/v1/batch`: a list of operations (insert, upsert, update,
//! delete, rpc) on any tables, run in one transaction: all succeed or none
//! does. Each operation is decided and planned exactly as its own endpoint
//! would; the reply holds each operation's rows (or function result), and an
//! error names the failing operation's index in `details`.

use super::idempotency::Idempotency;
use super::rpc::{call_reply, plan_call, Arguments};
use super::write::{
    insert_rows, plan_delete, plan_insert, plan_update, representation, WriteCheck,
};
use super::{target, Prefer, Reply, Step, Target};
use crate::error::HttpError;
use crate::identity::Caller;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::web::{self, Data};
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::rest::request::Resolution;
use basalt_core::rest::WriteError;
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    operations: Vec<Operation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "op")]
enum Operation {
    Insert {
        table: String,
        rows: Value,
    },
    Upsert {
        table: String,
        rows: Value,
        #[serde(default)]
        on_conflict: Option<Vec<String>>,
        #[serde(default)]
        ignore_duplicates: bool,
    },
    Update {
        table: String,
        /// Filters in the query-string grammar, e.g. `id=eq.1`.
        filter: String,
        set: Value,
    },
    Delete {
        table: String,
        filter: String,
    },
    Rpc {
        function: String,
        #[serde(default)]
        args: Map<String, Value>,
    },
}

/// How to read one operation's row once the transaction has run.
enum Planned {
    Write {
        kind: &'static str,
        target: Box<Target>,
        check: WriteCheck,
    },
    Call {
        void: bool,
    },
}

fn pairs(filter: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(filter.as_bytes())
        .into_owned()
        .collect()
}

/// Prefixes an error with the operation it belongs to.
fn at(index: usize, mut error: HttpError) -> HttpError {
    let details = error.error.details.take().unwrap_or_default();
    error.error.details = Some(format!("operations[{index}]: {details}"));
    error
}

async fn plan(
    state: &AppState,
    caller: &Caller,
    profile: &str,
    operation: Operation,
    prefer: &Prefer,
) -> Result<(Step, Planned), HttpError> {
    let write = |kind, target, plan: super::write::WritePlan| {
        (
            plan.step,
            Planned::Write {
                kind,
                target: Box::new(target),
                check: plan.check,
            },
        )
    };
    Ok(match operation {
        Operation::Insert { table, rows } | Operation::Upsert { table, rows, .. }
            if !rows.is_object() && !rows.is_array() =>
        {
            return Err(WriteError::BatchRows { table }.into())
        }
        Operation::Insert { table, rows } => {
            let target = target(state, caller, profile, &[], &table, "insert").await?;
            let (columns, objects) = insert_rows(rows)?;
            let plan = plan_insert(state, caller, &target, prefer, objects, columns, None)?;
            write("insert", target, plan)
        }
        Operation::Upsert {
            table,
            rows,
            on_conflict,
            ignore_duplicates,
        } => {
            let target = target(state, caller, profile, &[], &table, "insert").await?;
            let (columns, objects) = insert_rows(rows)?;
            let on = on_conflict.unwrap_or_else(|| target.table.primary_key.clone());
            let resolution = Prefer {
                resolution: Some(if ignore_duplicates {
                    Resolution::IgnoreDuplicates
                } else {
                    Resolution::MergeDuplicates
                }),
                ..prefer.clone()
            };
            let plan = plan_insert(
                state,
                caller,
                &target,
                &resolution,
                objects,
                columns,
                Some(on),
            )?;
            write("upsert", target, plan)
        }
        Operation::Update { table, filter, set } => {
            let target = target(state, caller, profile, &pairs(&filter), &table, "update").await?;
            let plan = plan_update(state, caller, &target, &set)?;
            write("update", target, plan)
        }
        Operation::Delete { table, filter } => {
            let target = target(state, caller, profile, &pairs(&filter), &table, "delete").await?;
            let plan = plan_delete(state, caller, &target)?;
            write("delete", target, plan)
        }
        Operation::Rpc { function, args } => {
            let arguments = Arguments::named(args);
            let plan = plan_call(state, caller, profile, &function, &arguments, &[]).await?;
            (plan.step, Planned::Call { void: plan.void })
        }
    })
}

pub async fn batch(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    body: web::Json<Value>,
) -> Result<HttpResponse, HttpError> {
    let prefer = super::prefer(&request)?;
    let profile = super::profile(&state, &request)?;
    let idempotency = Idempotency::of(&request, &state, &caller, body.to_string().as_bytes())?;
    let operations = operations(&state, body.into_inner())?;
    let mut steps = Vec::new();
    let mut planned = Vec::new();
    for (index, operation) in operations.into_iter().enumerate() {
        let (mut step, how) = plan(&state, &caller, &profile, operation, &prefer)
            .await
            .map_err(|error| at(index, error))?;
        step.label = Some(format!("operations[{index}]"));
        steps.push(step);
        planned.push(how);
    }
    let reply = super::tx::write(&state, &caller, idempotency.as_ref(), steps, |rows| {
        let results = rows
            .iter()
            .zip(&planned)
            .enumerate()
            .map(|(index, (row, how))| {
                result(&state, &caller, &prefer, row, how).map_err(|e| at(index, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Reply::json(
            StatusCode::OK,
            serde_json::json!({ "results": results }).to_string(),
        ))
    })
    .await?;
    Ok(reply.into_response())
}

/// The body's operations: 1 to `rest.batch_max_operations` of them.
fn operations(state: &AppState, body: Value) -> Result<Vec<Operation>, HttpError> {
    let batch: Batch = serde_json::from_value(body).map_err(|error| {
        HttpError::from(
            ApiError::new(ErrorCode::InvalidJson)
                .with_details(error.to_string())
                .with_hint(
                    r#"send {"operations": [{"op": "insert", "table": "t", "rows": [...]}, ...]}"#,
                ),
        )
    })?;
    let limit = state.config.rest.batch_max_operations as usize;
    if batch.operations.is_empty() || batch.operations.len() > limit {
        return Err(ApiError::new(ErrorCode::ValidationFailed)
            .with_details(format!(
                "operations: {} given; a batch holds 1 to {limit} (rest.batch_max_operations)",
                batch.operations.len()
            ))
            .into());
    }
    Ok(batch.operations)
}

/// One operation's entry of the reply, from its row: the written rows as
/// the caller may see them (checked against the policy first), or the
/// function's result.
fn result(
    state: &AppState,
    caller: &Caller,
    prefer: &Prefer,
    row: &tokio_postgres::Row,
    how: &Planned,
) -> Result<Value, HttpError> {
    Ok(match how {
        Planned::Write {
            kind,
            target,
            check,
        } => {
            check.check(row, prefer)?;
            let written: Vec<Map<String, Value>> =
                serde_json::from_str(&row.get::<_, String>(0)).unwrap_or_default();
            let shown = representation(state, caller, target, written)?;
            serde_json::json!({
                "op": kind,
                "table": target.table.name,
                "rows": serde_json::from_str::<Value>(&shown).unwrap_or_default(),
            })
        }
        Planned::Call { void } => serde_json::json!({
            "op": "rpc",
            "result": call_reply(*void, row)
                .body
                .and_then(|body| serde_json::from_str::<Value>(&body).ok())
                .unwrap_or(Value::Null),
        }),
    })
}

//! `GET`/`HEAD /rest/v1/<table>`: the read as one statement (with embedded
//! resources), counts (`Prefer: count=exact|planned|estimated`), pages by
//! `limit`/`offset`, the `Range` header (206/416) or a keyset cursor, and
//! JSON, single-object or CSV output.

use super::{decide, table_request, tx, uid_of, variables, Embedding, Reply, Step};
use crate::authz::engine::Decision;
use crate::error::HttpError;
use crate::identity::Caller;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::rest::request::{self, Count, Format, Prefer, Shaping, GEOJSON, OBJECT};
use basalt_core::rest::{read_columns, read_sql, Cursor, Shape, Source};

fn accept(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
}

/// The format `Accept` asks for (406 when Basalt produces none of it).
fn format(request: &HttpRequest) -> Result<Format, HttpError> {
    let accept = accept(request);
    request::format(accept).ok_or_else(|| {
        ApiError::new(ErrorCode::NotAcceptable)
            .with_details(format!("Accept: {}", accept.unwrap_or_default()))
            .into()
    })
}

/// The `Range` header as `(offset, limit)`.
fn range(request: &HttpRequest) -> Result<Option<(u64, Option<u64>)>, HttpError> {
    let header = request.headers().get("range").and_then(|v| v.to_str().ok());
    Ok(request::range(header)?)
}

/// CSV (RFC 4180) of rows of values in PostgreSQL's text forms: a header
/// of `columns`, one line per row; null is an empty field, an empty string
/// `""`. A field with a comma, quote or line break is quoted, its quotes
/// doubled. With `neutralize` (`rest.csv_neutralize_formulas`), a field a
/// spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, tab
/// or carriage return, and not a number) is prefixed with `'` (OWASP's
/// advice for CSV injection). Written here rather than with the `csv` crate,
/// which cannot tell an empty string from a null.
pub fn csv(columns: &[String], body: &str, neutralize: bool) -> String {
    fn field(out: &mut String, text: &str) {
        if text.is_empty() || text.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&text.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(text);
        }
    }
    let formula = |text: &str| {
        neutralize
            && text.starts_with(['=', '+', '-', '@', '\t', '\r'])
            && text.parse::<f64>().is_err()
    };
    let rows: Vec<Vec<Option<String>>> = serde_json::from_str(body).unwrap_or_default();
    let mut out = String::new();
    for (at, name) in columns.iter().enumerate() {
        if at > 0 {
            out.push(',');
        }
        field(&mut out, name);
    }
    out.push('\n');
    for row in &rows {
        for (at, value) in row.iter().enumerate() {
            if at > 0 {
                out.push(',');
            }
            match value {
                None => {}
                Some(text) if formula(text) => field(&mut out, &format!("'{text}")),
                Some(text) => field(&mut out, text),
            }
        }
        out.push('\n');
    }
    out
}

pub async fn read(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, HttpError> {
    // Extract.
    if let Some(asked) = request::plan_request(accept(&request)) {
        return explain(caller, state, request, path, asked).await;
    }
    let format = format(&request)?;
    // Decide and plan.
    let mut plan = decided(&state, &caller, &request, &path, format).await?;
    // Run and respond.
    let steps = std::mem::take(&mut plan.steps);
    let mut reply = tx::read(&state, &caller, steps, |rows| plan.respond(&state, rows)).await?;
    if request::strips_nulls(accept(&request)) && format != Format::Csv {
        if let Some(body) = &reply.body {
            if let Ok(mut value) = serde_json::from_str::<serde_json::Value>(body) {
                request::strip_nulls(&mut value);
                reply.body = Some(value.to_string());
            }
        }
    }
    Ok(reply.into_response())
}

/// The read the request asks for, decided (the table, then the columns it
/// touches) and planned.
async fn decided(
    state: &AppState,
    caller: &Caller,
    request: &HttpRequest,
    path: &str,
    format: Format,
) -> Result<ReadPlan, HttpError> {
    let (prefer, pairs, mut target) = table_request(state, caller, request, path, "select").await?;
    let cursor = page(state, request, &pairs, &mut target)?;
    let decision = decide(
        state,
        caller,
        &target.object,
        "select",
        &read_columns(&target.schema, &target.table, &target.query),
    )?;
    plan(state, caller, &target, &decision, prefer, cursor, format)
}

/// `Accept: application/vnd.pgrst.plan+json`: the read's plan from
/// PostgreSQL (`EXPLAIN (FORMAT JSON)`, not run), decided as the read is and
/// planned as the caller, where `rest.plan` allows it (else `406`).
async fn explain(
    caller: Caller,
    state: Data<AppState>,
    request: HttpRequest,
    path: Path<String>,
    asked: request::PlanRequest,
) -> Result<HttpResponse, HttpError> {
    let allowed = match state.config.rest.plan.as_str() {
        "everyone" => true,
        "service_role" => super::is_service_key(&caller),
        _ => false,
    };
    if !allowed {
        return Err(ApiError::new(ErrorCode::NotAcceptable)
            .with_details(format!("Accept: {}", asked.media_type()))
            .with_hint("Plans are off: see rest.plan (BASALT_REST_PLAN).")
            .into());
    }
    let mut plan = decided(&state, &caller, &request, &path, Format::Json).await?;
    let mut steps = std::mem::take(&mut plan.steps);
    steps.truncate(1);
    for step in &mut steps {
        step.sql = format!("{} {}", asked.explain(), step.sql);
    }
    let reply = tx::read_lines(&state, &caller, steps, |rows| {
        let body = if asked.text {
            // One row per line of the plan.
            let lines: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
            lines.join("\n")
        } else {
            rows[0].get::<_, serde_json::Value>(0).to_string()
        };
        Ok(Reply::new(actix_web::http::StatusCode::OK)
            .header("content-type", asked.media_type())
            .body(body))
    })
    .await?;
    Ok(reply.into_response())
}

/// The page: `Range` narrows `limit`/`offset`; `cursor=` (empty for the
/// first page) turns on keyset pagination.
fn page(
    state: &AppState,
    request: &HttpRequest,
    pairs: &[(String, String)],
    target: &mut super::Target,
) -> Result<Option<Cursor>, HttpError> {
    if let Some((offset, limit)) = range(request)? {
        target.query.offset = target.query.offset.or(Some(offset));
        target.query.limit = match (target.query.limit, limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let Some(token) = Shaping::parse(pairs).cursor else {
        return Ok(None);
    };
    let cursor = Cursor::open(
        &token,
        &target.query,
        &target.table,
        state.refresh_key.as_bytes(),
    )?;
    cursor.apply(&mut target.query);
    Ok(Some(cursor))
}

/// A read planned: its statements (the page, then the count the caller
/// gets) and what the answer needs of the request.
struct ReadPlan {
    /// The keys of each row (the CSV header).
    columns: Vec<String>,
    steps: Vec<Step>,
    prefer: Prefer,
    cursor: Option<Cursor>,
    format: Format,
    offset: i64,
    page_size: i64,
}

/// GeoJSON needs PostGIS, and a geometry column among what the read
/// selects (a Feature's geometry): else 406.
fn geojson(target: &super::Target) -> Result<Shape<'_>, HttpError> {
    let refuse = |why: &str| -> HttpError {
        ApiError::new(ErrorCode::NotAcceptable)
            .with_details(format!("{GEOJSON} needs {why}"))
            .into()
    };
    let postgis = target
        .schema
        .postgis
        .as_deref()
        .ok_or_else(|| refuse("PostGIS in the database"))?;
    let geometry = |column: &str| {
        target
            .table
            .columns
            .iter()
            .any(|(name, type_name)| name == column && type_name.starts_with("geometry"))
    };
    let selected: Vec<String> = if target.query.selects_all() {
        target.table.column_names()
    } else {
        target
            .query
            .select
            .iter()
            .filter_map(|item| match item {
                basalt_core::rest::SelectItem::Field(field)
                    if field.aggregate.is_none() && field.cast.is_none() =>
                {
                    Some(field.column.clone())
                }
                _ => None,
            })
            .collect()
    };
    if !selected.iter().any(|column| geometry(column)) {
        return Err(refuse("a geometry column in select="));
    }
    Ok(Shape::GeoJson { postgis })
}

fn plan(
    state: &AppState,
    caller: &Caller,
    target: &super::Target,
    decision: &Decision,
    mut prefer: Prefer,
    cursor: Option<Cursor>,
    format: Format,
) -> Result<ReadPlan, HttpError> {
    let uid = uid_of(caller);
    let variables = variables(caller, &uid);
    let access = Embedding { state, caller };
    let max_rows = state.config.rest.max_rows;
    let default_rows = state.config.rest.default_limit.min(max_rows);
    let source = Source {
        default_rows,
        shape: match format {
            Format::Csv => Shape::Text,
            Format::GeoJson => geojson(target)?,
            _ => Shape::Rows,
        },
        ..Source::table(&target.schema, &target.table, max_rows)
    };
    let statements = read_sql(
        source,
        &target.query,
        decision.condition.as_ref(),
        &access,
        &variables,
    )?;
    let relation = target.table.qualified();
    let mut steps = vec![Step::new(
        match &cursor {
            Some(cursor) => cursor.wrap(statements.read.clone()),
            None => statements.read.clone(),
        },
        &relation,
    )];
    // The planner's estimates come from statistics over the whole table,
    // hidden rows included: a filter on a value only another user's rows
    // hold would show in them. They are given only when the caller sees
    // every row; anyone else gets an exact count.
    let sees_every_row = super::is_service_key(caller)
        || (decision.condition.is_none()
            && !target.table.hides_rows
            && !target.query.select.iter().any(
                |item| matches!(item, basalt_core::rest::SelectItem::Embed(embed) if embed.inner),
            ));
    if !sees_every_row && matches!(prefer.count, Some(Count::Planned | Count::Estimated)) {
        prefer.count = Some(Count::Exact);
    }
    match prefer.count {
        Some(Count::Exact) => steps.push(Step::new(statements.count_exact(), &relation)),
        Some(Count::Planned) => steps.push(Step::new(statements.count_planned(), &relation)),
        Some(Count::Estimated) => {
            steps.push(Step::new(statements.count_bounded(max_rows), &relation));
            steps.push(Step::new(statements.count_planned(), &relation));
        }
        None => {}
    }
    Ok(ReadPlan {
        columns: statements.columns,
        steps,
        prefer,
        cursor,
        format,
        offset: target.query.offset.unwrap_or(0) as i64,
        page_size: target.query.limit.unwrap_or(default_rows).min(max_rows) as i64,
    })
}

impl ReadPlan {
    /// The response stage: status, `Content-Range`, `Preference-Applied`, the
    /// next cursor, and the body as JSON, a single object or CSV.
    fn respond(&self, state: &AppState, rows: &[tokio_postgres::Row]) -> Result<Reply, HttpError> {
        let (body, returned): (String, i64) = (rows[0].get(0), rows[0].get(1));
        let offset = self.offset;
        let planned = |row: &tokio_postgres::Row| -> i64 {
            let plan: serde_json::Value = row.get(0);
            plan[0]["Plan"]["Plan Rows"].as_f64().unwrap_or(0.0) as i64
        };
        let total: Option<i64> = match self.prefer.count {
            Some(Count::Exact) => Some(rows[1].get(0)),
            Some(Count::Planned) => Some(planned(&rows[1])),
            Some(Count::Estimated) => {
                let bounded: i64 = rows[1].get(0);
                Some(if bounded as u64 > state.config.rest.max_rows {
                    planned(&rows[2]).max(bounded)
                } else {
                    bounded
                })
            }
            None => None,
        };
        let total_text = total.map_or("*".to_owned(), |t| t.to_string());
        if let (Some(total), true) = (total, offset > 0) {
            if returned == 0 && offset >= total {
                return Err(ApiError::new(ErrorCode::RangeNotSatisfiable)
                    .with_details(format!("offset {offset} is past the {total} rows"))
                    .into());
            }
        }
        let content_range = match returned {
            0 => format!("*/{total_text}"),
            n => format!("{offset}-{}/{total_text}", offset + n - 1),
        };
        // Partial content when the page is known to hold fewer than all rows.
        let status = match total {
            Some(total) if returned < total && self.cursor.is_none() => StatusCode::PARTIAL_CONTENT,
            _ => StatusCode::OK,
        };
        let mut reply = Reply::new(status).header("content-range", content_range);
        if self.prefer.count.is_some() {
            reply = reply.header("preference-applied", self.prefer.applied());
        }
        if let Some(cursor) = &self.cursor {
            let last: Option<String> = rows[0].get(2);
            if let (Some(last), true) = (last, returned == self.page_size) {
                reply = reply.header(
                    "basalt-next-cursor",
                    cursor.next(&last, state.refresh_key.as_bytes()),
                );
            }
        }
        Ok(match self.format {
            Format::Json => reply.header("content-type", "application/json").body(body),
            // The array of one object without its brackets: the object as
            // PostgreSQL wrote it, keys in the selected order.
            Format::Object => match returned {
                1 => reply
                    .header("content-type", OBJECT)
                    .body(body[1..body.len() - 1].to_owned()),
                // As PostgREST: 406 for none as for several (supabase-js's
                // maybeSingle() reads "0 rows" in the details as no row).
                n => {
                    return Err(ApiError::new(ErrorCode::NotSingleRow)
                        .with_details(format!("The result contains {n} rows"))
                        .into())
                }
            },
            Format::GeoJson => reply.header("content-type", GEOJSON).body(body),
            Format::Csv => reply
                .header("content-type", "text/csv; charset=utf-8")
                .body(csv(
                    &self.columns,
                    &body,
                    state.config.rest.csv_neutralize_formulas,
                )),
        })
    }
}

//! The reply to a write: the written rows checked against the policy and `max-affected`, and shown as `Prefer: return=` asks (per row, only what a read could show).

use super::*;

/// The written rows' JSON (first column of a write statement).
pub(in crate::rest) fn rows_of(row: &tokio_postgres::Row) -> Vec<Map<String, Value>> {
    serde_json::from_str(&row.get::<_, String>(0)).unwrap_or_default()
}

/// Refuses a write whose rows would break the policy's condition (the
/// statement's second column counts them), and one that changed more rows
/// than `Prefer: max-affected` allows (its third column).
pub(in crate::rest) fn checked(
    row: &tokio_postgres::Row,
    prefer: &Prefer,
) -> Result<i64, HttpError> {
    let violating: i64 = row.get(1);
    let written: i64 = row.get(2);
    if violating != 0 {
        return Err(ApiError::new(ErrorCode::RowViolatesPolicy)
            .with_details(format!(
                "{violating} written row(s) would not match your policy's condition"
            ))
            .into());
    }
    if let Some(max) = prefer.max_affected {
        if written > max {
            return Err(ApiError::new(ErrorCode::MaxAffectedExceeded)
                .with_details(format!(
                    "{written} rows would change; max-affected is {max}"
                ))
                .into());
        }
    }
    Ok(written)
}

/// The rows as the caller may see them: only columns their select policy
/// allows, shaped by `select=` (plain columns and renames).
pub fn representation(
    state: &AppState,
    caller: &Caller,
    target: &Target,
    rows: Vec<Map<String, Value>>,
) -> Result<String, HttpError> {
    let select = state
        .authz()
        .authorize(&subject_of(state, caller), &target.object, "select");
    if !select.allowed {
        return Ok("[]".into());
    }
    // Per row, only what a GET could read: the columns of the policies
    // whose condition holds on that row.
    let grants = select.grants();
    let uid = uid_of(caller);
    let variables = variables(caller, &uid);
    let mut shaped = Vec::new();
    for row in rows {
        let Some(columns) =
            basalt_core::policy::visible_columns(&grants, &Value::Object(row.clone()), &variables)
        else {
            continue;
        };
        let visible = |column: &str| {
            columns
                .as_ref()
                .is_none_or(|c| c.iter().any(|v| v == column))
        };
        let mut out = Map::new();
        if target.query.selects_all() {
            for (column, value) in &row {
                if visible(column) {
                    out.insert(column.clone(), value.clone());
                }
            }
        }
        for item in &target.query.select {
            match item {
                SelectItem::Star => {}
                SelectItem::Field(field)
                    if field.cast.is_none()
                        && field.aggregate.is_none()
                        && !field.column.contains("->") =>
                {
                    if !row.contains_key(&field.column) {
                        return Err(WriteError::UnknownColumn {
                            table: target.table.name.clone(),
                            column: field.column.clone(),
                        }
                        .into());
                    }
                    if visible(&field.column) {
                        out.insert(field.output_name(), row[&field.column].clone());
                    }
                }
                _ => return Err(WriteError::SelectNotColumns.into()),
            }
        }
        shaped.push(Value::Object(out));
    }
    Ok(Value::Array(shaped).to_string())
}

/// What a write did, for its status: an insert creates (201); an upsert
/// (`POST` with `Prefer: resolution=`, or `PUT`) answers 201 when it created
/// a row and 200 when it only merged, as PostgREST 12; an update or delete
/// answers 200 (204 without a body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Upserted,
    Changed,
}

/// How the caller wants the written rows: as an array, or — with `Accept:
/// application/vnd.pgrst.object+json` — as the one object, the write
/// refused (and rolled back) unless it wrote exactly one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Rows,
    Object,
}

/// The reply to a write, as `Prefer: return=` asks: the rows
/// (`representation`), a `Location` for one inserted row (`headers-only`),
/// or nothing (`minimal`, the default); with `Prefer: count=`, the number
/// of rows written in `Content-Range`.
pub fn reply(
    state: &AppState,
    caller: &Caller,
    target: &Target,
    prefer: &Prefer,
    row: &tokio_postgres::Row,
    outcome: Outcome,
    shape: Shape,
) -> Result<Reply, HttpError> {
    let rows = rows_of(row);
    let written: i64 = row.get(2);
    let inserted: i64 = row.get(3);
    if shape == Shape::Object && written != 1 {
        return Err(not_one(written));
    }
    let status = match outcome {
        Outcome::Created => StatusCode::CREATED,
        Outcome::Upserted if inserted > 0 => StatusCode::CREATED,
        Outcome::Upserted | Outcome::Changed => StatusCode::OK,
    };
    let empty = match outcome {
        Outcome::Changed => StatusCode::NO_CONTENT,
        _ => status,
    };
    let mut reply = match prefer.return_ {
        Some(Return::Representation) => {
            let shown = representation(state, caller, target, rows)?;
            match shape {
                Shape::Rows => Reply::json(status, shown),
                Shape::Object => match serde_json::from_str::<Value>(&shown) {
                    Ok(Value::Array(mut items)) if items.len() == 1 => Reply::new(status)
                        .header("content-type", OBJECT)
                        .body(items.remove(0).to_string()),
                    // Written, but not a row the caller may read.
                    Ok(Value::Array(items)) => return Err(not_one(items.len() as i64)),
                    _ => return Err(not_one(0)),
                },
            }
        }
        Some(Return::HeadersOnly) => location(state, caller, target, &rows, Reply::new(empty)),
        _ => Reply::new(empty),
    };
    if prefer.count.is_some() {
        let range = match written {
            0 => "*/0".to_owned(),
            n => format!("0-{}/{n}", n - 1),
        };
        reply = reply.header("content-range", range);
    }
    let applied = prefer.applied();
    if !applied.is_empty() {
        reply = reply.header("preference-applied", applied);
    }
    Ok(reply)
}

/// 406: the one row asked for was not what the write wrote.
fn not_one(rows: i64) -> HttpError {
    ApiError::new(ErrorCode::NotSingleRow)
        .with_details(format!(
            "the write affected {rows} rows; nothing was changed"
        ))
        .into()
}

/// `Location` of the one row written, when the caller may read it back.
fn location(
    state: &AppState,
    caller: &Caller,
    target: &Target,
    rows: &[Map<String, Value>],
    reply: Reply,
) -> Reply {
    let may_read = state
        .authz()
        .authorize(&subject_of(state, caller), &target.object, "select")
        .allowed;
    let ([row], false, true) = (rows, target.table.primary_key.is_empty(), may_read) else {
        return reply;
    };
    let encode =
        |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let filters: Vec<String> = target
        .table
        .primary_key
        .iter()
        .map(|key| {
            let value = match &row[key] {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            format!("{}=eq.{}", encode(key), encode(&value))
        })
        .collect();
    reply.header(
        "location",
        format!(
            "/rest/v1/{}?{}",
            encode(&target.table.name),
            filters.join("&")
        ),
    )
}

#[derive(Debug, Clone, Copy)]
pub struct WriteCheck {
    /// For a merge: every object must have been written (inserted or
    /// merged); fewer means the update policy skipped existing rows.
    pub(in crate::rest) merged_objects: Option<i64>,
}

impl WriteCheck {
    /// Checks the statement's row (see [`checked`]).
    pub fn check(&self, row: &tokio_postgres::Row, prefer: &Prefer) -> Result<(), HttpError> {
        let written = checked(row, prefer)?;
        match self.merged_objects {
            Some(count) if written < count => Err(ApiError::new(ErrorCode::RowViolatesPolicy)
                .with_details(format!(
                    "{} existing row(s) may not be updated under your policies",
                    count - written
                ))
                .into()),
            _ => Ok(()),
        }
    }
}

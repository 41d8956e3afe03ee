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
                    if field.cast.is_none() && !field.column.contains("->") =>
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

/// The reply to a write, as `Prefer: return=` asks: the rows
/// (`representation`), a `Location` for one inserted row (`headers-only`),
/// or nothing (`minimal`, the default).
pub fn reply(
    state: &AppState,
    caller: &Caller,
    target: &Target,
    prefer: &Prefer,
    row: &tokio_postgres::Row,
    status: StatusCode,
) -> Result<Reply, HttpError> {
    let rows = rows_of(row);
    let empty = if status == StatusCode::CREATED {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    };
    let mut reply = match prefer.return_ {
        Some(Return::Representation) => {
            Reply::json(status, representation(state, caller, target, rows)?)
        }
        Some(Return::HeadersOnly) => {
            let mut reply = Reply::new(empty);
            let may_read = state
                .authz()
                .authorize(&subject_of(state, caller), &target.object, "select")
                .allowed;
            if let ([row], false, true) = (&rows[..], target.table.primary_key.is_empty(), may_read)
            {
                let filters: Vec<String> = target
                    .table
                    .primary_key
                    .iter()
                    .map(|key| {
                        let value = match &row[key] {
                            Value::String(text) => text.clone(),
                            other => other.to_string(),
                        };
                        format!(
                            "{}=eq.{}",
                            url::form_urlencoded::byte_serialize(key.as_bytes())
                                .collect::<String>(),
                            url::form_urlencoded::byte_serialize(value.as_bytes())
                                .collect::<String>()
                        )
                    })
                    .collect();
                reply = reply.header(
                    "location",
                    format!(
                        "/rest/v1/{}?{}",
                        url::form_urlencoded::byte_serialize(target.table.name.as_bytes())
                            .collect::<String>(),
                        filters.join("&")
                    ),
                );
            }
            reply
        }
        _ => Reply::new(empty),
    };
    let applied = prefer.applied();
    if !applied.is_empty() {
        reply = reply.header("preference-applied", applied);
    }
    Ok(reply)
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

//! Planning a write: the body's rows and columns, the conflict target, the policy decision with the columns touched, the filters a write may read, and the statement.

use super::*;

/// An insert's body (one object or an array of objects) as the union of
/// its keys and the list of objects.
pub fn insert_rows(body: Value) -> Result<(Vec<String>, Vec<Value>), HttpError> {
    let columns = body_columns(&body)?;
    let objects = match body {
        Value::Array(items) => items,
        object => vec![object],
    };
    Ok((columns, objects))
}

/// `on_conflict=a,b`, or the primary key.
pub(in crate::rest) fn conflict_target(
    pairs: &[(String, String)],
    table: &Table,
) -> Result<Vec<String>, HttpError> {
    let target = Shaping::parse(pairs)
        .on_conflict
        .unwrap_or_else(|| table.primary_key.clone());
    if target.is_empty() {
        return Err(WriteError::NoConflictTarget {
            table: table.name.clone(),
        }
        .into());
    }
    Ok(target)
}

/// A write's statement and what its result must show.
pub struct WritePlan {
    pub step: Step,
    pub check: WriteCheck,
    /// Whether the statement's row can only pass [`WriteCheck`]: nothing to
    /// count against a row condition, no merged rows to count.
    pub unconditional: bool,
}

impl WritePlan {
    /// The write's statement on the target's table; `merged_objects` counts
    /// the rows an upsert sent (to check they were all written).
    fn new(
        statement: (String, Vec<basalt_core::filter::sql::Param>),
        target: &Target,
        merged_objects: Option<i64>,
    ) -> Self {
        WritePlan {
            step: Step::new(statement, &target.table.qualified()),
            check: WriteCheck { merged_objects },
            unconditional: false,
        }
    }
}

/// The caller's `select` row condition, which limits the rows a
/// representation shows (the columns are limited in [`representation`]).
pub(in crate::rest) fn shown(state: &AppState, caller: &Caller, target: &Target) -> Option<Expr> {
    let select = state
        .authz()
        .authorize(&subject_of(state, caller), &target.object, "select");
    select.condition.filter(|_| select.allowed)
}

/// Plans an insert (or upsert on `conflict_on`) of `objects`.
pub fn plan_insert(
    state: &AppState,
    caller: &Caller,
    target: &Target,
    prefer: &Prefer,
    objects: Vec<Value>,
    columns: Vec<String>,
    conflict_on: Option<Vec<String>>,
) -> Result<WritePlan, HttpError> {
    // With `missing=default`, a column no object gives is left out: the
    // database fills it as it would any omitted column (identity and
    // generated columns included).
    let columns: Vec<String> = if prefer.missing_default {
        columns
            .into_iter()
            .filter(|column| objects.iter().any(|object| object.get(column).is_some()))
            .collect()
    } else {
        columns
    };
    // Only policies granting every written column count: no mass assignment.
    let decision = decide(state, caller, &target.object, "insert", &columns)?;
    check_values(&target.table, &objects)?;
    let count = objects.len() as i64;
    let conflict = match (prefer.resolution, conflict_on) {
        (Some(Resolution::IgnoreDuplicates), Some(on)) => Conflict::Ignore { target: on },
        (_, Some(on)) => Conflict::Merge {
            target: on,
            condition: decide(state, caller, &target.object, "update", &columns)?.condition,
        },
        (_, None) => Conflict::Fail,
    };
    let merging = matches!(conflict, Conflict::Merge { .. });
    let unconditional = decision.condition.is_none() && matches!(conflict, Conflict::Fail);
    let uid = uid_of(caller);
    let variables = variables(caller, &uid);
    let statement = insert_sql(
        &target.table,
        Value::Array(objects).to_string(),
        &columns,
        decision.condition.as_ref(),
        &variables,
        &InsertOptions {
            conflict,
            missing_default: prefer.missing_default,
        },
        shown(state, caller, target).as_ref(),
    )?;
    Ok(WritePlan {
        unconditional,
        ..WritePlan::new(statement, target, merging.then_some(count))
    })
}

/// The target's filters, limited to the rows whose filtered columns a GET
/// could read: the select decision for those columns (only policies that
/// cover them all count) adds its row condition. Otherwise a filter on a
/// column the caller may not read would probe its values, through
/// `max-affected` or which rows changed. As in PostgreSQL, where an UPDATE's
/// or DELETE's WHERE needs SELECT on the columns it reads.
pub(in crate::rest) fn readable_filters(
    state: &AppState,
    caller: &Caller,
    target: &Target,
) -> Result<basalt_core::rest::ReadQuery, HttpError> {
    let mut query = target.query.clone();
    let filtered = query.filter_columns();
    if filtered.is_empty() {
        return Ok(query);
    }
    let readable = state.authz().authorize_columns(
        &subject_of(state, caller),
        &target.object,
        "select",
        &filtered,
    );
    if !readable.allowed {
        return Err(ApiError::new(ErrorCode::Forbidden)
            .with_message("Your policies do not allow this.")
            .with_details(format!(
                "the request filters on {}, which you may not read",
                filtered.join(", ")
            ))
            .with_hint("filter on columns your policies let you read")
            .into());
    }
    query.filters.extend(readable.condition);
    Ok(query)
}

/// Plans a `PATCH` of the target's rows with `patch` (one object).
pub fn plan_update(
    state: &AppState,
    caller: &Caller,
    target: &Target,
    patch: &Value,
) -> Result<WritePlan, HttpError> {
    require_filter(state, target)?;
    if !patch.is_object() {
        return Err(WriteError::NotOneObject {
            method: "an update",
        }
        .into());
    }
    // The decision covers the columns written; the filters read only what
    // a GET could (see `readable_filters`).
    let set = body_columns(patch)?;
    let decision = decide(state, caller, &target.object, "update", &set)?;
    let query = readable_filters(state, caller, target)?;
    check_values(&target.table, std::slice::from_ref(patch))?;
    let uid = uid_of(caller);
    let variables = variables(caller, &uid);
    let statement = update_sql(
        &target.table,
        patch.to_string(),
        &set,
        &query,
        decision.condition.as_ref(),
        &variables,
        shown(state, caller, target).as_ref(),
    )?;
    Ok(WritePlan::new(statement, target, None))
}

/// Plans a `DELETE` of the target's rows.
pub fn plan_delete(
    state: &AppState,
    caller: &Caller,
    target: &Target,
) -> Result<WritePlan, HttpError> {
    require_filter(state, target)?;
    let decision = decide(state, caller, &target.object, "delete", &[])?;
    let query = readable_filters(state, caller, target)?;
    let uid = uid_of(caller);
    let variables = variables(caller, &uid);
    let statement = delete_sql(
        &target.table,
        &query,
        decision.condition.as_ref(),
        &variables,
        shown(state, caller, target).as_ref(),
    )?;
    Ok(WritePlan::new(statement, target, None))
}

/// A `PATCH` or `DELETE` needs a filter (unless the config allows none),
/// and takes no `order`, `limit` or `offset`: refused rather than ignored,
/// so `limit=1` never silently changes every matching row.
pub(in crate::rest) fn require_filter(state: &AppState, target: &Target) -> Result<(), HttpError> {
    let query = &target.query;
    if !query.order.is_empty() || query.limit.is_some() || query.offset.is_some() {
        return Err(WriteError::Shaped.into());
    }
    if query.filters.is_empty() && !state.config.rest.allow_unfiltered_writes {
        Err(ErrorCode::FilterRequired.into())
    } else {
        Ok(())
    }
}

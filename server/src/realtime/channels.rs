//! Joining a topic: the channel policy, postgres_changes subscriptions decided per table, and the replay of missed changes on resume.

use super::*;

/// The caller's access to a table's rows, or why not.
pub(super) fn table_access(
    state: &AppState,
    caller: &Caller,
    schema: &str,
    table: &str,
) -> Result<Access, String> {
    let decision = state.authz().authorize(
        &subject_of(state, caller),
        &format!("table:{schema}.{table}"),
        "select",
    );
    if !decision.allowed {
        return Err(decision.reason);
    }
    Ok(Access {
        grants: decision.grants(),
    })
}

/// The specs with `table: "*"` replaced by one per captured table of their
/// schema that the caller may read (tables they may not read are left out:
/// a wildcard asks for what the caller may see). Tables enabled later are
/// not added to a joined channel.
async fn every_table(
    state: &AppState,
    caller: &Caller,
    specs: Vec<ChangeSpec>,
) -> Result<Vec<ChangeSpec>, String> {
    if !specs.iter().any(|spec| spec.table == "*") {
        return Ok(specs);
    }
    let client = state.pool.get().await.map_err(|e| e.to_string())?;
    let enabled = feed::enabled_tables(&client)
        .await
        .map_err(|e| e.to_string())?;
    let mut expanded = Vec::new();
    for spec in specs {
        if spec.table != "*" {
            expanded.push(spec);
            continue;
        }
        let schema = spec
            .schema
            .clone()
            .unwrap_or_else(|| state.config.rest.schema.clone());
        for (_, table) in enabled.iter().filter(|(s, _)| *s == schema) {
            if table_access(state, caller, &schema, table).is_ok() {
                expanded.push(ChangeSpec {
                    table: table.clone(),
                    ..spec.clone()
                });
            }
        }
    }
    Ok(expanded)
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn join(
    state: &AppState,
    hub: &Hub,
    id: u64,
    caller: &Caller,
    reference: Option<Value>,
    topic: String,
    specs: Vec<ChangeSpec>,
    broadcast_self: bool,
    resume_from: Option<i64>,
) -> Vec<String> {
    let limit = state.config.realtime.max_channels_per_connection as usize;
    if hub.joined(id, &topic) {
        return vec![error(
            &reference,
            ErrorCode::RealtimeAlreadyJoined,
            format!("{topic} is joined"),
        )];
    }
    if hub.topics(id) >= limit {
        return vec![error(
            &reference,
            ErrorCode::RealtimeTooManyChannels,
            format!(
                "a connection may join {limit} channels (realtime.max_channels_per_connection)"
            ),
        )];
    }
    if !valid_topic(&topic) {
        return vec![error(
            &reference,
            ErrorCode::RealtimeInvalidTopic,
            "a topic is 1 to 255 bytes without control characters".into(),
        )];
    }
    let decision = state.authz().authorize(
        &subject_of(state, caller),
        &format!("channel:{topic}"),
        "subscribe",
    );
    if !decision.allowed {
        return vec![error(&reference, ErrorCode::Forbidden, decision.reason)];
    }
    let specs = match every_table(state, caller, specs).await {
        Ok(specs) => specs,
        Err(problem) => return vec![error(&reference, ErrorCode::DatabaseUnavailable, problem)],
    };
    let mut subscriptions = Vec::new();
    for spec in specs {
        let schema = spec
            .schema
            .clone()
            .unwrap_or_else(|| state.config.rest.schema.clone());
        if !state.schema().names().contains(&schema) {
            return vec![error(
                &reference,
                ErrorCode::RealtimeUnknownSchema,
                format!("{schema} is not exposed"),
            )];
        }
        let event = match spec.event.as_deref() {
            None | Some("*") => None,
            Some(event @ ("INSERT" | "UPDATE" | "DELETE")) => Some(event.to_owned()),
            Some(other) => {
                return vec![error(
                    &reference,
                    ErrorCode::RealtimeInvalidEvent,
                    format!("`{other}` is not INSERT, UPDATE, DELETE or *"),
                )]
            }
        };
        let known = crate::rest::snapshot(state, &schema, |s| s.tables.contains_key(&spec.table))
            .await
            .tables
            .contains_key(&spec.table);
        let access = match table_access(state, caller, &schema, &spec.table) {
            Ok(access) => access,
            Err(reason) => return vec![error(&reference, ErrorCode::Forbidden, reason)],
        };
        if !known {
            return vec![error(
                &reference,
                ErrorCode::TableNotFound,
                format!("{schema}.{}", spec.table),
            )];
        }
        let filter = match spec.filter.as_deref().filter(|f| !f.is_empty()) {
            None => None,
            Some(text) => match parse_condition(text) {
                Ok(filter) => match basalt_core::filter::eval::evaluable(&filter) {
                    Ok(()) => Some(filter),
                    Err(problem) => {
                        return vec![error(&reference, ErrorCode::RealtimeInvalidFilter, problem)]
                    }
                },
                Err(problem) => {
                    return vec![error(
                        &reference,
                        ErrorCode::RealtimeInvalidFilter,
                        problem.to_string(),
                    )]
                }
            },
        };
        // A filter may only read columns the caller may read.
        if let (Some(filter), Some(columns)) = (&filter, &access.common_columns()) {
            let used = basalt_core::rest::ReadQuery {
                filters: vec![filter.clone()],
                ..Default::default()
            }
            .named_columns();
            if let Some(hidden) = used.iter().find(|c| !columns.contains(c)) {
                return vec![error(
                    &reference,
                    ErrorCode::Forbidden,
                    format!("the filter reads `{hidden}`, which you may not read"),
                )];
            }
        }
        subscriptions.push((
            Spec {
                event,
                schema,
                table: spec.table,
                filter,
            },
            access,
        ));
    }
    if let Some(from) = resume_from {
        let client = match state.pool.get().await {
            Ok(client) => client,
            Err(problem) => {
                return vec![error(
                    &reference,
                    ErrorCode::DatabaseUnavailable,
                    problem.to_string(),
                )]
            }
        };
        match feed::read_after(&client, from, 1).await {
            Ok(Page::Gap { pruned_through }) => {
                return vec![error(
                    &reference,
                    ErrorCode::FeedGap,
                    format!("changes up to position {pruned_through} are no longer kept; refetch, then join without resume_from"),
                )]
            }
            Ok(_) => {}
            Err(problem) => return vec![error(&reference, ErrorCode::DatabaseUnavailable, problem.to_string())],
        }
    }
    let position = hub.join(id, &topic, broadcast_self, subscriptions, resume_from);
    let mut out = vec![ok(
        &reference,
        json!({"topic": topic, "position": position, "resumed_from": resume_from}),
    )];
    // The channel's presence as it is now; diffs follow.
    if let Ok(client) = state.pool.get().await {
        if let Ok(rows) = client
            .query(
                "SELECT key, jsonb_agg(state ORDER BY updated_at) FROM basalt.presence WHERE topic = $1 GROUP BY key",
                &[&topic],
            )
            .await
        {
            let members: serde_json::Map<String, Value> = rows
                .iter()
                .map(|row| (row.get::<_, String>(0), row.get::<_, Value>(1)))
                .collect();
            out.push(json!({"type": "presence_state", "topic": topic, "state": members}).to_string());
        }
    }
    if let Some(from) = resume_from {
        out.extend(replay(state, hub, id, &topic, from, position).await);
    }
    out
}

/// The changes in `(from, to]` for `topic`'s subscriptions, read from the
/// feed; then live delivery resumes (what arrived meanwhile is flushed).
pub(super) async fn replay(
    state: &AppState,
    hub: &Hub,
    id: u64,
    topic: &str,
    from: i64,
    to: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = from;
    if let Ok(client) = state.pool.get().await {
        'pages: while cursor < to {
            match feed::read_after(&client, cursor, 500).await {
                Ok(Page::Changes(changes)) if !changes.is_empty() => {
                    for change in changes {
                        if change.position > to {
                            break 'pages;
                        }
                        cursor = change.position;
                        out.extend(hub.render_for(id, topic, &change));
                    }
                }
                Ok(Page::Gap { pruned_through }) => {
                    out.push(error(
                        &None,
                        ErrorCode::FeedGap,
                        format!("changes up to position {pruned_through} are no longer kept"),
                    ));
                    hub.cut(id, ErrorCode::FeedGap);
                    return out;
                }
                Ok(_) => break,
                Err(problem) => {
                    // Never go live over a hole: the client resumes later.
                    out.push(error(
                        &None,
                        ErrorCode::DatabaseUnavailable,
                        problem.to_string(),
                    ));
                    hub.cut(id, ErrorCode::RealtimeReplayFailed);
                    return out;
                }
            }
        }
    } else {
        out.push(error(
            &None,
            ErrorCode::DatabaseUnavailable,
            "no database connection".into(),
        ));
        hub.cut(id, ErrorCode::RealtimeReplayFailed);
        return out;
    }
    hub.go_live(id, topic, to);
    out
}

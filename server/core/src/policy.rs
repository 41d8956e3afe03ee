//! The shape of authorization objects: role names, object patterns, the
//! actions each kind of object has, and a policy's validity. Shared by the
//! admin API and by policies declared in the config file.

use crate::filter::{parse_condition, sql::check_variables};

pub const BUILTIN_ROLES: &[&str] = &["anon", "authenticated", "service_role"];

/// A role name: `a-z`, `0-9`, `_`, starting with a letter, at most 63 bytes.
pub fn valid_role_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The actions an object kind has, or `None` for an unknown kind.
pub fn actions_for(object: &str) -> Option<&'static [&'static str]> {
    let (kind, name) = object.split_once(':').unwrap_or((object, ""));
    if object != "*" && name.is_empty() {
        return None;
    }
    Some(match kind {
        "table" => &["select", "insert", "update", "delete", "*"],
        "bucket" => &["read", "write", "delete", "*"],
        "channel" => &["subscribe", "broadcast", "presence", "*"],
        "index" => &["search", "*"],
        "function" => &["execute", "*"],
        "admin" => &["read", "write", "*"],
        "*" => &["*"],
        _ => return None,
    })
}

/// A policy's problem as `(field, problem)`, or `None` when it is valid.
pub fn policy_problem(
    subject: &str,
    object: &str,
    action: &str,
    condition: Option<&str>,
    columns: Option<&[String]>,
) -> Option<(&'static str, String)> {
    let subject_ok = match subject.strip_prefix("user:") {
        Some(id) => id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
        None => valid_role_name(subject),
    };
    if !subject_ok {
        return Some((
            "subject",
            "a role name such as authenticated, or user:<uuid>".into(),
        ));
    }
    if object.trim_end_matches('*').contains('*') {
        return Some((
            "object",
            "`*` may only end a pattern, as in table:public.*".into(),
        ));
    }
    let Some(actions) = actions_for(object) else {
        return Some((
            "object",
            "table:<schema>.<name>, function:<schema>.<name>, bucket:<name>[/<prefix>], channel:<topic>, index:<name> or admin:<area>; a trailing * matches any rest".into(),
        ));
    };
    if !actions.contains(&action) {
        return Some((
            "action",
            format!("for {object} use one of {}", actions.join(", ")),
        ));
    }
    if let Some(condition) = condition {
        let checked = parse_condition(condition).and_then(|parsed| {
            check_variables(&parsed)?;
            crate::filter::sql::check_literals(&parsed)
        });
        if let Err(error) = checked {
            let hint = crate::errors::Problem::hint(&error)
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            return Some(("condition", format!("{error}{hint}")));
        }
    }
    if let Some(columns) = columns {
        if columns.is_empty()
            || columns
                .iter()
                .any(|c| c.is_empty() || c.contains(['\0', '"']))
        {
            return Some(("columns", "a non-empty list of column names".into()));
        }
    }
    None
}

/// One matching policy's share of a decision: its row condition (`None`:
/// every row) and columns (`None`: all).
pub type Grant = (Option<crate::filter::Expr>, Option<Vec<String>>);

/// The columns of `row` that `grants` show (`Some(None)`: all), or `None`
/// when no grant's condition holds on it. Policies combine per row: a
/// broad policy with few columns and a narrow one with many never show the
/// many columns of every row. A condition that cannot be decided in memory
/// does not hold.
pub fn visible_columns(
    grants: &[Grant],
    row: &serde_json::Value,
    caller: &crate::filter::sql::Caller,
) -> Option<Option<Vec<String>>> {
    let mut visible = false;
    let mut columns: Vec<String> = Vec::new();
    for (condition, granted) in grants {
        let holds = condition.as_ref().is_none_or(|condition| {
            crate::filter::eval::matches(condition, row, caller) == Some(true)
        });
        if !holds {
            continue;
        }
        visible = true;
        match granted {
            None => return Some(None),
            Some(granted) => columns.extend(granted.iter().cloned()),
        }
    }
    visible.then_some(Some(columns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_checked_field_by_field() {
        assert_eq!(
            policy_problem(
                "authenticated",
                "table:public.posts",
                "select",
                Some("owner=eq.{auth.uid}"),
                None
            ),
            None
        );
        assert_eq!(
            policy_problem(
                "user:7f0c3b5e-0000-4000-8000-000000000001",
                "bucket:avatars/*",
                "write",
                None,
                Some(&["a".into()])
            ),
            None
        );
        let field = |s, o, a, c: Option<&str>| policy_problem(s, o, a, c, None).map(|(f, _)| f);
        assert_eq!(
            field("anon", "table:x", "select", Some("a=eq.{user.id}")),
            Some("condition"),
            "a misspelled variable"
        );
        assert_eq!(
            field("anon", "table:*.audit", "select", None),
            Some("object"),
            "* only at the end"
        );
        assert_eq!(
            field("Bad Name", "table:x", "select", None),
            Some("subject")
        );
        assert_eq!(
            field("user:nope", "table:x", "select", None),
            Some("subject")
        );
        assert_eq!(field("anon", "tables:x", "select", None), Some("object"));
        assert_eq!(field("anon", "table:", "select", None), Some("object"));
        assert_eq!(field("anon", "table:x", "read", None), Some("action"));
        assert_eq!(
            field("anon", "table:x", "select", Some("a=nope.1")),
            Some("condition")
        );
        assert_eq!(
            field("anon", "table:x", "select", Some("a=eq.{auth.password}")),
            Some("condition")
        );
        assert_eq!(
            policy_problem("anon", "table:x", "select", None, Some(&[])).map(|(f, _)| f),
            Some("columns")
        );
        assert!(valid_role_name("org_admin2"));
        assert!(!valid_role_name("2fast") && !valid_role_name("Admin") && !valid_role_name(""));
    }
}

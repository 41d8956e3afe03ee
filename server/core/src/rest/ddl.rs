//! DDL for the admin schema API (`/admin/v1/tables`): JSON descriptions of
//! tables, columns, constraints, indexes and foreign keys become SQL text.
//! DDL takes no bound parameters, so every identifier is quoted and every
//! value is written as a quoted literal; types and default expressions are
//! checked against narrow grammars; check constraints are written in the
//! data API's filter grammar. The text is also what the app's migration
//! history records.

use super::error::DdlError;
use super::plan::{quote, Scope, Table};
use crate::filter::parse_condition;
use crate::filter::sql::{to_sql, Caller, Param};
use serde::Deserialize;
use serde_json::Value;

/// Functions a column default may call (anything else is a literal value).
pub const DEFAULT_EXPRESSIONS: &[&str] = &[
    "now()",
    "current_timestamp",
    "current_date",
    "gen_random_uuid()",
    "auth.uid()",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default = "yes")]
    pub nullable: bool,
    /// A literal value (JSON), written as a quoted literal of the column's type.
    #[serde(default)]
    pub default: Option<Value>,
    /// One of [`DEFAULT_EXPRESSIONS`].
    #[serde(default)]
    pub default_expression: Option<String>,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub primary_key: bool,
    /// A condition in the filter grammar, e.g. `score=gte.0`.
    #[serde(default)]
    pub check: Option<String>,
    #[serde(default)]
    pub references: Option<Reference>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    pub table: String,
    #[serde(default)]
    pub column: Option<String>,
    #[serde(default)]
    pub on_delete: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTable {
    pub name: String,
    pub columns: Vec<ColumnSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlterColumn {
    pub name: String,
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    #[serde(default)]
    pub nullable: Option<bool>,
    #[serde(default)]
    pub default: Option<Value>,
    #[serde(default)]
    pub default_expression: Option<String>,
    #[serde(default)]
    pub drop_default: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub name: String,
    pub condition: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlterTable {
    #[serde(default)]
    pub add_columns: Vec<ColumnSpec>,
    #[serde(default)]
    pub drop_columns: Vec<String>,
    /// `{"old": "new"}`.
    #[serde(default)]
    pub rename_columns: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub alter_columns: Vec<AlterColumn>,
    /// Each a list of columns that together are unique.
    #[serde(default)]
    pub add_unique: Vec<Vec<String>>,
    #[serde(default)]
    pub add_checks: Vec<Check>,
    #[serde(default)]
    pub drop_constraints: Vec<String>,
    #[serde(default)]
    pub rename_to: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIndex {
    pub columns: Vec<String>,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateForeignKey {
    pub columns: Vec<String>,
    pub references: ForeignTarget,
    #[serde(default)]
    pub on_delete: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForeignTarget {
    pub table: String,
    pub columns: Vec<String>,
}

/// A name PostgreSQL accepts (quoted): 1 to 63 bytes, no NUL.
pub fn check_name(what: &str, name: &str) -> Result<(), DdlError> {
    if name.is_empty() || name.len() > 63 || name.contains('\0') {
        return Err(DdlError::BadName {
            what: what.into(),
            name: name.into(),
        });
    }
    Ok(())
}

/// Type names made of several words: the only ones with spaces.
const MULTI_WORD_TYPES: &[&str] = &[
    "double precision",
    "character varying",
    "bit varying",
    "timestamp with time zone",
    "timestamp without time zone",
    "time with time zone",
    "time without time zone",
];

/// A type name that can be written into SQL as it is: one word (letters,
/// digits, `_`, starting with a letter or `_`) or one of
/// [`MULTI_WORD_TYPES`], then optionally `(n)` or `(n,m)` with digits only,
/// then optionally `[]`. Nothing else (no other spaces, no quotes, no
/// operators) passes, so the name cannot carry SQL; PostgreSQL rejects
/// unknown types. Returns the name lowercased.
pub fn checked_type_name(type_name: &str) -> Result<String, DdlError> {
    let lower = type_name.trim().to_ascii_lowercase();
    let refuse = || DdlError::NotAType {
        type_name: type_name.into(),
    };
    let body = lower.strip_suffix("[]").unwrap_or(&lower);
    let (name, modifier) = match body.split_once('(') {
        Some((name, rest)) => (name, Some(rest.strip_suffix(')').ok_or_else(refuse)?)),
        None => (body, None),
    };
    let word = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !(word || MULTI_WORD_TYPES.contains(&name)) {
        return Err(refuse());
    }
    if let Some(modifier) = modifier {
        let numbers: Vec<&str> = modifier.split(',').collect();
        let digits = numbers.len() <= 2
            && numbers
                .iter()
                .all(|n| !n.is_empty() && n.len() <= 4 && n.chars().all(|c| c.is_ascii_digit()));
        if !digits {
            return Err(refuse());
        }
    }
    Ok(lower)
}

/// Checks a column type for DDL (see [`checked_type_name`]).
pub fn check_type(type_name: &str) -> Result<(), DdlError> {
    checked_type_name(type_name).map(|_| ())
}

/// A quoted SQL literal (standard-conforming strings: `'` doubled).
pub fn literal(text: &str) -> Result<String, DdlError> {
    if text.contains('\0') {
        return Err(DdlError::Nul);
    }
    Ok(format!("'{}'", text.replace('\'', "''")))
}

fn default_sql(
    type_name: &str,
    value: &Option<Value>,
    expression: &Option<String>,
) -> Result<Option<String>, DdlError> {
    match (value, expression) {
        (Some(_), Some(_)) => Err(DdlError::TwoDefaults),
        (Some(Value::Null), None) => Ok(Some("NULL".into())),
        (Some(value), None) => {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            Ok(Some(format!("{}::{type_name}", literal(&text)?)))
        }
        (None, Some(expression)) => {
            let expression = expression.trim().to_ascii_lowercase();
            if DEFAULT_EXPRESSIONS.contains(&expression.as_str()) {
                Ok(Some(expression))
            } else {
                Err(DdlError::NotADefault {
                    expression,
                    allowed: DEFAULT_EXPRESSIONS,
                })
            }
        }
        (None, None) => Ok(None),
    }
}

fn on_delete(action: &Option<String>) -> Result<String, DdlError> {
    Ok(match action.as_deref() {
        None => String::new(),
        Some("cascade") => " ON DELETE CASCADE".into(),
        Some("set null") => " ON DELETE SET NULL".into(),
        Some("restrict") => " ON DELETE RESTRICT".into(),
        Some("no action") => " ON DELETE NO ACTION".into(),
        Some(other) => {
            return Err(DdlError::NotAnOnDelete {
                action: other.into(),
            })
        }
    })
}

/// A check condition in the filter grammar as SQL with literal values,
/// over the columns of `table`.
fn check_sql(table: &Table, condition: &str) -> Result<String, DdlError> {
    let expr = parse_condition(condition)?;
    let nobody = Caller {
        uid: None,
        role: "anon",
        claims: &Value::Null,
    };
    let mut params = Vec::new();
    let sql = to_sql(&expr, &Scope { table, alias: None }, &nobody, &mut params)?;
    if !crate::filter::sql::variables(&expr).is_empty() {
        return Err(DdlError::CheckWithVariables);
    }
    let values = params
        .iter()
        .map(|param| match param {
            Param::Text(Some(text)) => literal(text),
            Param::Text(None) => Ok("NULL".into()),
            Param::TextArray(items) => {
                let items = items
                    .iter()
                    .map(|item| match item {
                        Some(text) => literal(text),
                        None => Ok("NULL".into()),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(format!("ARRAY[{}]::text[]", items.join(", ")))
            }
        })
        .collect::<Result<Vec<_>, DdlError>>()?;
    // One pass over the SQL: `$n` outside quoted identifiers becomes its
    // literal; nothing substituted is scanned again.
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                out.push(c);
            }
            '$' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut number = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    number.push(*d);
                    chars.next();
                }
                let index: usize = number.parse().expect("digits");
                out.push_str(&values[index - 1]);
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// A column definition for CREATE TABLE / ADD COLUMN; `table` is the table
/// as it will be (for check conditions).
fn column_sql(table: &Table, column: &ColumnSpec) -> Result<String, DdlError> {
    check_name("column", &column.name)?;
    check_type(&column.type_name)?;
    let mut sql = format!("{} {}", quote(&column.name), column.type_name);
    if column.primary_key {
        sql.push_str(" PRIMARY KEY");
    } else if !column.nullable {
        sql.push_str(" NOT NULL");
    }
    if let Some(default) = default_sql(
        &column.type_name,
        &column.default,
        &column.default_expression,
    )? {
        sql.push_str(&format!(" DEFAULT {default}"));
    }
    if column.unique {
        sql.push_str(" UNIQUE");
    }
    if let Some(check) = &column.check {
        sql.push_str(&format!(" CHECK ({})", check_sql(table, check)?));
    }
    if let Some(reference) = &column.references {
        check_name("table", &reference.table)?;
        sql.push_str(&format!(
            " REFERENCES {}.{}",
            quote(&table.schema),
            quote(&reference.table)
        ));
        if let Some(target) = &reference.column {
            sql.push_str(&format!(" ({})", quote(target)));
        }
        sql.push_str(&on_delete(&reference.on_delete)?);
    }
    Ok(sql)
}

fn described(schema: &str, name: &str, columns: &[ColumnSpec]) -> Table {
    Table {
        schema: schema.into(),
        name: name.into(),
        columns: columns
            .iter()
            .map(|c| (c.name.clone(), c.type_name.clone()))
            .collect(),
        ..Table::default()
    }
}

pub fn create_table_sql(schema: &str, spec: &CreateTable) -> Result<Vec<String>, DdlError> {
    check_name("table", &spec.name)?;
    if spec.columns.is_empty() {
        return Err(DdlError::NoColumns);
    }
    let table = described(schema, &spec.name, &spec.columns);
    let columns = spec
        .columns
        .iter()
        .map(|column| column_sql(&table, column))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vec![format!(
        "CREATE TABLE {} (\n    {}\n)",
        table.qualified(),
        columns.join(",\n    ")
    )])
}

/// One statement per change, in a fixed order: renames of columns, drops,
/// additions, alterations, constraints, and the table's rename last.
pub fn alter_table_sql(table: &Table, change: &AlterTable) -> Result<Vec<String>, DdlError> {
    let target = table.qualified();
    let mut statements = Vec::new();
    let mut after = table.clone();
    for (old, new) in &change.rename_columns {
        check_name("column", new)?;
        statements.push(format!(
            "ALTER TABLE {target} RENAME COLUMN {} TO {}",
            quote(old),
            quote(new)
        ));
        for column in &mut after.columns {
            if &column.0 == old {
                column.0 = new.clone();
            }
        }
    }
    for column in &change.drop_columns {
        statements.push(format!(
            "ALTER TABLE {target} DROP COLUMN {}",
            quote(column)
        ));
        after.columns.retain(|(name, _)| name != column);
    }
    for column in &change.add_columns {
        after
            .columns
            .push((column.name.clone(), column.type_name.clone()));
    }
    for column in &change.add_columns {
        statements.push(format!(
            "ALTER TABLE {target} ADD COLUMN {}",
            column_sql(&after, column)?
        ));
    }
    for alter in &change.alter_columns {
        let column = quote(&alter.name);
        if let Some(type_name) = &alter.type_name {
            check_type(type_name)?;
            statements.push(format!(
                "ALTER TABLE {target} ALTER COLUMN {column} TYPE {type_name} USING {column}::{type_name}"
            ));
        }
        match alter.nullable {
            Some(true) => statements.push(format!(
                "ALTER TABLE {target} ALTER COLUMN {column} DROP NOT NULL"
            )),
            Some(false) => statements.push(format!(
                "ALTER TABLE {target} ALTER COLUMN {column} SET NOT NULL"
            )),
            None => {}
        }
        let type_name = alter
            .type_name
            .clone()
            .or_else(|| {
                after
                    .columns
                    .iter()
                    .find(|(name, _)| name == &alter.name)
                    .map(|(_, t)| t.clone())
            })
            .ok_or_else(|| DdlError::UnknownColumn {
                table: table.name.clone(),
                column: alter.name.clone(),
            })?;
        if alter.drop_default {
            statements.push(format!(
                "ALTER TABLE {target} ALTER COLUMN {column} DROP DEFAULT"
            ));
        } else if let Some(default) =
            default_sql(&type_name, &alter.default, &alter.default_expression)?
        {
            statements.push(format!(
                "ALTER TABLE {target} ALTER COLUMN {column} SET DEFAULT {default}"
            ));
        }
    }
    for columns in &change.add_unique {
        if columns.is_empty() {
            return Err(DdlError::EmptyUnique);
        }
        let list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
        statements.push(format!(
            "ALTER TABLE {target} ADD UNIQUE ({})",
            list.join(", ")
        ));
    }
    for check in &change.add_checks {
        check_name("constraint", &check.name)?;
        statements.push(format!(
            "ALTER TABLE {target} ADD CONSTRAINT {} CHECK ({})",
            quote(&check.name),
            check_sql(&after, &check.condition)?
        ));
    }
    for name in &change.drop_constraints {
        statements.push(format!(
            "ALTER TABLE {target} DROP CONSTRAINT {}",
            quote(name)
        ));
    }
    if let Some(new) = &change.rename_to {
        check_name("table", new)?;
        statements.push(format!("ALTER TABLE {target} RENAME TO {}", quote(new)));
    }
    if statements.is_empty() {
        return Err(DdlError::NoChange);
    }
    Ok(statements)
}

pub fn create_index_sql(table: &Table, index: &CreateIndex) -> Result<String, DdlError> {
    if index.columns.is_empty() {
        return Err(DdlError::EmptyIndex);
    }
    let name = match &index.name {
        Some(name) => {
            check_name("index", name)?;
            format!("{} ", quote(name))
        }
        None => String::new(),
    };
    let list: Vec<String> = index.columns.iter().map(|c| quote(c)).collect();
    Ok(format!(
        "CREATE {}INDEX {name}ON {} ({})",
        if index.unique { "UNIQUE " } else { "" },
        table.qualified(),
        list.join(", ")
    ))
}

pub fn create_foreign_key_sql(table: &Table, fk: &CreateForeignKey) -> Result<String, DdlError> {
    if fk.columns.is_empty() || fk.columns.len() != fk.references.columns.len() {
        return Err(DdlError::ForeignKeyColumns);
    }
    check_name("table", &fk.references.table)?;
    let name = match &fk.name {
        Some(name) => {
            check_name("constraint", name)?;
            format!("CONSTRAINT {} ", quote(name))
        }
        None => String::new(),
    };
    let list = |columns: &[String]| {
        columns
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(format!(
        "ALTER TABLE {} ADD {name}FOREIGN KEY ({}) REFERENCES {}.{} ({}){}",
        table.qualified(),
        list(&fk.columns),
        quote(&table.schema),
        quote(&fk.references.table),
        list(&fk.references.columns),
        on_delete(&fk.on_delete)?
    ))
}

pub fn drop_table_sql(table: &Table, cascade: bool) -> String {
    format!(
        "DROP TABLE {}{}",
        table.qualified(),
        if cascade { " CASCADE" } else { "" }
    )
}

#[cfg(test)]
#[path = "ddl_tests.rs"]
mod tests;

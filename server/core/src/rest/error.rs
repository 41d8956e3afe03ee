//! The errors of the data API's pure stages, each knowing its catalogue code
//! and hint ([`Problem`]); the server renders them all through
//! [`ApiError::from_problem`](crate::errors::ApiError::from_problem).
//!
//! - [`QueryError`]: the request's query string, `Prefer` header and the
//!   names it resolves against the schema (`invalid_query`).
//! - [`CursorError`]: a `cursor=` that cannot continue this query
//!   (`invalid_cursor`).
//! - [`WriteError`]: a write's body and shape (`invalid_query`; a value
//!   of the wrong type is `invalid_value`).
//! - [`DdlError`]: a table definition of the admin API (`validation_failed`).

use std::fmt;

use crate::errors::{ErrorCode, Problem};
use crate::filter::FilterError;

/// "did you mean `x`?" when a close name exists.
fn closest(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(close) => format!("did you mean `{close}`?"),
        None => "check the name".to_owned(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// A filter, a column name or a variable.
    Filter(FilterError),
    /// A `::type` cast in `select=` that names no type.
    Cast(DdlError),
    NotWholeNumber {
        name: String,
        value: String,
    },
    /// `Prefer: max-affected=` that is not a number.
    MaxAffected {
        value: String,
    },
    EmbedWithoutRelation {
        item: String,
    },
    /// `...rel(cols)` over a to-many relationship (PostgREST's `PGRST119`).
    SpreadNotToOne {
        relation: String,
    },
    /// Two embeds answered under one name (PostgreSQL's `42712`).
    DuplicateEmbed {
        name: String,
    },
    NotAColumn {
        item: String,
    },
    NotAnOrderModifier {
        modifier: String,
    },
    NulInParameter {
        key: String,
    },
    UnknownTable {
        schema: String,
        name: String,
        suggestion: Option<String>,
    },
    /// An embed naming no table. (No suggestion: a hint names only what the
    /// caller may read, and the decision comes after.)
    NothingToEmbed {
        relation: String,
    },
    NoRelationship {
        parent: String,
        target: String,
        hint: Option<String>,
    },
    /// `candidates` are spelled as `target!hint` for the caller to pick.
    AmbiguousRelationship {
        parent: String,
        target: String,
        candidates: Vec<String>,
    },
    UnknownFunction {
        schema: String,
        name: String,
        suggestion: Option<String>,
    },
    /// `given` is "no arguments" or "the arguments a, b"; `shapes` the overloads.
    FunctionArguments {
        name: String,
        given: String,
        shapes: Vec<String>,
    },
    /// Several overloads take the given arguments.
    AmbiguousFunction {
        schema: String,
        candidates: Vec<String>,
    },
    /// An RPC body that is not one object of arguments.
    ArgumentsNotAnObject,
    /// Text or bytes for a function's whole-body argument that are not
    /// what its type takes (`text` needs UTF-8).
    BodyNotText,
    /// Filters or `select=` on a function that returns no table's rows.
    NotRows {
        function: String,
    },
}

impl From<FilterError> for QueryError {
    fn from(error: FilterError) -> Self {
        QueryError::Filter(error)
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use QueryError::*;
        match self {
            Filter(error) => error.fmt(f),
            Cast(error) => error.fmt(f),
            NotWholeNumber { name, value } => write!(f, "`{name}={value}` is not a whole number"),
            MaxAffected { value } => write!(f, "`max-affected={value}` is not a whole number"),
            EmbedWithoutRelation { item } => write!(f, "`{item}` names no relation"),
            DuplicateEmbed { name } => write!(f, "table name \"{name}\" specified more than once"),
            SpreadNotToOne { relation } => write!(
                f,
                "`{relation}` is related to many rows: only a to-one embed can be spread"
            ),
            NotAColumn { item } => write!(f, "`{item}` is not a column"),
            NotAnOrderModifier { modifier } => write!(f, "`{modifier}` is not an order modifier"),
            NulInParameter { key } => write!(f, "the parameter `{key}` contains a NUL character"),
            UnknownTable { schema, name, .. } => {
                write!(f, "`{schema}` has no table or view `{name}`")
            }
            NothingToEmbed { relation } => write!(f, "there is no `{relation}` to embed"),
            NoRelationship {
                parent,
                target,
                hint,
            } => {
                write!(f, "no relationship between `{parent}` and `{target}`")?;
                match hint {
                    Some(hint) => write!(f, " matches `!{hint}`"),
                    None => Ok(()),
                }
            }
            AmbiguousRelationship {
                parent,
                target,
                candidates,
            } => write!(
                f,
                "`{parent}` and `{target}` are related in {} ways",
                candidates.len()
            ),
            UnknownFunction { schema, name, .. } => {
                write!(f, "`{schema}` has no function `{name}`")
            }
            FunctionArguments { name, given, .. } => {
                write!(f, "`{name}` cannot be called with {given}")
            }
            AmbiguousFunction { schema, candidates } => write!(
                f,
                "could not choose the best candidate function between: {}",
                candidates
                    .iter()
                    .map(|c| format!("{schema}.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ArgumentsNotAnObject => {
                f.write_str("the body of an RPC call is one JSON object of arguments")
            }
            BodyNotText => f.write_str("a text/plain body must be UTF-8"),
            NotRows { function } => write!(
                f,
                "`{function}` does not return rows of a table, so its result takes no filters"
            ),
        }
    }
}

impl Problem for QueryError {
    fn code(&self) -> ErrorCode {
        match self {
            QueryError::UnknownFunction { .. } | QueryError::FunctionArguments { .. } => {
                ErrorCode::FunctionNotFound
            }
            QueryError::AmbiguousRelationship { .. } => ErrorCode::AmbiguousEmbed,
            QueryError::AmbiguousFunction { .. } => ErrorCode::AmbiguousFunction,
            _ => ErrorCode::InvalidQuery,
        }
    }

    fn hint(&self) -> Option<String> {
        use QueryError::*;
        Some(match self {
            Filter(error) => return error.hint(),
            Cast(error) => return error.hint(),
            NotWholeNumber { name, .. } => format!("write {name}=10"),
            EmbedWithoutRelation { .. } => "write select=title,author(name)".into(),
            SpreadNotToOne { .. } => "embed it without `...` to get an array".into(),
            DuplicateEmbed { .. } => {
                "give each embed its own name with an alias: select=*,a:users(*),b:users!editor_id(*)"
                    .into()
            }
            NotAColumn { .. } => "write select=id,title,author(name)".into(),
            NotAnOrderModifier { .. } => {
                "write order=column.asc|desc[.nullsfirst|nullslast]".into()
            }
            UnknownTable { suggestion, .. } | UnknownFunction { suggestion, .. } => {
                closest(suggestion)
            }
            NothingToEmbed { .. } => "embed a table related to this one by a foreign key".into(),
            NoRelationship { .. } => {
                "embedding follows foreign keys: add one, or check the names in select=".into()
            }
            AmbiguousRelationship { candidates, .. } => {
                format!("pick one: {}", candidates.join(", "))
            }
            FunctionArguments { shapes, .. } => format!(
                "it takes {} (arguments with defaults may be left out)",
                shapes.join(" or ")
            ),
            AmbiguousFunction { .. } => {
                "rename the arguments of one overload, or drop one of them".into()
            }
            MaxAffected { .. }
            | NulInParameter { .. }
            | ArgumentsNotAnObject
            | BodyNotText
            | NotRows { .. } => return None,
        })
    }

    fn upstream(&self) -> Option<&'static str> {
        use QueryError::*;
        match self {
            Filter(error) => error.upstream(),
            NothingToEmbed { .. } | NoRelationship { .. } => Some("PGRST200"),
            AmbiguousRelationship { .. } => Some("PGRST201"),
            UnknownFunction { .. } | FunctionArguments { .. } => Some("PGRST202"),
            AmbiguousFunction { .. } => Some("PGRST203"),
            DuplicateEmbed { .. } => Some("42712"),
            SpreadNotToOne { .. } => Some("PGRST119"),
            UnknownTable { .. } => Some("42P01"),
            _ => None,
        }
    }
}

impl std::error::Error for QueryError {}

/// An `Accept-Profile`/`Content-Profile` naming a schema that is not exposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError {
    pub asked: String,
    pub exposed: Vec<String>,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not one of the exposed schemas: {}",
            self.asked,
            self.exposed.join(", ")
        )
    }
}

impl Problem for ProfileError {
    fn code(&self) -> ErrorCode {
        ErrorCode::UnknownProfile
    }
}

impl std::error::Error for ProfileError {}

/// Why a `Range` header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeError {
    /// Not `<first>-[<last>]` (400).
    Malformed { header: String },
    /// The last row before the first (416).
    Backwards { first: u64, last: u64 },
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeError::Malformed { header } => {
                write!(f, "`Range: {header}` is not a range of rows")
            }
            RangeError::Backwards { first, last } => {
                write!(f, "the range {first}-{last} ends before it starts")
            }
        }
    }
}

impl Problem for RangeError {
    fn code(&self) -> ErrorCode {
        match self {
            RangeError::Malformed { .. } => ErrorCode::InvalidQuery,
            RangeError::Backwards { .. } => ErrorCode::RangeNotSatisfiable,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            RangeError::Malformed { .. } => Some("write Range: 0-9 for the first ten rows".into()),
            RangeError::Backwards { .. } => None,
        }
    }
}

impl std::error::Error for RangeError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorError {
    WithOffset,
    /// No primary key and no `order=` to page by.
    NoKey {
        table: String,
    },
    /// An `order=` column the page does not return as it is.
    OrderNotReturned {
        column: String,
    },
    /// The token's signature or encoding is wrong.
    Altered,
    /// A genuine token of another query.
    OtherQuery,
}

impl fmt::Display for CursorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CursorError::WithOffset => f.write_str("cursor= and offset= cannot be combined"),
            CursorError::NoKey { table } => write!(
                f,
                "`{table}` has no primary key, so a cursor needs order= over unique columns"
            ),
            CursorError::OrderNotReturned { column } => write!(
                f,
                "a cursor orders by `{column}`, which the select= does not return as is"
            ),
            CursorError::Altered => {
                f.write_str("the cursor was altered or belongs to another query")
            }
            CursorError::OtherQuery => {
                f.write_str("the cursor belongs to a different order= or filters")
            }
        }
    }
}

impl Problem for CursorError {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidCursor
    }

    fn hint(&self) -> Option<String> {
        let hint = match self {
            CursorError::WithOffset => "drop offset=; the cursor says where the page starts",
            CursorError::OrderNotReturned { .. } => {
                "select the order= and primary key columns (or *)"
            }
            CursorError::OtherQuery => "keep the same filters and order= while paging",
            CursorError::NoKey { .. } | CursorError::Altered => return None,
        };
        Some(hint.to_owned())
    }
}

impl std::error::Error for CursorError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// A filter or a column of the statement around the write.
    Filter(FilterError),
    NotWritable {
        column: String,
    },
    NoColumns,
    NotAnObject,
    NotObjects,
    /// `at` is empty, or " (row n)" when the body holds several rows.
    WrongType {
        column: String,
        type_name: String,
        value: String,
        at: String,
    },
    /// A batch operation's `rows` that are neither an object nor an array.
    BatchRows {
        table: String,
    },
    /// A PATCH (or a PUT) body that is not one object.
    NotOneObject {
        method: &'static str,
    },
    /// `order`, `limit` or `offset` on an update or delete.
    Shaped,
    /// An upsert on a table without a primary key and no `on_conflict=`.
    NoConflictTarget {
        table: String,
    },
    /// A PUT's filters that are not exactly the primary key; `key` lists it.
    PutFilters {
        table: String,
        key: Vec<String>,
    },
    PutKeyMismatch {
        column: String,
        value: String,
    },
    PutMissing {
        columns: Vec<String>,
    },
    /// A `select=` column of a write's representation the row lacks.
    UnknownColumn {
        table: String,
        column: String,
    },
    /// Embeds or casts in a write's `select=`.
    SelectNotColumns,
}

impl From<FilterError> for WriteError {
    fn from(error: FilterError) -> Self {
        WriteError::Filter(error)
    }
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Filter(error) => error.fmt(f),
            WriteError::NotWritable { column } => write!(f, "`{column}` is not a column to write"),
            WriteError::NoColumns => f.write_str("the body names no column"),
            WriteError::NotAnObject => f.write_str("every element of the array must be an object"),
            WriteError::NotObjects => {
                f.write_str("the body must be a JSON object or an array of objects")
            }
            WriteError::WrongType {
                column,
                type_name,
                value,
                at,
            } => write!(f, "`{column}` is {type_name}; {value} is not{at}"),
            WriteError::BatchRows { table } => {
                write!(
                    f,
                    "`rows` for {table} must be an object or an array of objects"
                )
            }
            WriteError::NotOneObject { method } => {
                write!(f, "the body of {method} must be one JSON object")
            }
            WriteError::Shaped => {
                f.write_str("order, limit and offset do not apply to updates and deletes")
            }
            WriteError::NoConflictTarget { table } => {
                write!(f, "`{table}` has no primary key to resolve conflicts on")
            }
            WriteError::PutFilters { .. } => {
                f.write_str("PUT takes the primary key as filters and nothing else")
            }
            WriteError::PutKeyMismatch { column, value } => write!(
                f,
                "the body's `{column}` must equal the filter's value `{value}`"
            ),
            WriteError::PutMissing { columns } => write!(
                f,
                "PUT replaces the whole row; the body lacks {}",
                columns.join(", ")
            ),
            WriteError::UnknownColumn { table, column } => {
                write!(f, "`{table}` has no column `{column}`")
            }
            WriteError::SelectNotColumns => {
                f.write_str("a write's select= takes columns and renames only")
            }
        }
    }
}

impl Problem for WriteError {
    fn code(&self) -> ErrorCode {
        match self {
            WriteError::WrongType { .. } => ErrorCode::InvalidValue,
            // The body is not the objects a write takes: PGRST102's entry.
            WriteError::NotObjects | WriteError::NotAnObject | WriteError::NotOneObject { .. } => {
                ErrorCode::InvalidJson
            }
            _ => ErrorCode::InvalidQuery,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            WriteError::Filter(error) => error.hint(),
            WriteError::NoColumns => Some("send objects such as {\"title\": \"Hello\"}".into()),
            WriteError::WrongType {
                column, type_name, ..
            } => Some(format!("send a value of type {type_name} for `{column}`")),
            WriteError::Shaped => Some("select the rows with filters, e.g. id=eq.1".into()),
            WriteError::NoConflictTarget { .. } => {
                Some("name a unique column: on_conflict=email".into())
            }
            WriteError::PutFilters { table, key } => Some(format!(
                "write PUT /rest/v1/{table}?{}",
                key.iter()
                    .map(|k| format!("{k}=eq.<value>"))
                    .collect::<Vec<_>>()
                    .join("&")
            )),
            WriteError::PutMissing { .. } => {
                Some("send every column, or use PATCH to change some".into())
            }
            WriteError::SelectNotColumns => {
                Some("read embedded resources with a GET after the write".into())
            }
            _ => None,
        }
    }

    fn upstream(&self) -> Option<&'static str> {
        match self {
            WriteError::Filter(error) => error.upstream(),
            WriteError::NotWritable { .. } => Some("PGRST204"),
            WriteError::PutFilters { .. } => Some("PGRST105"),
            WriteError::PutKeyMismatch { .. } => Some("PGRST115"),
            WriteError::NotObjects | WriteError::NotAnObject | WriteError::NotOneObject { .. } => {
                Some("PGRST102")
            }
            WriteError::UnknownColumn { .. } => Some("42703"),
            _ => None,
        }
    }
}

impl std::error::Error for WriteError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DdlError {
    /// A check condition in the filter grammar.
    Condition(FilterError),
    BadName {
        what: String,
        name: String,
    },
    NotAType {
        type_name: String,
    },
    Nul,
    TwoDefaults,
    /// `allowed` lists the default expressions Basalt writes as they are.
    NotADefault {
        expression: String,
        allowed: &'static [&'static str],
    },
    NotAnOnDelete {
        action: String,
    },
    CheckWithVariables,
    NoColumns,
    UnknownColumn {
        table: String,
        column: String,
    },
    EmptyUnique,
    NoChange,
    EmptyIndex,
    ForeignKeyColumns,
}

impl From<FilterError> for DdlError {
    fn from(error: FilterError) -> Self {
        DdlError::Condition(error)
    }
}

impl fmt::Display for DdlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DdlError::*;
        match self {
            Condition(error) => error.fmt(f),
            BadName { what, name } => {
                write!(f, "{what} `{name}` must be 1 to 63 bytes without NUL")
            }
            NotAType { type_name } => write!(f, "`{type_name}` is not a type name"),
            Nul => f.write_str("a value may not contain NUL"),
            TwoDefaults => f.write_str("give either default or default_expression, not both"),
            NotADefault { expression, .. } => {
                write!(f, "`{expression}` is not an allowed default expression")
            }
            NotAnOnDelete { action } => write!(f, "`{action}` is not an on_delete action"),
            CheckWithVariables => f.write_str("a check cannot use {auth.…} variables"),
            NoColumns => f.write_str("a table needs at least one column"),
            UnknownColumn { table, column } => write!(f, "`{table}` has no column `{column}`"),
            EmptyUnique => f.write_str("add_unique needs at least one column"),
            NoChange => f.write_str("the change changes nothing"),
            EmptyIndex => f.write_str("an index needs at least one column"),
            ForeignKeyColumns => {
                f.write_str("a foreign key needs as many columns as it references (at least one)")
            }
        }
    }
}

impl Problem for DdlError {
    fn code(&self) -> ErrorCode {
        ErrorCode::ValidationFailed
    }

    fn hint(&self) -> Option<String> {
        use DdlError::*;
        Some(match self {
            Condition(error) => return error.hint(),
            NotAType { .. } => "use a PostgreSQL type such as text, integer, numeric(10,2), uuid, timestamptz, jsonb or text[]".into(),
            NotADefault { allowed, .. } => {
                format!("use one of {}, or a literal `default`", allowed.join(", "))
            }
            NotAnOnDelete { .. } => "use cascade, set null, restrict or no action".into(),
            NoChange => "give add_columns, drop_columns, rename_columns, alter_columns, add_unique, add_checks, drop_constraints or rename_to".into(),
            _ => return None,
        })
    }
}

impl std::error::Error for DdlError {}

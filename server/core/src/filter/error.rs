//! What can be wrong with a condition: its grammar (parsing) or its binding
//! to a table's columns and the caller's variables (SQL generation).

use std::fmt;

use super::parse::{MAX_LIST_ITEMS, MAX_NESTING};
use super::Op;
use crate::errors::{ErrorCode, Problem};

const VARIABLES: &str = "use {auth.uid}, {auth.role} or {auth.claims.<name>}";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// Parentheses nested deeper than [`MAX_NESTING`].
    TooDeep {
        depth: usize,
    },
    /// A condition part that is not `column=op.value`.
    NotAParameter {
        part: String,
    },
    EmptyCondition,
    /// `or=`/`and=` without a parenthesised list.
    NotAGroup {
        kind: String,
        value: String,
    },
    EmptyGroup {
        kind: String,
    },
    /// A quoted column name inside a group (`"a b".eq.1`) that never closes.
    UnterminatedColumnIn {
        item: String,
    },
    UnterminatedColumn {
        column: String,
    },
    NoOperator {
        item: String,
    },
    /// A group item that is not `column.op.value`.
    NotAGroupItem {
        item: String,
    },
    NoColumnName,
    NotAnOperation {
        column: String,
        text: String,
    },
    UnclosedParenthesis {
        head: String,
    },
    UnknownOperator {
        name: String,
    },
    QuantifierNotAllowed {
        name: String,
        argument: String,
    },
    NotAnIsValue {
        value: String,
    },
    NotAList {
        value: String,
        open: char,
        close: char,
    },
    UnterminatedQuote {
        text: String,
    },
    TooManyItems,
    Unbalanced {
        bracket: char,
        text: String,
    },
    UnbalancedText {
        text: String,
    },
    /// `{name}` that is not one of the `{auth.…}` variables (the text keeps its braces).
    NotAVariable {
        text: String,
    },
    UnfilterableType {
        type_name: String,
    },
    /// An operator given a value of the wrong kind (a list for `eq`).
    WrongValueKind,
    /// `suggestion` is the closest column name; without one, `columns` lists them all.
    UnknownColumn {
        table: String,
        column: String,
        suggestion: Option<String>,
        columns: Vec<String>,
    },
    /// `column->key` on a column that is not json or jsonb.
    NotJson {
        column: String,
        type_name: String,
        path: String,
    },
    EmptyJsonKey {
        path: String,
    },
    /// A column outside what `by` may name (`storage policies`).
    UnusableColumn {
        column: String,
        by: &'static str,
    },
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FilterError::*;
        match self {
            TooDeep { depth } => write!(
                f,
                "the parameter nests {depth} levels deep; at most {MAX_NESTING} are allowed"
            ),
            NotAParameter { part } => write!(f, "`{part}` is not `column=op.value`"),
            EmptyCondition => f.write_str("the condition is empty"),
            NotAGroup { kind, value } => {
                write!(f, "`{kind}` takes a list in parentheses, not `{value}`")
            }
            EmptyGroup { kind } => write!(f, "`{kind}=()` is empty"),
            UnterminatedColumnIn { item } => write!(f, "unterminated quoted column in `{item}`"),
            UnterminatedColumn { column } => write!(f, "unterminated quoted column `{column}`"),
            NoOperator { item } => write!(f, "`{item}` lacks an operator"),
            NotAGroupItem { item } => write!(f, "`{item}` is not `column.op.value`"),
            NoColumnName => f.write_str("a filter lacks its column name"),
            NotAnOperation { column, text } => {
                write!(f, "`{text}` is not `op.value` for column `{column}`")
            }
            UnclosedParenthesis { head } => write!(f, "unclosed `(` in `{head}`"),
            UnknownOperator { name } => write!(f, "`{name}` is not a filter operator"),
            QuantifierNotAllowed { name, argument } => {
                write!(f, "`{name}({argument})` is not allowed")
            }
            NotAnIsValue { value } => write!(f, "`is.{value}` is not allowed"),
            NotAList { value, open, close } => {
                write!(f, "`{value}` is not a list in {open}{close}")
            }
            UnterminatedQuote { text } => write!(f, "unterminated quote in `{text}`"),
            TooManyItems => write!(f, "a list holds more than {MAX_LIST_ITEMS} items"),
            Unbalanced { bracket, text } => write!(f, "unbalanced `{bracket}` in `{text}`"),
            UnbalancedText { text } => write!(f, "unbalanced quotes or brackets in `{text}`"),
            NotAVariable { text } => write!(f, "`{text}` is not a variable"),
            UnfilterableType { type_name } => {
                write!(f, "column type `{type_name}` cannot be used in a filter")
            }
            WrongValueKind => f.write_str("this operator takes another kind of value"),
            UnknownColumn { table, column, .. } => write!(f, "`{table}` has no column `{column}`"),
            NotJson {
                column,
                type_name,
                path,
            } => write!(
                f,
                "`{column}` is {type_name}, not json or jsonb, so `{path}` has no meaning"
            ),
            EmptyJsonKey { path } => write!(f, "`{path}` has an empty JSON key"),
            UnusableColumn { column, by } => write!(f, "{by} cannot use the column `{column}`"),
        }
    }
}

impl Problem for FilterError {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidQuery
    }

    fn upstream(&self) -> Option<&'static str> {
        match self {
            FilterError::UnknownColumn { .. } => Some("42703"),
            _ => None,
        }
    }

    fn hint(&self) -> Option<String> {
        use FilterError::*;
        Some(match self {
            NotAParameter { .. } => "write conditions like user_id=eq.{auth.uid} or or=(public.is.true,owner.eq.{auth.uid})".into(),
            NotAGroup { .. } => "write or=(a.eq.1,b.is.null)".into(),
            NotAGroupItem { .. } => {
                "inside or=(…) write column.op.value, e.g. status.eq.done".into()
            }
            NotAnOperation { .. } => "write e.g. eq.5, in.(1,2), is.null, ilike.*word*".into(),
            UnknownOperator { .. } => {
                let names: Vec<&str> = Op::NAMES.iter().map(|(n, _)| *n).collect();
                format!("use one of: {}", names.join(", "))
            }
            QuantifierNotAllowed { .. } => {
                "(any) and (all) apply to eq, neq, gt, gte, lt, lte, like, ilike, match, imatch"
                    .into()
            }
            NotAnIsValue { .. } => "use is.null, is.true, is.false or is.unknown".into(),
            NotAList { open, close, .. } => format!("write {open}a,b,c{close}"),
            TooManyItems => "split the request, or select fewer columns".into(),
            NotAVariable { .. } => VARIABLES.into(),
            UnknownColumn {
                suggestion: Some(close),
                ..
            } => format!("did you mean `{close}`?"),
            UnknownColumn { columns, .. } => format!("its columns are {}", columns.join(", ")),
            _ => return None,
        })
    }
}

impl std::error::Error for FilterError {}

//! The data API's filter grammar (PostgREST's): `column=op.value`,
//! `not.` negation, `any`/`all` quantifiers, nested `or=(…)`/`and=(…)`, and —
//! for policy conditions — variables such as `{auth.uid}`. Parsing builds an
//! [`Expr`]; [`sql::to_sql`] turns it into SQL text with bound parameters,
//! taking identifiers only from the caller's column resolver (the schema cache).

mod error;
pub mod eval;
pub(crate) mod parse;
pub mod sql;

pub use error::FilterError;
pub use parse::{parse_condition, parse_logical, parse_param};

/// A boolean expression over columns.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Filter(Filter),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
}

/// One comparison: `column op operand`.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub column: String,
    pub op: Op,
    pub quantifier: Option<Quantifier>,
    pub operand: Operand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    Ilike,
    Match,
    Imatch,
    Is,
    IsDistinct,
    In,
    Cs,
    Cd,
    Ov,
    Sl,
    Sr,
    Nxl,
    Nxr,
    Adj,
    Fts,
    Plfts,
    Phfts,
    Wfts,
}

impl Op {
    pub const NAMES: &'static [(&'static str, Op)] = &[
        ("eq", Op::Eq),
        ("neq", Op::Neq),
        ("gt", Op::Gt),
        ("gte", Op::Gte),
        ("lt", Op::Lt),
        ("lte", Op::Lte),
        ("like", Op::Like),
        ("ilike", Op::Ilike),
        ("match", Op::Match),
        ("imatch", Op::Imatch),
        ("is", Op::Is),
        ("isdistinct", Op::IsDistinct),
        ("in", Op::In),
        ("cs", Op::Cs),
        ("cd", Op::Cd),
        ("ov", Op::Ov),
        ("sl", Op::Sl),
        ("sr", Op::Sr),
        ("nxl", Op::Nxl),
        ("nxr", Op::Nxr),
        ("adj", Op::Adj),
        ("fts", Op::Fts),
        ("plfts", Op::Plfts),
        ("phfts", Op::Phfts),
        ("wfts", Op::Wfts),
    ];

    /// The operator's name in the grammar.
    pub fn name(self) -> &'static str {
        Op::NAMES
            .iter()
            .find(|(_, op)| *op == self)
            .map_or("?", |(name, _)| name)
    }

    pub fn from_name(name: &str) -> Option<Op> {
        Op::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, op)| *op)
    }

    /// Operators that take `(any)`/`(all)` and a list.
    pub fn quantifiable(self) -> bool {
        matches!(
            self,
            Op::Eq
                | Op::Neq
                | Op::Gt
                | Op::Gte
                | Op::Lt
                | Op::Lte
                | Op::Like
                | Op::Ilike
                | Op::Match
                | Op::Imatch
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    Any,
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Scalar(Term),
    List(Vec<Term>),
    /// `is.null`, `is.true`, `is.false`, `is.unknown`.
    Is(IsValue),
    /// Full-text search with an optional text-search configuration.
    Search {
        config: Option<String>,
        query: Term,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsValue {
    Null,
    True,
    False,
    Unknown,
}

/// A value: literal text, or a variable filled in from the caller
/// (`{auth.uid}`, `{auth.role}`, `{auth.claims.org_id}`).
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Literal(String),
    Variable(Vec<String>),
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

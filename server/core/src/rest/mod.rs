//! The data API's pure stages: the query string → [`ReadQuery`] (`query.rs`)
//! → SQL text with bound parameters (`plan.rs` for reads, `write.rs` for
//! writes), given the schema cache's contents (`schema.rs`) and the policy
//! engine's row conditions.

mod cursor;
pub mod ddl;
mod error;
mod openapi;
mod plan;
mod query;
pub mod request;
mod schema;
pub mod views;
mod write;

pub use cursor::Cursor;
pub use error::{CursorError, DdlError, ProfileError, QueryError, RangeError, WriteError};
pub use openapi::openapi;
pub use plan::{
    quote, read_columns, read_sql, Access, ReadStatements, Scope, Shape, Source, Table, SCALAR,
};
pub use query::{json_path, parse_read, Embed, Field, Nulls, Order, ReadQuery, SelectItem};
pub use schema::{ComputedRelationship, ForeignKey, Function, Relationship, Schema};
pub use write::{
    body_columns, check_values, delete_sql, insert_sql, put_row, update_sql, Conflict,
    InsertOptions,
};

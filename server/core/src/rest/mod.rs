//! The data API's reads, as pure stages: the query string → [`ReadQuery`]
//! (`query.rs`) → SQL text with bound parameters (`plan.rs`), given the
//! table from the schema cache and the policy engine's row condition.

mod plan;
mod query;
mod write;

pub use plan::{count_sql, read_sql, Table};
pub use query::{parse_read, Nulls, Order, ReadQuery, Select};
pub use write::{body_columns, delete_sql, insert_sql, update_sql};

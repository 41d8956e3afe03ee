//! Keyset (cursor) pagination, which PostgREST lacks: `cursor=` (empty for
//! the first page) pages through any `order=` — completed with the primary
//! key so the order is total — by continuing strictly after the last row's
//! key, not by counting an offset, so rows inserted or deleted meanwhile
//! never shift a page. The cursor is opaque and tamper-evident: the last
//! row's key values and a fingerprint of the table, filters and order, signed
//! with an HMAC of the server's secret.

use super::error::CursorError;
use super::plan::Table;
use super::query::{json_path, Nulls, Order, ReadQuery, SelectItem};
use crate::filter::sql::Param;
use crate::filter::{Expr, Filter, IsValue, Op, Operand, Term};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    order: Vec<Order>,
    fingerprint: String,
    after: Option<Vec<Option<String>>>,
}

fn sign(payload: &str, key: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(b"basalt-cursor\0");
    mac.update(payload.as_bytes());
    mac
}

fn is_output(query: &ReadQuery, column: &str) -> bool {
    query.select.is_empty()
        || query.select.iter().any(|item| match item {
            SelectItem::Star => true,
            SelectItem::Field(field) => {
                field.column == column && field.alias.is_none() && field.cast.is_none()
            }
            SelectItem::Embed(_) => false,
        })
}

impl Cursor {
    /// The cursor of a request: `token` is empty for the first page.
    pub fn open(
        token: &str,
        query: &ReadQuery,
        table: &Table,
        key: &[u8],
    ) -> Result<Cursor, CursorError> {
        if query.offset.is_some() {
            return Err(CursorError::WithOffset);
        }
        let mut order = query.order.clone();
        for column in &table.primary_key {
            if !order.iter().any(|o| &o.column == column) {
                order.push(Order {
                    column: column.clone(),
                    descending: false,
                    nulls: None,
                });
            }
        }
        if order.is_empty() {
            return Err(CursorError::NoKey {
                table: table.name.clone(),
            });
        }
        for o in &order {
            if !json_path(&o.column).1.is_empty() || !is_output(query, &o.column) {
                return Err(CursorError::OrderNotReturned {
                    column: o.column.clone(),
                });
            }
        }
        let fingerprint = hex(&Sha256::digest(format!(
            "{}\0{}\0{:?}\0{:?}",
            table.schema, table.name, query.filters, order
        )));
        let mut cursor = Cursor {
            order,
            fingerprint,
            after: None,
        };
        if token.is_empty() {
            return Ok(cursor);
        }
        let invalid = || CursorError::Altered;
        let (payload, signature) = token.split_once('.').ok_or_else(invalid)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid())?;
        sign(payload, key)
            .verify_slice(&signature)
            .map_err(|_| invalid())?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        let (fingerprint, values): (String, Vec<Option<String>>) =
            serde_json::from_slice(&payload).map_err(|_| invalid())?;
        if fingerprint != cursor.fingerprint || values.len() != cursor.order.len() {
            return Err(CursorError::OtherQuery);
        }
        cursor.after = Some(values);
        Ok(cursor)
    }

    /// Orders the query totally and, after the first page, keeps only rows
    /// strictly after the cursor's key.
    pub fn apply(&self, query: &mut ReadQuery) {
        query.order = self.order.clone();
        if let Some(after) = &self.after {
            query.filters.push(keyset(&self.order, after));
        }
    }

    /// Adds the last row's key (as a JSON array of text) to the read's result.
    pub fn wrap(&self, (sql, params): (String, Vec<Param>)) -> (String, Vec<Param>) {
        let keys = self
            .order
            .iter()
            .map(|o| format!("t.{}::text", super::plan::quote(&o.column)))
            .collect::<Vec<_>>()
            .join(", ");
        let at = sql.find(", count(*) FROM (").expect("a read statement") + ", count(*)".len();
        let (head, rest) = sql.split_at(at);
        (
            format!("{head}, (array_agg(json_build_array({keys})::text))[count(*)]{rest}"),
            params,
        )
    }

    /// The cursor for the page after the one whose last row's key is `last`.
    pub fn next(&self, last: &str, key: &[u8]) -> String {
        let values: Vec<Option<String>> = serde_json::from_str(last).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&(&self.fingerprint, values)).expect("serializable"));
        let signature = URL_SAFE_NO_PAD.encode(sign(&payload, key).finalize().into_bytes());
        format!("{payload}.{signature}")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn compare(column: &str, op: Op, value: &str) -> Expr {
    Expr::Filter(Filter {
        column: column.to_owned(),
        op,
        quantifier: None,
        operand: Operand::Scalar(Term::Literal(value.to_owned())),
    })
}

fn is_null(column: &str) -> Expr {
    Expr::Filter(Filter {
        column: column.to_owned(),
        op: Op::Is,
        quantifier: None,
        operand: Operand::Is(IsValue::Null),
    })
}

/// Rows strictly after `after` in `order`: the disjunction over each term of
/// "equal on every earlier term and after on this one", with NULLs placed
/// where PostgreSQL puts them (last ascending, first descending, unless the
/// order says otherwise).
fn keyset(order: &[Order], after: &[Option<String>]) -> Expr {
    let mut alternatives = Vec::new();
    let mut equal_so_far: Vec<Expr> = Vec::new();
    for (o, value) in order.iter().zip(after) {
        let nulls_last = match o.nulls {
            Some(Nulls::Last) => true,
            Some(Nulls::First) => false,
            None => !o.descending,
        };
        let column = o.column.as_str();
        let beyond = match value {
            Some(value) => {
                let op = if o.descending { Op::Lt } else { Op::Gt };
                let strictly = compare(column, op, value);
                Some(if nulls_last {
                    Expr::Or(vec![strictly, is_null(column)])
                } else {
                    strictly
                })
            }
            // Nothing follows NULL when NULLs come last.
            None if nulls_last => None,
            None => Some(Expr::Not(Box::new(is_null(column)))),
        };
        if let Some(beyond) = beyond {
            let mut all = equal_so_far.clone();
            all.push(beyond);
            alternatives.push(if all.len() == 1 {
                all.pop().expect("one")
            } else {
                Expr::And(all)
            });
        }
        equal_so_far.push(match value {
            Some(value) => compare(column, Op::Eq, value),
            None => is_null(column),
        });
    }
    match alternatives.len() {
        // Only NULLs-last keys that are all NULL: no row follows.
        0 => Expr::And(vec![
            is_null(&order[0].column),
            Expr::Not(Box::new(is_null(&order[0].column))),
        ]),
        1 => alternatives.pop().expect("one"),
        _ => Expr::Or(alternatives),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::sql::{to_sql, Caller};
    use crate::rest::{parse_read, Scope};

    fn table() -> Table {
        Table {
            schema: "public".into(),
            name: "posts".into(),
            columns: vec![
                ("id".into(), "integer".into()),
                ("score".into(), "integer".into()),
            ],
            primary_key: vec!["id".into()],
            ..Table::default()
        }
    }

    #[test]
    fn cursors_continue_after_the_key_and_refuse_tampering() {
        let key = b"secret";
        let query = parse_read(&[("order".into(), "score.desc".into())]).unwrap();
        let first = Cursor::open("", &query, &table(), key).unwrap();
        let token = first.next(r#"["7","3"]"#, key);
        let second = Cursor::open(&token, &query, &table(), key).unwrap();
        let mut paged = query.clone();
        second.apply(&mut paged);
        assert_eq!(paged.order.len(), 2, "the primary key completes the order");
        let caller = Caller {
            uid: None,
            role: "anon",
            claims: &serde_json::Value::Null,
        };
        let mut params = Vec::new();
        let table = table();
        let sql = to_sql(
            paged.filters.last().unwrap(),
            &Scope {
                table: &table,
                alias: None,
            },
            &caller,
            &mut params,
        )
        .unwrap();
        assert_eq!(
            sql,
            "(\"score\" < $1::text::integer) OR ((\"score\" = $2::text::integer) AND ((\"id\" > $3::text::integer) OR (\"id\" IS NULL)))"
        );
        // Tampered, or reused with other filters: refused.
        let mut forged = token.clone();
        forged.replace_range(0..1, if forged.starts_with('A') { "B" } else { "A" });
        assert!(Cursor::open(&forged, &query, &table, key).is_err());
        assert!(Cursor::open(&token, &query, &table, b"other").is_err());
        let other = parse_read(&[
            ("order".into(), "score.desc".into()),
            ("score".into(), "gt.1".into()),
        ])
        .unwrap();
        assert!(Cursor::open(&token, &other, &table, key).is_err());
        let aliased = parse_read(&[
            ("select".into(), "n:score,id".into()),
            ("order".into(), "score".into()),
        ])
        .unwrap();
        assert!(Cursor::open("", &aliased, &table, key).is_err());
    }
}

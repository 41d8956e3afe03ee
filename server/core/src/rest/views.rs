//! Relationships through views (as PostgREST infers them): a view's column
//! that is a base table's column carries that column's foreign keys and
//! unique keys, so views embed, and are embedded, like their tables. Views
//! of views resolve down to the table; the base tables may live in schemas
//! that are not exposed.
//!
//! A view column is matched to the base column of the same name among the
//! columns the view's query reads (`pg_depend`); a column renamed in the
//! view, or a name two of its base tables share, carries no key.

use super::schema::{ForeignKey, Schema};
use std::collections::{BTreeMap, BTreeSet};

/// A relation by schema and name.
pub type Relation = (String, String);

/// A foreign key between any two tables of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseForeignKey {
    pub name: String,
    pub table: Relation,
    pub columns: Vec<String>,
    pub foreign_table: Relation,
    pub foreign_columns: Vec<String>,
}

/// A view column with the same name as a base column its query reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewColumn {
    pub view: Relation,
    pub column: String,
    pub base: Relation,
}

/// How one exposed relation shows a base table: the base column → its
/// column there.
struct Exposure {
    name: String,
    columns: BTreeMap<String, String>,
}

/// The view columns that stand for exactly one base column, by view.
fn unambiguous(view_columns: &[ViewColumn]) -> BTreeMap<&Relation, BTreeMap<&str, &Relation>> {
    let mut candidates: BTreeMap<(&Relation, &str), BTreeSet<&Relation>> = BTreeMap::new();
    for column in view_columns {
        candidates
            .entry((&column.view, &column.column))
            .or_default()
            .insert(&column.base);
    }
    let mut views: BTreeMap<&Relation, BTreeMap<&str, &Relation>> = BTreeMap::new();
    for ((view, column), bases) in candidates {
        if let [base] = bases.into_iter().collect::<Vec<_>>()[..] {
            views.entry(view).or_default().insert(column, base);
        }
    }
    views
}

/// The base table column `column` of `relation` stands for, through views
/// of views (a few levels at most).
fn resolve<'a>(
    views: &BTreeMap<&'a Relation, BTreeMap<&'a str, &'a Relation>>,
    relation: &'a Relation,
    column: &'a str,
) -> Option<&'a Relation> {
    let mut current = relation;
    for _ in 0..8 {
        match views.get(current) {
            Some(columns) => current = columns.get(column)?,
            None => return Some(current),
        }
    }
    None
}

/// Replaces `schema`'s foreign keys with those between its relations, its
/// tables' own and those through its views, and gives views the unique
/// keys of their base tables whose columns they show.
pub fn infer(
    schema: &mut Schema,
    foreign_keys: &[BaseForeignKey],
    view_columns: &[ViewColumn],
    unique_keys: &[(Relation, Vec<String>)],
) {
    let views = unambiguous(view_columns);
    let mut exposures: BTreeMap<Relation, Vec<Exposure>> = BTreeMap::new();
    for table in schema.tables.values() {
        let relation = (schema.name.clone(), table.name.clone());
        let mut by_base: BTreeMap<Relation, BTreeMap<String, String>> = BTreeMap::new();
        for (column, _) in &table.columns {
            let base = if views.contains_key(&relation) {
                resolve(&views, &relation, column)
            } else {
                Some(&relation)
            };
            if let Some(base) = base {
                by_base
                    .entry(base.clone())
                    .or_default()
                    .insert(column.clone(), column.clone());
            }
        }
        for (base, columns) in by_base {
            exposures.entry(base).or_default().push(Exposure {
                name: table.name.clone(),
                columns,
            });
        }
    }
    let map = |exposure: &Exposure, columns: &[String]| -> Option<Vec<String>> {
        columns
            .iter()
            .map(|column| exposure.columns.get(column).cloned())
            .collect()
    };
    let mut inferred = Vec::new();
    for fk in foreign_keys {
        let (Some(from), Some(to)) = (exposures.get(&fk.table), exposures.get(&fk.foreign_table))
        else {
            continue;
        };
        for a in from {
            for b in to {
                if let (Some(columns), Some(foreign_columns)) =
                    (map(a, &fk.columns), map(b, &fk.foreign_columns))
                {
                    inferred.push(ForeignKey {
                        name: fk.name.clone(),
                        table: a.name.clone(),
                        columns,
                        foreign_table: b.name.clone(),
                        foreign_columns,
                    });
                }
            }
        }
    }
    schema.foreign_keys = inferred;
    for (base, key) in unique_keys {
        for exposure in exposures.get(base).into_iter().flatten() {
            let Some(mut columns) = map(exposure, key) else {
                continue;
            };
            columns.sort();
            if let Some(table) = schema.tables.get_mut(&exposure.name) {
                if !table.unique_keys.contains(&columns) {
                    table.unique_keys.push(columns);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::{Relationship, Table};

    fn relation(schema: &str, name: &str) -> Relation {
        (schema.into(), name.into())
    }

    fn table(name: &str, columns: &[&str]) -> Table {
        Table {
            schema: "api".into(),
            name: name.into(),
            columns: columns
                .iter()
                .map(|c| (c.to_string(), "integer".to_string()))
                .collect(),
            ..Table::default()
        }
    }

    fn shows(view: &str, columns: &[&str], base: Relation) -> Vec<ViewColumn> {
        columns
            .iter()
            .map(|column| ViewColumn {
                view: relation("api", view),
                column: column.to_string(),
                base: base.clone(),
            })
            .collect()
    }

    #[test]
    fn views_carry_their_base_tables_keys() {
        // api.books and api.authors are views over private tables; api.bestsellers a
        // view of api.books; api.pairs joins two tables that both have `id`.
        let mut schema = Schema {
            name: "api".into(),
            tables: [
                table("books", &["id", "title", "author_id"]),
                table("authors", &["id", "name"]),
                table("bestsellers", &["id", "author_id"]),
                table("pairs", &["id", "author_id"]),
            ]
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect(),
            ..Schema::default()
        };
        let books = relation("private", "books");
        let authors = relation("private", "authors");
        let mut columns = shows("books", &["id", "title", "author_id"], books.clone());
        columns.extend(shows("authors", &["id", "name"], authors.clone()));
        columns.extend(shows(
            "bestsellers",
            &["id", "author_id"],
            relation("api", "books"),
        ));
        columns.extend(shows("pairs", &["id", "author_id"], books.clone()));
        columns.extend(shows("pairs", &["id"], authors.clone()));
        let fks = [BaseForeignKey {
            name: "books_author_id_fkey".into(),
            table: books.clone(),
            columns: vec!["author_id".into()],
            foreign_table: authors.clone(),
            foreign_columns: vec!["id".into()],
        }];
        let unique = [(books, vec!["id".to_owned()]), (authors, vec!["id".into()])];
        infer(&mut schema, &fks, &columns, &unique);
        let pairs: Vec<(&str, &str)> = schema
            .foreign_keys
            .iter()
            .map(|fk| (fk.table.as_str(), fk.foreign_table.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("bestsellers", "authors"),
                ("books", "authors"),
                ("pairs", "authors")
            ]
        );
        assert!(matches!(
            schema.relationship("authors", "books", None),
            Ok(Relationship::ToMany(_))
        ));
        assert_eq!(schema.tables["bestsellers"].unique_keys, vec![vec!["id"]]);
        // `pairs.id` could be either table's: no key.
        assert!(schema.tables["pairs"].unique_keys.is_empty());
    }
}
